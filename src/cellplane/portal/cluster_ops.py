"""What a developer does to a cluster from the portal: stop and start it, resize a node group,
export its spec (a download), delete it (after the confirmation page), and create one from an
uploaded Serengeti spec file. Errors come back at their field, as the API's (422/409)."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import Conflict, ValidationFailed
from cellplane.portal import data, forms
from cellplane.portal.clusters import detail_page, list_page
from cellplane.portal.confirm import ask, confirmed
from cellplane.portal.web import HEADERS, caller, check_csrf, portal_of, redirect, work
from cellplane.services.clusters import ClusterCreate, ResizeBody

__all__ = [
    "MAX_SPEC_BYTES",
    "cluster_action",
    "cluster_delete",
    "cluster_export",
    "cluster_resize",
    "cluster_upload",
]

#: The largest spec file the upload form takes (the catalog's specs are under 4 KiB).
MAX_SPEC_BYTES = 256 * 1024
_RESIZE_FIELDS = ("nodeGroup", "instanceNum")
_UPLOAD_FIELDS = ("name", "spec")


def _pydantic_errors(exc: ValidationError, known: tuple[str, ...]) -> forms.FormErrors:
    errors: forms.FormErrors = {}
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        errors.setdefault(field if field in known else "", []).append(msg)
    return errors


async def cluster_action(request: Request) -> Response:
    """Stop or start; back to the cluster's page, where the nodes follow live."""
    c = await caller(request)
    svc = portal_of(request).svc
    cluster_id = request.path_params["cluster_id"]
    form = await request.form()
    check_csrf(request, c.session, form)
    try:
        await work(data.cluster_action, svc, c.principal, cluster_id, str(form.get("action", "")))
    except Conflict as exc:  # not in a state that stops or starts
        return await detail_page(request, c, cluster_id, {}, {"": [exc.detail]}, 409)
    return redirect(f"/portal/clusters/{quote(cluster_id)}")


async def cluster_resize(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc
    cluster_id = request.path_params["cluster_id"]
    raw = await request.form()
    check_csrf(request, c.session, raw)
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    errors: forms.FormErrors = {}
    count = form.get("instanceNum", "")
    if not count.isdigit():
        errors = {"instanceNum": ["must be a whole number of nodes"]}
    else:
        try:
            body = ResizeBody.model_validate(
                {"nodeGroup": form.get("nodeGroup", ""), "instanceNum": int(count)}
            )
            await work(data.resize_cluster, svc, c.principal, cluster_id, body)
            return redirect(f"/portal/clusters/{quote(cluster_id)}")
        except ValidationError as exc:
            errors = _pydantic_errors(exc, _RESIZE_FIELDS)
        except ValidationFailed as exc:
            errors = forms.errors_of(exc.errors, _RESIZE_FIELDS)
        except Conflict as exc:  # not RUNNING, a group that cannot shrink, capacity, quota
            errors = {"": [exc.detail]}
    return await detail_page(request, c, cluster_id, form, errors, 422)


async def cluster_export(request: Request) -> Response:
    """The spec as a file download (`<name>.json`), as `cellplane cluster export` writes it."""
    c = await caller(request)
    svc = portal_of(request).svc
    cluster_id = request.path_params["cluster_id"]

    def go() -> tuple[str, dict[str, Any]]:
        return data.cluster(svc, c.principal, cluster_id)["name"], data.cluster_spec(
            svc, c.principal, cluster_id
        )

    name, spec = await work(go)
    headers = {
        "Cache-Control": "no-store",
        "X-Content-Type-Options": HEADERS["X-Content-Type-Options"],
        "Content-Disposition": f'attachment; filename="{name}.json"',
    }
    body = json.dumps(spec, indent=2, sort_keys=True) + "\n"
    return Response(body, media_type="application/json", headers=headers)


async def cluster_delete(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc
    cluster_id = request.path_params["cluster_id"]
    form = await request.form()
    check_csrf(request, c.session, form)
    if not confirmed(form):
        return ask(f"/portal/clusters/{quote(cluster_id)}/delete")
    keep = form.get("keepVolumes") == "true"
    view = await work(data.cluster, svc, c.principal, cluster_id)
    try:
        await work(data.delete_cluster, svc, c.principal, cluster_id, keep)
    except Conflict as exc:  # another operation is under way
        return await detail_page(request, c, cluster_id, {}, {"": [exc.detail]}, 409)
    return redirect(f"/portal/projects/{quote(view['project'])}/clusters")


async def _read_spec(upload: Any, errors: forms.FormErrors) -> dict[str, Any] | None:
    if not isinstance(upload, UploadFile) or not upload.filename:
        errors["spec"] = ["choose a spec file (JSON, as `cellplane cluster export` writes)"]
        return None
    raw = await upload.read(MAX_SPEC_BYTES + 1)
    if len(raw) > MAX_SPEC_BYTES:
        errors["spec"] = [f"the file is larger than {MAX_SPEC_BYTES // 1024} KiB"]
        return None
    try:
        spec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        errors["spec"] = [f"{upload.filename} is not JSON: {exc}"]
        return None
    if not isinstance(spec, dict):
        errors["spec"] = [f"{upload.filename} holds a JSON {type(spec).__name__}, not an object"]
        return None
    return spec


async def cluster_upload(request: Request) -> Response:
    """Create a cluster from an uploaded spec file (multipart form: name, spec, key)."""
    c = await caller(request)
    project = request.path_params["project"]
    svc = portal_of(request).svc
    raw = await request.form(max_files=1, max_fields=10, max_part_size=MAX_SPEC_BYTES + 1)
    check_csrf(request, c.session, raw)
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    key = form.get("key", "")
    if not 8 <= len(key) <= 64:
        key = form["key"] = secrets.token_urlsafe(16)
    errors: forms.FormErrors = {}
    spec = await _read_spec(raw.get("spec"), errors)
    if spec is not None:
        try:
            body = ClusterCreate.model_validate({"name": form.get("name", ""), "spec": spec})
            task = await work(data.create_cluster, svc, c.principal, project, body, key)
            return redirect(f"/portal/clusters/{quote(task['entity']['id'])}")
        except ValidationError as exc:
            errors = _pydantic_errors(exc, _UPLOAD_FIELDS)
        except ValidationFailed as exc:  # the spec's own errors, with their path in the file
            for e in exc.errors:
                where = e.field.removeprefix("spec.") if e.field.startswith("spec.") else ""
                field = forms.field_of(e.field, _UPLOAD_FIELDS)
                errors.setdefault(field, []).append(f"{where}: {e.message}" if where else e.message)
        except Conflict as exc:
            errors = {"name" if "already exists" in exc.detail else "": [exc.detail]}
    new = {"key": secrets.token_urlsafe(16)}
    return await list_page(request, c, svc, project, new, {}, 422, form, errors)
