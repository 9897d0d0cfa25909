"""Image builds on this host, for the server's Docker-compatible endpoint (`docker build`).

`POST /builds?spec=<json>`: the body is the build context (a tar with the Dockerfile), `spec` the
options (`tag`, `dockerfile`, `buildargs`, `labels`, `target`, `nocache`, `quiet`) and the catalogue
images the Dockerfile starts from (`bases`: id, engine_ref, the name FROM gives). Each base is
loaded from the server when the engine lacks it and tagged with that name (there is no registry
to pull from); then the engine builds, and its JSON progress lines (Docker's) are relayed as they
come. The built image is saved as a docker-archive; the last line, `{"cellplane_build": ID,
"image": "sha256:..."}`, says where the server fetches it: `GET /builds/ID` (once: the file goes
after it is sent; an agent starting removes what an earlier run left). Errors are Docker's
progress errors (`{"error": ..., "errorDetail": ...}`).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol

import structlog

from cellplane.drivers.errors import DriverError

__all__ = ["Builder", "ImageEngine"]

log = structlog.get_logger("cellplane.agent.build")

_ID = re.compile(r"b[0-9a-f]{24}")
_CHUNK = 1 << 20


class ImageEngine(Protocol):
    """What a build needs of the driver (`PodmanDriver` has it)."""

    def has_image(self, ref: str) -> bool: ...

    def load_image(self, path: Path) -> list[str]: ...

    def tag_image(self, ref: str, name: str) -> None: ...

    def build_image(self, context: Path, options: dict[str, Any]) -> Iterator[dict[str, Any]]: ...

    def save_image(self, ref: str, dest: Path) -> None: ...


class Downloader(Protocol):
    def download_image(self, image_id: str, dest: Path) -> None: ...


def _line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode() + b"\r\n"


def _error(message: str) -> bytes:
    return _line({"errorDetail": {"message": message}, "error": message})


class Builder:
    def __init__(self, engine: ImageEngine, server: Downloader, scratch: Path) -> None:
        self.engine = engine
        self.server = server
        self.dir = scratch / "builds"
        # What an earlier run left (a context, a build the server never fetched) is nobody's.
        for stale in self.dir.glob("*.tar") if self.dir.is_dir() else ():
            stale.unlink(missing_ok=True)

    def ensure_image(self, base: dict[str, Any]) -> None:
        """The catalogue image `base` (id, engine_ref) in the engine, named `base["name"]`:
        loaded from the server when the engine lacks it (a push's image, a build's FROM)."""
        self._base(base)

    def _base(self, base: dict[str, Any]) -> None:
        ref, name = str(base["engine_ref"]), str(base["name"])
        if not self.engine.has_image(ref):
            dest = self.dir / f"base-{secrets.token_hex(8)}.tar"
            try:
                self.server.download_image(str(base["id"]), dest)
                self.engine.load_image(dest)
            finally:
                dest.unlink(missing_ok=True)
        self.engine.tag_image(ref, name)

    def _run(self, context: Path, spec: dict[str, Any]) -> Iterator[bytes]:
        try:
            for base in spec.get("bases") or []:
                yield _line({"stream": f"Preparing {base['name']} from Cellplane's catalogue\n"})
                self._base(base)
        except (DriverError, RuntimeError, OSError) as exc:
            yield _error(f"preparing the base image: {exc}")
            return
        image = ""
        try:
            for doc in self.engine.build_image(context, spec):
                if isinstance(doc.get("aux"), dict) and doc["aux"].get("ID"):
                    image = str(doc["aux"]["ID"])
                yield _line(doc)
                if doc.get("error") or doc.get("errorDetail"):
                    return
        except DriverError as exc:
            yield _error(str(exc))
            return
        if not image:
            image = f"{spec['tag']}"
        build_id = f"b{secrets.token_hex(12)}"
        try:
            self.engine.save_image(image, self.dir / f"{build_id}.tar")
        except (DriverError, OSError) as exc:
            yield _error(f"saving the built image: {exc}")
            return
        yield _line({"cellplane_build": build_id, "image": image})

    def post(self, handler: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        try:
            spec = json.loads(query.get("spec", ["{}"])[0])
            length = int(handler.headers.get("Content-Length") or "")
            if not isinstance(spec, dict) or not spec.get("tag") or length <= 0:
                raise ValueError("spec with a tag and a Content-Length are needed")
        except ValueError as exc:
            _answer(handler, 400, {"error": f"bad build request: {exc}"})
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        context = self.dir / f"ctx-{secrets.token_hex(8)}.tar"
        try:
            with context.open("wb") as f:
                left = length
                while left > 0:
                    chunk = handler.rfile.read(min(_CHUNK, left))
                    if not chunk:
                        raise ConnectionError("the build context ended early")
                    f.write(chunk)
                    left -= len(chunk)
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for data in self._run(context, spec):
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionError) as exc:
            log.warning("build request ended early", error=str(exc))
            handler.close_connection = True
        finally:
            context.unlink(missing_ok=True)

    def get(self, handler: BaseHTTPRequestHandler, build_id: str) -> None:
        path = self.dir / f"{build_id}.tar"
        if not _ID.fullmatch(build_id) or not path.is_file():
            _answer(handler, 404, {"error": f"no built image {build_id}"})
            return
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/x-tar")
            handler.send_header("Content-Length", str(path.stat().st_size))
            handler.end_headers()
            with path.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    handler.wfile.write(chunk)
        except (BrokenPipeError, ConnectionError):
            handler.close_connection = True
        finally:
            with contextlib.suppress(OSError):
                path.unlink()


def _answer(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
