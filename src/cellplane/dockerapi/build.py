"""`POST /build` (`docker build`): the context goes to a READY host's agent (`agent.build`), the
host's engine builds it, Docker's JSON progress comes back as it is made, and the result is
registered in the image catalogue under `-t`, so `docker run NAME` works on any host.

There is no registry: every FROM must name a catalogue image (the agent loads it first). What the
endpoint cannot do is refused before anything runs, naming the option (`remote`, `--pull`,
`--platform` other than the host's, `--network`, `--squash`...).
"""

from __future__ import annotations

import hashlib
import json
import platform
import tarfile
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from multidict import MultiMapping

from cellplane.dockerapi import image_archive
from cellplane.dockerapi.base import EndpointContext, blocking, context, principal
from cellplane.dockerapi.image_archive import catalog_name, error_line, json_line, repo_tag
from cellplane.dockerapi.mapping import Refused, loads
from cellplane.errors import CellplaneError, ValidationFailed
from cellplane.ids import new_id
from cellplane.services import image_names, images

__all__ = ["build_options", "check_platform", "routes"]

_CHUNK = 1 << 20
_MAX_DOCKERFILE = 1024 * 1024
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
#: Build options the endpoint does not carry out, by the docker CLI's name for them; the CLI
#: sends most with an empty or zero default, which is accepted.
_REFUSED = {
    "pull": "--pull (there is no registry: FROM images come from Cellplane's catalogue)",
    "squash": "--squash",
    "cachefrom": "--cache-from",
    "extrahosts": "--add-host",
    "networkmode": "--network",
    "isolation": "--isolation",
    "shmsize": "--shm-size",
    "memory": "--memory",
    "memswap": "--memory-swap",
    "cpushares": "--cpu-shares",
    "cpuquota": "--cpu-quota",
    "cpuperiod": "--cpu-period",
    "cpusetcpus": "--cpuset-cpus",
    "cpusetmems": "--cpuset-mems",
    "cgroupparent": "--cgroup-parent",
    "ulimits": "--ulimit",
    "outputs": "--output",
}
_DEFAULTS = ("", "0", "false", "null", "[]", "{}", "default")


def check_platform(value: str) -> None:
    """Only the hosts' own platform (`linux/amd64` here) can be built, imported, pulled (a
    registry's multi-platform image gives the hosts' own) or run; any other is refused (400),
    rather than giving an image of another platform than the one asked for."""
    if value and value not in ("linux", f"linux/{_ARCH}"):
        raise Refused(
            400,
            f"--platform {value} is not supported: this endpoint's hosts build, pull and run "
            f"linux/{_ARCH}",
        )


def _json_map(query: MultiMapping[str], key: str, option: str) -> dict[str, str]:
    raw = query.get(key) or "{}"
    try:
        doc = loads(raw)
    except ValueError as exc:
        raise Refused(400, f"{option}: not a JSON object: {raw[:100]!r}") from exc
    if not isinstance(doc, dict):
        raise Refused(400, f"{option}: not a JSON object")
    return {str(k): "" if v is None else str(v) for k, v in doc.items()}


def build_options(query: MultiMapping[str], registries: Collection[str] = ()) -> dict[str, Any]:
    """The build's options from Docker's query (pure): names, dockerfile, buildargs, labels,
    target, nocache, quiet; Refused naming anything the endpoint does not do."""
    if query.get("remote"):
        raise Refused(
            400, "building from a remote context (a URL or git repository) is not supported: "
            "send the context itself (docker build DIR)"
        )  # fmt: skip
    check_platform(query.get("platform", ""))
    for key, option in _REFUSED.items():
        if query.get(key, "").lower() not in _DEFAULTS:
            raise Refused(400, f"{option} is not supported on this endpoint's build")
    names = [catalog_name(t, registries) for t in query.getall("t", []) if t]
    if not names:
        raise Refused(
            400, "docker build needs a name on this endpoint (-t NAME): Cellplane's catalogue "
            "has no unnamed images"
        )  # fmt: skip
    dockerfile = query.get("dockerfile") or "Dockerfile"
    parts = dockerfile.replace("\\", "/").split("/")
    if dockerfile.startswith("/") or ".." in parts:
        raise Refused(400, f"--file {dockerfile!r} must be a path inside the build context")

    def yes(key: str) -> bool:
        return query.get(key, "").lower() in ("1", "true")

    return {
        "names": list(dict.fromkeys(names)),
        "dockerfile": dockerfile.removeprefix("./"),
        "buildargs": _json_map(query, "buildargs", "--build-arg"),
        "labels": _json_map(query, "labels", "--label"),
        "target": query.get("target", ""),
        "nocache": yes("nocache"),
        "quiet": yes("q"),
    }


