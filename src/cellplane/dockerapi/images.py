"""Image routes: list (with filters), inspect, history, load, save, tag, remove, import. `build` is
`dockerapi.build`, pull and push `dockerapi.registry`.

Images are Cellplane's platform catalogue (`services.images`, `services.image_names`), the same
for every project: reading it needs a role in the endpoint's project, changing it (load, tag,
rmi, import, build) also needs the `images:write` permission the REST API asks for an upload.
An archive is checked as the REST upload checks it (`services.images.inspect_archive`) before
anything is registered; one image may have several names (rows sharing one file).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import tarfile
from pathlib import Path
from typing import Any

from aiohttp import web

from cellplane.dockerapi import build, image_archive, registry
from cellplane.dockerapi.base import blocking, context, flag, json_response, principal
from cellplane.dockerapi.image_archive import catalog_name, repo_digests, repo_tag, repo_tags
from cellplane.dockerapi.mapping import Refused, image_candidates, loads
from cellplane.errors import Forbidden, ValidationFailed
from cellplane.ids import new_id
from cellplane.services import image_names, images
from cellplane.services.context import Principal, Services

__all__ = ["find", "need_write", "receive", "routes"]

_CHUNK = 1 << 20


def need_write(p: Principal) -> None:
    if not p.can("images:write"):
        raise Forbidden(
            "changing Cellplane's image catalogue (load, build, import, tag, rmi) needs the "
            "'images:write' permission (an operator's); a project role does not grant it"
        )


def _engine_hex(entry: dict[str, Any]) -> str:
    return str(entry.get("engine_ref") or f"sha256:{entry.get('sha256') or ''}").split(":", 1)[-1]


def find(rows: list[dict[str, Any]], ref: str) -> tuple[dict[str, Any], bool]:
    """The catalogue row `ref` names, and whether it named it by name (not by id); Docker's 404
    otherwise."""
    for candidate in image_candidates(ref):
        for row in rows:
            if row["name"] == candidate:
                return row, True
    hexd = ref.removeprefix("sha256:").lower()
    by_id = [r for r in rows if r["id"] == ref]
    if not by_id and len(hexd) >= 4 and all(c in "0123456789abcdef" for c in hexd):
        by_id = [r for r in rows if _engine_hex(r).startswith(hexd)]
    if len({_engine_hex(r) for r in by_id}) > 1:
        raise Refused(400, f"multiple images found with provided prefix: {ref}")
    if not by_id:
        raise Refused(404, f"No such image: {ref}")
    return by_id[0], False


def _same(rows: list[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in rows if _engine_hex(r) == _engine_hex(row)]


def _created(row: dict[str, Any]) -> int:
    return int(row["created_at"].timestamp()) if row.get("created_at") else 0


def _summary(group: list[dict[str, Any]]) -> dict[str, Any]:
    size = int(group[0].get("size_bytes") or 0)
    return {
        "Id": f"sha256:{_engine_hex(group[0])}",
        "ParentId": "",
        "RepoTags": repo_tags(r["name"] for r in group),
        "RepoDigests": repo_digests(r["name"] for r in group),
        "Created": max(_created(r) for r in group),
        "Size": size,
        "SharedSize": -1,
        "VirtualSize": size,
        "Labels": {},
        "Containers": -1,
    }


def _filters(request: web.Request) -> dict[str, list[str]]:
    raw = request.query.get("filters") or request.query.get("filter")
    if not raw:
        return {}
    if "filter" in request.query and "filters" not in request.query:
        return {"reference": [raw]}  # the old API's bare reference
    try:
        doc = loads(raw)
        out = {str(k): list(v) if isinstance(v, (list, dict)) else [str(v)] for k, v in doc.items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise Refused(400, f"invalid filters: {raw!r}") from exc
    unknown = sorted(set(out) - {"reference", "dangling"})
    if unknown:
        raise Refused(400, f"image filter {unknown[0]!r} is not supported on this endpoint yet")
    return out


def _matches(name: str, patterns: list[str]) -> bool:
    forms = {name, repo_tag(name), repo_tag(name).rsplit(":", 1)[0]}
    for pattern in patterns:
        pat = pattern
        for prefix in ("docker.io/library/", "docker.io/", "library/"):
            pat = pat.removeprefix(prefix)
        if any(fnmatch.fnmatchcase(f, pat) for f in forms):
            return True
    return False


async def image_list(request: web.Request) -> web.Response:
    filters = _filters(request)
    dangling = [v.lower() for v in filters.get("dangling", [])]
    if any(v not in ("true", "false", "1", "0") for v in dangling):
        raise Refused(400, f"invalid filter 'dangling={dangling[0]}'")
    rows = await blocking(image_names.entries, context(request).svc)
    if any(v in ("true", "1") for v in dangling):
        rows = []  # every catalogue image has a name: none is dangling
    if "reference" in filters:
        rows = [r for r in rows if _matches(r["name"], filters["reference"])]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_engine_hex(r) or r["id"], []).append(r)
    return json_response([_summary(g) for g in groups.values()])


def _rfc3339(row: dict[str, Any], config: dict[str, Any]) -> str:
    if isinstance(config.get("created"), str):
        return str(config["created"])
    return row["created_at"].isoformat().replace("+00:00", "Z") if row.get("created_at") else ""


def _inspect(rows: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    row, _ = find(rows, ref)
    config = image_archive.image_config(Path(row["path"])) if row.get("path") else {}
    got = config.get("config")
    inner: dict[str, Any] = got if isinstance(got, dict) else {}
    size = int(row.get("size_bytes") or 0)
    return {
        "Id": f"sha256:{_engine_hex(row)}",
        "RepoTags": repo_tags(r["name"] for r in _same(rows, row)),
        "RepoDigests": repo_digests(r["name"] for r in _same(rows, row)),
        "Parent": "",
        "Comment": "",
        "Created": _rfc3339(row, config),
        "Container": "",
        "ContainerConfig": {},
        "DockerVersion": "",
        "Author": str(config.get("author") or ""),
        "Config": {
            "Cmd": inner.get("Cmd"),
            "Entrypoint": inner.get("Entrypoint"),
            "Env": inner.get("Env") or [],
            "WorkingDir": inner.get("WorkingDir") or "",
            "User": inner.get("User") or "",
            "Labels": inner.get("Labels") or {},
            "ExposedPorts": inner.get("ExposedPorts"),
            "Volumes": inner.get("Volumes"),
            "Healthcheck": inner.get("Healthcheck"),
        },
        "Architecture": str(config.get("architecture") or ""),
        "Os": str(config.get("os") or "linux"),
        "Size": size,
        "VirtualSize": size,
        "GraphDriver": {"Name": "cellplane", "Data": {}},
        "RootFS": {"Type": "layers", "Layers": list(config.get("rootfs", {}).get("diff_ids", []))},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        "CellplaneImage": row["id"],
    }


async def image_inspect(request: web.Request) -> web.Response:
    rows = await blocking(image_names.entries, context(request).svc)
    return json_response(await blocking(_inspect, rows, request.match_info["name"]))


def _history(rows: list[dict[str, Any]], ref: str) -> list[dict[str, Any]]:
    row, _ = find(rows, ref)
    config = image_archive.image_config(Path(row["path"])) if row.get("path") else {}
    out: list[dict[str, Any]] = []
    for h in config.get("history") or []:
        created = str(h.get("created") or "")
        try:
            from datetime import datetime

            when = int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
        except ValueError:
            when = 0
        out.append(
            {
                "Id": "<missing>",
                "Created": when,
                "CreatedBy": str(h.get("created_by") or ""),
                "Tags": None,
                "Size": 0,
                "Comment": str(h.get("comment") or ""),
            }
        )
    out.reverse()
    if out:
        out[0]["Id"] = f"sha256:{_engine_hex(row)}"
        out[0]["Tags"] = [repo_tag(r["name"]) for r in _same(rows, row)]
        out[0]["Size"] = int(row.get("size_bytes") or 0)
    return out


async def image_history(request: web.Request) -> web.Response:
    rows = await blocking(image_names.entries, context(request).svc)
    return json_response(await blocking(_history, rows, request.match_info["name"]))


async def image_tag(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    need_write(p)
    repo, tag = request.query.get("repo", ""), request.query.get("tag", "")
    if not repo:
        raise Refused(400, "tag: 'repo' is required (the new name)")
    registries = [r.host for r in ctx.svc.registries]
    new = catalog_name(f"{repo}:{tag}" if tag else repo, registries)
    rows = await blocking(image_names.entries, ctx.svc)
    row, _ = find(rows, request.match_info["name"])
    await blocking(image_names.add_name, ctx.svc, row["id"], new, ctx.project_id)
    return web.Response(status=201)


async def image_delete(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    need_write(p)
    ref = request.match_info["name"]
    rows = await blocking(image_names.entries, ctx.svc)
    row, by_name = find(rows, ref)
    targets = [row] if by_name else _same(rows, row)
    if len(targets) > 1 and not flag(request, "force"):
        names = ", ".join(repo_tag(r["name"]) for r in targets)
        raise Refused(
            409,
            f"conflict: unable to delete {ref} (must be forced) - image is referenced in "
            f"multiple repositories ({names})",
        )
    answer: list[dict[str, str]] = []
    for r in targets:
        last = await blocking(image_names.remove_name, ctx.svc, r["id"], ctx.project_id)
        answer.append({"Untagged": repo_tag(r["name"])})
        if last:
            answer.append({"Deleted": f"sha256:{_engine_hex(r)}"})
    return json_response(answer)


async def receive(request: web.Request, svc: Services) -> tuple[Path, str, int]:
    """The request body written to a new file of the images directory (the caller owns it):
    (path, sha256, size); 413 past the server's image size limit, nothing kept."""
    limit = svc.max_image_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise Refused(413, f"the upload is larger than this server's limit of {limit} bytes")
    path = svc.images_dir / f".upload-{new_id('up')}"
    h, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            while chunk := await request.content.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise Refused(413, f"the upload is larger than this server's limit of {limit}")
                h.update(chunk)
                await blocking(f.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, h.hexdigest(), size


def _register_loaded(svc: Services, upload: Path, sha: str, size: int, project: str) -> list[str]:
    """Register the image(s) of a loaded archive: an archive of several images (`docker save A
    B`) is split into one archive per image first, each registered under its own names (in
    order, as dockerd loads them: a refusal of one keeps those before it)."""
    try:
        _, tags = images.inspect_archive(upload)  # every member checked, whatever the images
        try:
            parts = image_archive.split(upload, upload.parent)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationFailed.field("body", f"unreadable image archive: {exc}") from exc
        if not parts and not tags:
            raise ValidationFailed.field(
                "body",
                "the archive names no image (no RepoTags): save it by name (docker save NAME)",
            )
    except BaseException:
        upload.unlink(missing_ok=True)
        raise
    if not parts:
        names = [catalog_name(t) for t in tags]
        image_names.register_archive(svc, names, upload, sha, size, project)
        return names
    upload.unlink(missing_ok=True)
    loaded: list[str] = []
    done = 0  # the parts the catalogue took over
    try:
        for path, part_tags in parts:
            with path.open("rb") as f:
                digest = image_archive.file_digest(f)
            names = [catalog_name(t) for t in part_tags]
            image_names.register_archive(svc, names, path, digest, path.stat().st_size, project)
            loaded += names
            done += 1
    finally:
        for path, _ in parts[done:]:
            path.unlink(missing_ok=True)
    return loaded


async def image_load(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    need_write(p)
    upload, sha, size = await receive(request, ctx.svc)
    names = await blocking(_register_loaded, ctx.svc, upload, sha, size, ctx.project_id)
    body = b"".join(
        image_archive.json_line({"stream": f"Loaded image: {repo_tag(n)}\n"}) for n in names
    )
    return web.Response(body=body, headers={"Content-Type": "application/json"})


async def image_save(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    refs = [request.match_info["name"]] if "name" in request.match_info else []
    refs = refs or [n for n in request.query.getall("names", []) if n]
    if not refs:
        raise Refused(400, "save: name at least one image (names=...)")
    rows = await blocking(image_names.entries, ctx.svc)
    # Each image once, in the order first named, under the names it was asked by (all of its
    # names when it was asked by id), as dockerd's `save` does.
    images: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for ref in refs:
        row, by_name = find(rows, ref)
        if not row.get("path"):
            raise Refused(400, f"image {ref} ({row['kind']}) has no archive to save")
        _, tags = images.setdefault(_engine_hex(row), (row, []))
        tags += [repo_tag(r["name"]) for r in ([row] if by_name else _same(rows, row))]
    sources = [(Path(row["path"]), list(dict.fromkeys(tags))) for row, tags in images.values()]
    out = ctx.svc.images_dir / f".save-{new_id('up')}"
    try:
        if len(sources) == 1:
            (src, tags), *_ = sources
            await blocking(image_archive.retag, src, out, tags)
        else:
            try:
                await blocking(image_archive.combine, sources, out)
            except ValueError as exc:
                raise Refused(400, f"cannot save these images into one archive: {exc}") from exc
        resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await resp.prepare(request)
        with out.open("rb") as f:
            while chunk := await blocking(f.read, _CHUNK):
                await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        out.unlink(missing_ok=True)


def _changes(items: list[str]) -> dict[str, Any]:
    """`docker import --change` instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER) -> config."""
    config: dict[str, Any] = {}
    for item in items:
        word, _, rest = item.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if word in ("CMD", "ENTRYPOINT"):
            try:
                value = loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]
            except ValueError as exc:
                raise Refused(400, f"--change {item!r}: not a JSON array") from exc
            config["Cmd" if word == "CMD" else "Entrypoint"] = value
        elif word == "ENV":
            key, sep, val = rest.partition("=")
            if not sep:
                key, _, val = rest.partition(" ")
            config.setdefault("Env", []).append(f"{key.strip()}={val.strip()}")
        elif word in ("WORKDIR", "USER"):
            config["WorkingDir" if word == "WORKDIR" else "User"] = rest
        else:
            raise Refused(400, f"--change {word} is not supported on this endpoint yet")
    return config


def _import_rootfs(svc: Services, upload: Path, sha: str, size: int, name: str, project: str,
                   config: dict[str, Any]) -> str:  # fmt: skip
    archive = upload.with_suffix(".archive")
    try:
        try:
            with tarfile.open(upload) as tf:
                images.check_members(tf, size)
        except tarfile.TarError as exc:
            raise ValidationFailed.field("body", f"not a readable tar archive: {exc}") from exc
        image_archive.from_rootfs(upload, archive, repo_tag(name), config)
    except BaseException:
        archive.unlink(missing_ok=True)
        raise
    finally:
        upload.unlink(missing_ok=True)
    digest = hashlib.sha256()
    with archive.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    engine_id, _ = image_names.register_archive(
        svc, [name], archive, digest.hexdigest(), archive.stat().st_size, project
    )
    return engine_id


async def image_create(request: web.Request) -> web.StreamResponse:
    ctx, p = context(request), principal(request)
    src = request.query.get("fromSrc")
    if src is None:
        return await registry.image_pull(request)
    need_write(p)
    if src != "-":
        raise Refused(501, f"importing from a URL ({src}) is not supported: send the tar itself")
    repo, tag = request.query.get("repo", ""), request.query.get("tag", "")
    if not repo:
        raise Refused(400, "import needs a name for the image: docker import FILE NAME[:TAG]")
    name = catalog_name(f"{repo}:{tag}" if tag else repo)
    config = _changes(request.query.getall("changes", []))
    if request.query.get("platform"):
        build.check_platform(request.query["platform"])
    upload, sha, size = await receive(request, ctx.svc)
    if size == 0:
        upload.unlink(missing_ok=True)
        raise Refused(400, "import: empty body, send the root filesystem as a tar")
    engine_id = await blocking(
        _import_rootfs, ctx.svc, upload, sha, size, name, ctx.project_id, config
    )
    body = image_archive.json_line({"status": f"sha256:{engine_id}"})
    return web.Response(body=body, headers={"Content-Type": "application/json"})


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/images/json", image_list),
        ("POST", "/images/create", image_create),
        ("POST", "/images/load", image_load),
        ("GET", "/images/get", image_save),
        ("GET", r"/images/{name:.+}/json", image_inspect),
        ("GET", r"/images/{name:.+}/history", image_history),
        ("GET", r"/images/{name:.+}/get", image_save),
        ("POST", r"/images/{name:.+}/tag", image_tag),
        ("DELETE", r"/images/{name:.+}", image_delete),
        *build.routes(),
        *registry.routes(),
    ]
