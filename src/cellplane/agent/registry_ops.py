"""Pull, push and commit on this host, for the server's Docker-compatible endpoint (`docker pull`,
`push`, `commit`).

The server has already checked that the registry is one the operator lists; it sends what to do
and the registry's TLS choice, the credentials in `X-Registry-Auth` (Docker's header, passed to
the engine as it came).

- `POST /pulls?spec={"reference": "HOST/REPO:TAG", "tls_verify": bool}`: the engine pulls (its
  JSON progress lines relayed as they come), the image is saved as a docker-archive where the
  builder keeps built images, and the last line is `{"cellplane_build": ID, "image": ...}`: the
  server fetches it with `GET /builds/ID`, as a build's (`agent.build`).
- `POST /pushes?spec={"reference": ..., "tls_verify": bool, "image": {"id", "engine_ref"}}`:
  the catalogue image is loaded from the server when the engine lacks it, named `reference`,
  pushed; the last line is `{"cellplane_pushed": reference}`.
- `POST /commits?spec={"reference": ..., "container": ..., "comment", "author", "pause"}`: the
  engine commits the container (`docker commit`) as `reference`, saved as a pull's image is;
  the last line is `{"cellplane_build": ID, "image": ...}`.

Errors are Docker's progress errors (`{"error": ..., "errorDetail": ...}`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

import structlog

from cellplane.agent.build import Builder
from cellplane.drivers.errors import DriverError

__all__ = ["RegistryEngine", "RegistryOps"]

log = structlog.get_logger("cellplane.agent.registry")


class RegistryEngine(Protocol):
    """What pull and push need of the driver (`PodmanDriver` has it)."""

    def pull_image(self, reference: str, *, tls_verify: bool = True,
                   auth: str | None = None) -> Iterator[dict[str, Any]]: ...  # fmt: skip

    def push_image(self, ref: str, destination: str, *, tls_verify: bool = True,
                   auth: str | None = None) -> Iterator[dict[str, Any]]: ...  # fmt: skip

    def save_image(self, ref: str, dest: Any) -> None: ...

    def commit_image(self, container: str, reference: str, *, comment: str, author: str,
                     pause: bool, changes: list[str]) -> str: ...  # fmt: skip


def _line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode() + b"\r\n"


def _error(message: str) -> bytes:
    return _line({"errorDetail": {"message": message}, "error": message})


def parse_spec(query: dict[str, list[str]], push: bool) -> dict[str, Any]:
    """The request's spec; ValueError naming what is missing."""
    spec = json.loads(query.get("spec", ["{}"])[0])
    if not isinstance(spec, dict) or not isinstance(spec.get("reference"), str):
        raise ValueError("spec with a reference is needed")
    if not isinstance(spec.get("tls_verify", True), bool):
        raise ValueError("tls_verify must be true or false")
    if push:
        image = spec.get("image")
        if not isinstance(image, dict) or not image.get("id") or not image.get("engine_ref"):
            raise ValueError("a push names its catalogue image (id, engine_ref)")
    return spec


class RegistryOps:
    def __init__(self, engine: RegistryEngine, builder: Builder) -> None:
        self.engine = engine
        self.builder = builder

    def _pull(self, spec: dict[str, Any], auth: str | None) -> Iterator[bytes]:
        ref, verify = str(spec["reference"]), bool(spec.get("tls_verify", True))
        pulled = ""
        try:
            for doc in self.engine.pull_image(ref, tls_verify=verify, auth=auth):
                if doc.get("error"):
                    yield _error(str(doc["error"]).strip())
                    return
                if doc.get("id"):
                    pulled = str(doc["id"])
                    continue
                if "stream" in doc:
                    yield _line({"stream": str(doc["stream"])})
        except DriverError as exc:
            yield _error(str(exc))
            return
        if not pulled:
            yield _error(f"the engine pulled no image for {ref}")
            return
        # An image pulled by digest is saved by its id: an archive's names are tags, never digests.
        yield from self._saved(pulled if "@" in ref else ref, pulled, "pulled")

    def _commit(self, spec: dict[str, Any]) -> Iterator[bytes]:
        ref, container = str(spec["reference"]), str(spec["container"])
        yield _line({"stream": f"Committing {container} as {ref}"})
        try:
            made = self.engine.commit_image(
                container,
                ref,
                comment=str(spec.get("comment") or ""),
                author=str(spec.get("author") or ""),
                pause=bool(spec.get("pause", True)),
                changes=[str(c) for c in spec.get("changes") or []],
            )
        except DriverError as exc:
            yield _error(f"committing {container}: {exc}")
            return
        yield from self._saved(ref, made, "committed")

    def _saved(self, ref: str, image: str, what: str) -> Iterator[bytes]:
        build_id = f"b{secrets.token_hex(12)}"
        self.builder.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.engine.save_image(ref, self.builder.dir / f"{build_id}.tar")
        except (DriverError, OSError) as exc:
            yield _error(f"saving the {what} image: {exc}")
            return
        yield _line(
            {"cellplane_build": build_id, "image": f"sha256:{image.removeprefix('sha256:')}"}
        )

    def _push(self, spec: dict[str, Any], auth: str | None) -> Iterator[bytes]:
        ref, verify = str(spec["reference"]), bool(spec.get("tls_verify", True))
        image = spec["image"]
        self.builder.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.builder.ensure_image(
                {"id": image["id"], "engine_ref": image["engine_ref"], "name": ref}
            )
        except (DriverError, RuntimeError, OSError) as exc:
            yield _error(f"preparing the image: {exc}")
            return
        try:
            for doc in self.engine.push_image(ref, ref, tls_verify=verify, auth=auth):
                if doc.get("error"):
                    yield _error(str(doc["error"]).strip())
                    return
                if "stream" in doc:
                    yield _line({"stream": str(doc["stream"])})
        except DriverError as exc:
            yield _error(str(exc))
            return
        yield _line({"cellplane_pushed": ref})

    def post(self, handler: BaseHTTPRequestHandler, what: str, query: dict[str, list[str]]) -> None:
        """`POST /pulls`, `/pushes` or `/commits` (`what`), answered with chunked JSON lines."""
        try:
            spec = parse_spec(query, push=what == "pushes")
            if what == "commits" and not spec.get("container"):
                raise ValueError("a commit names its container")
        except ValueError as exc:
            data = json.dumps({"error": f"bad {what} request: {exc}"}).encode()
            handler.send_response(400)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        auth = handler.headers.get("X-Registry-Auth") or None
        lines = (
            self._commit(spec)
            if what == "commits"
            else self._pull(spec, auth)
            if what == "pulls"
            else self._push(spec, auth)
        )
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for data in lines:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionError) as exc:
            log.warning("registry request ended early", what=what, error=str(exc))
            handler.close_connection = True