def _bases(ctx: EndpointContext, path: Path, size: int, opts: dict[str, Any]) -> list[Any]:
    """The catalogue images the context's Dockerfile starts from, as the agent needs them."""
    from cellplane.dockerapi.images import find

    try:
        with tarfile.open(path) as tf:
            images.check_members(tf, size)
            members = {m.name.removeprefix("./"): m for m in tf.getmembers()}
            info = members.get(opts["dockerfile"])
            if info is None or not info.isfile():
                raise Refused(
                    400,
                    f"Cannot locate specified Dockerfile: {opts['dockerfile']} (in the context)",
                )
            if info.size > _MAX_DOCKERFILE:
                raise Refused(400, f"the Dockerfile is larger than {_MAX_DOCKERFILE} bytes")
            f = tf.extractfile(info)
            text = f.read().decode("utf-8", "replace") if f else ""
    except tarfile.TarError as exc:
        raise ValidationFailed.field("body", f"the build context is not a tar: {exc}") from exc
    rows = image_names.entries(ctx.svc)
    bases = []
    for name in image_archive.dockerfile_bases(text, opts["buildargs"]):
        try:
            row, _ = find(rows, name)
        except Refused as exc:
            raise Refused(
                404, f"FROM {name}: no such image in Cellplane's catalogue (there is no registry; "
                "load it first: docker load -i FILE.tar)"
            ) from exc  # fmt: skip
        if row["kind"] != "archive":
            raise Refused(400, f"FROM {name}: the built-in host image cannot be built upon")
        bases.append({"id": row["id"], "engine_ref": row["engine_ref"], "name": name})
    return bases


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await blocking(f.read, _CHUNK):
            yield chunk


def _skipped(doc: dict[str, Any], quiet: bool) -> bool:
    """Lines of the engine's own that the endpoint replaces: its id and names (the catalogue's
    differ), and everything but errors when quiet."""
    if doc.get("error") or doc.get("errorDetail"):
        return False
    if quiet or "aux" in doc:
        return True
    stream = str(doc.get("stream", ""))
    return stream.startswith(("Successfully built", "Successfully tagged"))


async def _fetch(ctx: EndpointContext, url: str, headers: dict[str, str]) -> tuple[Path, str, int]:
    path = ctx.svc.images_dir / f".upload-{new_id('up')}"
    h, size = hashlib.sha256(), 0
    try:
        with path.open("wb") as f:
            async with ctx.agent.stream("GET", url, headers=headers, timeout=600) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"fetching the built image: HTTP {r.status_code}")
                async for chunk in r.aiter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > ctx.svc.max_image_bytes:
                        raise RuntimeError("the built image is larger than this server's limit")
                    h.update(chunk)
                    await blocking(f.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, h.hexdigest(), size


async def image_build(request: web.Request) -> web.StreamResponse:
    from cellplane.dockerapi.images import need_write, receive

    ctx, p = context(request), principal(request)
    need_write(p)
    opts = build_options(request.query, [r.host for r in ctx.svc.registries])
    upload, _, size = await receive(request, ctx.svc)
    try:
        if size == 0:
            raise Refused(400, "the build context is empty: send a tar with a Dockerfile")
        bases = await blocking(_bases, ctx, upload, size, opts)
        url, secret, host = await blocking(image_names.build_host, ctx.svc)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        spec = {k: opts[k] for k in ("dockerfile", "buildargs", "labels", "target", "nocache")}
        spec |= {"tag": f"cp-build-{new_id('b')}", "bases": bases, "quiet": opts["quiet"]}
        headers = {"Authorization": f"Bearer {secret}"}
        built, failed = None, False
        try:
            async with ctx.agent.stream(
                "POST",
                f"{url}/builds",
                params={"spec": json.dumps(spec)},
                content=_file_chunks(upload),
                headers={**headers, "Content-Length": str(size)},
                timeout=httpx.Timeout(3600, connect=10),
            ) as r:
                if r.status_code != 200:
                    text = (await r.aread()).decode("utf-8", "replace")[:500]
                    raise RuntimeError(f"host {host} refused the build: {text}")
                async for line in r.aiter_lines():
                    if not line.strip():
                        continue
                    doc = json.loads(line)
                    if "cellplane_build" in doc:
                        built = str(doc["cellplane_build"])
                        continue
                    failed = failed or bool(doc.get("error") or doc.get("errorDetail"))
                    if not _skipped(doc, opts["quiet"]):
                        await resp.write(json_line(image_archive.docker_progress(doc)))
            if built and not failed:
                archive, sha, asize = await _fetch(ctx, f"{url}/builds/{built}", headers)
                engine_id, names = await blocking(
                    image_names.register_archive, ctx.svc, opts["names"], archive, sha, asize,
                    ctx.project_id,
                )  # fmt: skip
                image_id = f"sha256:{engine_id}"
                if opts["quiet"]:
                    await resp.write(json_line({"stream": f"{image_id}\n"}))
                await resp.write(json_line({"aux": {"ID": image_id}}))
                if not opts["quiet"]:
                    lines = [f"Successfully built {engine_id[:12]}\n"]
                    lines += [f"Successfully tagged {repo_tag(n)}\n" for n in names]
                    for text in lines:
                        await resp.write(json_line({"stream": text}))
            elif not failed:
                await resp.write(error_line(f"the build on host {host} ended without an image"))
        except (httpx.HTTPError, RuntimeError, ValueError, CellplaneError) as exc:
            await resp.write(error_line(str(exc)))
        await resp.write_eof()
        return resp
    finally:
        upload.unlink(missing_ok=True)


def routes() -> list[tuple[str, str, Any]]:
    return [("POST", "/build", image_build)]
