"""`docker pull` and `docker push` against the registries the operator lists (`CELLPLANE_REGISTRIES`,
`cellplane.registries`).

A pull runs on a READY host's agent (`agent.registry_ops`): its engine pulls, the image comes
back to the server as an archive and is registered in the catalogue under its full name
(`127.0.0.1:5000/team/app:1`), as a build's result is, so `docker run` of that name works on every
host. A push loads the catalogue image into a READY host's engine (when it lacks it) and pushes
it from there. Progress goes to the client in Docker's JSON lines as it comes.

Any other registry is refused (403, naming it), and so are Docker Hub's names (403, naming the
registries that are allowed): an endpoint is no way to fetch arbitrary images onto the hosts or
to send the catalogue's images anywhere else. Credentials: the client's `X-Registry-Auth`
(`docker login`) is passed on; without it, the operator's for that registry, if any.

`docker commit` is here too: the engine of the container's host commits it and saves it as a
pull's image is; the server fetches and registers it in the catalogue under the name given.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

import httpx
import structlog
from aiohttp import web

from cellplane.dockerapi import build, registry_api
from cellplane.dockerapi.base import (
    EndpointContext,
    blocking,
    context,
    json_response,
    principal,
    resolve,
)
from cellplane.dockerapi.image_archive import (
    catalog_name,
    digest_name,
    error_line,
    json_line,
    registry_name,
    repo_tag,
)
from cellplane.dockerapi.mapping import Refused, loads
from cellplane.dockerapi.push_progress import PushProgress
from cellplane.errors import CellplaneError, Conflict, NotFound
from cellplane.ids import new_id
from cellplane.registries import (
    Registry,
    RegistryError,
    auth_header,
    registry_host,
    split_reference,
)
from cellplane.services import cell_access, image_names

__all__ = ["allowed", "image_pull", "image_push", "routes"]

log = structlog.get_logger("cellplane.dockerapi")


def allowed(registries: tuple[Registry, ...], reference: str) -> Registry:
    """The operator's registry `reference` names; Refused (403) naming it, or naming the allowed
    list for a Docker Hub name (pure)."""
    listed = ", ".join(r.host for r in registries) or "none are configured"
    host = registry_host(reference)
    if host is None:
        raise Refused(
            403,
            f"{reference}: Docker Hub is not allowed on this endpoint; images come from the "
            f"registries the operator allows ({listed}) or from `docker load`/`build`",
        )
    for r in registries:
        if r.host == host:
            return r
    raise Refused(
        403, f"registry {host} is not allowed on this endpoint (the operator allows: {listed})"
    )


def _client_auth(raw: str | None) -> str | None:
    """The client's `X-Registry-Auth` when it carries credentials (the docker CLI sends an empty
    `{}` without `docker login`); Refused (400) when it is not base64 JSON."""
    if not raw:
        return None
    try:
        padded = raw + "=" * (-len(raw) % 4)
        doc = loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error) as exc:
        raise Refused(400, "X-Registry-Auth: not base64-encoded JSON") from exc
    if not isinstance(doc, dict):
        raise Refused(400, "X-Registry-Auth: not a JSON object")
    return raw if doc.get("username") or doc.get("identitytoken") or doc.get("auth") else None


def _auth(registry: Registry, request: web.Request) -> str | None:
    client = _client_auth(request.headers.get("X-Registry-Auth"))
    if client:
        return client
    try:
        creds = registry.credentials()
    except RegistryError as exc:
        raise Refused(500, str(exc)) from exc
    return auth_header(creds[0], creds[1], registry.host) if creds else None


async def _relay(
    ctx: EndpointContext, resp: web.StreamResponse | None, url: str, params: dict[str, str],
    headers: dict[str, str], convert: Callable[[str], list[dict[str, Any]]] | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """The agent's progress lines to the client in Docker's words (each as a status, or as
    `convert` turns it into Docker's lines); its last line (the result), or None after an error
    (already sent). Without `resp` (an answer that is not a stream), the lines are not sent and
    an error is a RuntimeError naming it."""
    async with ctx.agent.stream(
        "POST", url, params=params, headers={**headers, "Content-Length": "0"},
        timeout=httpx.Timeout(3600, connect=10),
    ) as r:  # fmt: skip
        if r.status_code != 200:
            text = (await r.aread()).decode("utf-8", "replace")[:500]
            raise RuntimeError(f"the host refused: {text}")
        async for line in r.aiter_lines():
            if not line.strip():
                continue
            doc = json.loads(line)
            if doc.get("error") or doc.get("errorDetail"):
                if resp is None:
                    raise RuntimeError(str(doc.get("error") or doc["errorDetail"]))
                await resp.write(json_line(doc))
                return None
            if "cellplane_build" in doc or "cellplane_pushed" in doc:
                return dict(doc)
            text = str(doc.get("stream", "")).strip()
            if text and resp is not None:
                for out in convert(text) if convert is not None else [{"status": text}]:
                    await resp.write(json_line(out))
    return None


async def image_pull(request: web.Request) -> web.StreamResponse:
    """`POST /images/create?fromImage=...&tag=...` (a pull). Without a tag (`docker pull
    --all-tags`, the CLI sends none), every tag of the repository, one after the other, as
    dockerd pulls a name-only reference; the first that fails ends it."""
    from cellplane.dockerapi.images import need_write

    ctx, p = context(request), principal(request)
    image, tag = request.query.get("fromImage", ""), request.query.get("tag", "")
    if not image:
        raise Refused(400, "pull: fromImage is required")
    build.check_platform(request.query.get("platform", ""))
    named = "@" in image or ":" in image.rsplit("/", 1)[-1]
    every_tag = "tag" not in request.query and not named
    if tag.startswith("sha256:"):
        reference = f"{image}@{tag}"  # the CLI's form of `pull HOST/REPO@sha256:...`
    elif tag and not named:
        reference = f"{image}:{tag}"
    else:
        reference = image
    registry = allowed(ctx.svc.registries, reference)
    need_write(p)
    names = [digest_name(reference) if "@" in reference else registry_name(reference)]
    auth = _auth(registry, request)
    if every_tag:
        _, repository, _ = split_reference(names[0])
        try:
            tags = await blocking(registry_api.list_tags, registry, repository, auth)
        except registry_api.RegistryReadError as exc:
            raise Refused(404, f"pull --all-tags of {reference}: {exc}") from exc
        if not tags:
            raise Refused(404, f"pull --all-tags of {reference}: the repository has no tags")
        names = [registry_name(f"{registry.host}/{repository}:{t}") for t in tags]
    url, secret, host = await blocking(image_names.build_host, ctx.svc)
    headers = {"Authorization": f"Bearer {secret}"}
    if auth:
        headers["X-Registry-Auth"] = auth
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    for name in names:
        if not await _pull_one(ctx, resp, name, registry, url, headers, host):
            break
    await resp.write_eof()
    return resp


async def _pull_one(
    ctx: EndpointContext, resp: web.StreamResponse, name: str, registry: Registry, url: str,
    headers: dict[str, str], host: str,
) -> bool:  # fmt: skip
    """Pull the catalogue name `name` on the build host `host` and register it, its progress
    and outcome written to `resp`; whether it worked (an error is written as Docker's)."""
    engine_ref = repo_tag(name)  # a name by digest as it is
    spec = {"reference": engine_ref, "tls_verify": not registry.insecure}
    try:
        await resp.write(json_line({"status": f"Pulling from {engine_ref} on host {host}"}))
        done = await _relay(ctx, resp, f"{url}/pulls", {"spec": json.dumps(spec)}, headers)
        if done is None:
            return False
        archive, sha, size = await build._fetch(
            ctx, f"{url}/builds/{done['cellplane_build']}", headers
        )
        engine_id, _ = await blocking(
            image_names.register_archive, ctx.svc, [name], archive, sha, size, ctx.project_id
        )
        digest = name.partition("@")[2]
        if not digest:
            manifest = await _tag_manifest(registry, engine_ref, headers.get("X-Registry-Auth"))
            digest = manifest[0] if manifest else ""
        if digest:
            await resp.write(json_line({"status": f"Digest: {digest}"}))
        await resp.write(
            json_line({"status": f"Status: Downloaded image for {engine_ref} "
                       f"(sha256:{engine_id[:12]}) into Cellplane's catalogue"})
        )  # fmt: skip
        return True
    except (httpx.HTTPError, RuntimeError, ValueError, CellplaneError) as exc:
        await resp.write(error_line(f"pull of {engine_ref} on host {host}: {exc}"))
        return False


async def _tag_manifest(
    registry: Registry, engine_ref: str, auth: str | None
) -> tuple[str, int] | None:
    """The digest and size of the manifest a tag names, as the registry gives them (None when
    they cannot be read: the pull or push worked, only its digest is not shown)."""
    _, path, tag = split_reference(engine_ref)
    try:
        return await blocking(registry_api.manifest_digest, registry, path, tag, auth)
    except registry_api.RegistryReadError as exc:
        log.warning("digest not read", reference=engine_ref, error=str(exc))
        return None


async def image_push(request: web.Request) -> web.StreamResponse:
    """`POST /images/{name}/push?tag=...`: the catalogue image of that name to its registry."""
    from cellplane.dockerapi.images import find

    ctx = context(request)
    image, tag = request.match_info["name"], request.query.get("tag", "")
    reference = f"{image}:{tag}" if tag else image
    registry = allowed(ctx.svc.registries, reference)
    name = registry_name(reference)
    engine_ref = repo_tag(name)
    rows = await blocking(image_names.entries, ctx.svc)
    try:
        row, _ = find(rows, name)
    except Refused as exc:
        raise Refused(404, f"An image does not exist locally with the tag: {engine_ref}") from exc
    if row["kind"] != "archive" or not row.get("engine_ref"):
        raise Refused(400, f"{engine_ref} is the built-in host image: it cannot be pushed")
    auth = _auth(registry, request)
    url, secret, host = await blocking(image_names.build_host, ctx.svc)
    headers = {"Authorization": f"Bearer {secret}"}
    if auth:
        headers["X-Registry-Auth"] = auth
    spec = {
        "reference": engine_ref,
        "tls_verify": not registry.insecure,
        "image": {"id": row["id"], "engine_ref": row["engine_ref"]},
    }
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    progress = PushProgress()
    try:
        repository = engine_ref.rpartition(":")[0]
        await resp.write(json_line({"status": f"The push refers to repository [{repository}]"}))
        done = await _relay(
            ctx, resp, f"{url}/pushes", {"spec": json.dumps(spec)}, headers, progress.feed
        )
        if done is not None:
            pushed_tag = split_reference(engine_ref)[2]
            manifest = await _tag_manifest(registry, engine_ref, auth)
            if manifest is None:  # pushed; only its digest could not be read back
                lines = [{"status": f"{pushed_tag}: pushed (the registry gave no digest)"}]
            else:
                lines = progress.finish(pushed_tag, *manifest)
            for line in lines:
                await resp.write(json_line(line))
    except (httpx.HTTPError, RuntimeError, ValueError, CellplaneError) as exc:
        await resp.write(error_line(f"push of {engine_ref} from host {host}: {exc}"))
    await resp.write_eof()
    return resp


#: The Dockerfile instructions `docker commit --change` may give (dockerd's, but for HEALTHCHECK
#: and ONBUILD, which the engine's commit does not apply): the engine applies them.
COMMIT_CHANGES = frozenset(
    {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
)


def commit_changes(items: list[str]) -> list[str]:
    """`docker commit --change` instructions, checked (Refused 400 naming the first that is not
    one `COMMIT_CHANGES` has, or has no argument); blank ones dropped. A change may hold several
    lines, as dockerd takes them."""
    out: list[str] = []
    for item in items:
        for line in item.splitlines():
            line = line.strip()
            if not line:
                continue
            word, _, rest = line.partition(" ")
            if word.upper() not in COMMIT_CHANGES:
                raise Refused(
                    400,
                    f"commit --change {word!r}: not an instruction commit applies here "
                    f"({', '.join(sorted(COMMIT_CHANGES))})",
                )
            if not rest.strip():
                raise Refused(400, f"commit --change {line!r}: {word.upper()} needs an argument")
            out.append(f"{word.upper()} {rest.strip()}")
    return out


async def image_commit(request: web.Request) -> web.Response:
    """`POST /commit?container=...&repo=...&tag=...` (`docker commit`): the engine of the
    container's host commits it; the image is registered in the catalogue under `repo:tag`."""
    from cellplane.dockerapi.images import need_write

    ctx, p, q = context(request), principal(request), request.query
    if not q.get("container"):
        raise Refused(400, "commit: container is required")
    if not q.get("repo"):
        raise Refused(
            400,
            "commit needs a name for the image (docker commit CONTAINER NAME[:TAG]): Cellplane's "
            "catalogue keeps named images only",
        )
    changes = commit_changes(q.getall("changes", []))
    if q.get("config") or q.get("squash"):
        raise Refused(400, "commit with a config or squash is not supported on this endpoint yet")
    need_write(p)
    reference = f"{q['repo']}:{q['tag']}" if q.get("tag") else q["repo"]
    name = catalog_name(reference, [r.host for r in ctx.svc.registries])
    cell = await blocking(resolve, ctx, p, q["container"])
    try:
        url, secret, cell_id = await blocking(
            cell_access.locate, ctx.svc, p, cell["id"], "cells:write"
        )
    except (Conflict, NotFound) as exc:
        raise Refused(409, f"container {cell['name']} has no engine container: {exc}") from exc
    spec = {
        "reference": f"cp-commit-{new_id('c')}:latest",
        "container": f"cp-{cell_id}",
        "comment": q.get("comment", ""),
        "author": q.get("author", ""),
        "pause": q.get("pause", "1").lower() not in ("0", "false"),
        "changes": changes,
    }
    headers = {"Authorization": f"Bearer {secret}"}
    try:
        done = await _relay(ctx, None, f"{url}/commits", {"spec": json.dumps(spec)}, headers)
        if done is None:
            raise RuntimeError("the host ended without an image")
        fetched = f"{url}/builds/{done['cellplane_build']}"
        archive, sha, size = await build._fetch(ctx, fetched, headers)
        engine_id, _ = await blocking(
            image_names.register_archive, ctx.svc, [name], archive, sha, size, ctx.project_id
        )
    except (httpx.HTTPError, RuntimeError, ValueError) as exc:
        raise Refused(409, f"commit of container {cell['name']}: {exc}") from exc
    return json_response({"Id": f"sha256:{engine_id}"}, status=201)


def routes() -> list[tuple[str, str, Any]]:
    return [("POST", r"/images/{name:.+}/push", image_push), ("POST", "/commit", image_commit)]
