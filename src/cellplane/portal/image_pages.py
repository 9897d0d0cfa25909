"""Images: the catalogue (name, tags, size) and an upload with a progress bar.

`static/portal.js` sends the chosen file as the raw body of `POST /portal/images/upload?name=`
(XHR, so the browser reports the upload's progress; the CSRF token in `X-CSRF-Token`) and shows
the answer: JSON, with the refused field's message at that field. Without JS the same form posts
as multipart and the answer is the page again (or the list). Either way the body is streamed to
disk under the server's image limit (`services.images.save_upload`, as `POST /v1/images`; the
server's request guard lets this one path through, as the API's upload), then checked and
registered by `images.import_image`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cellplane.errors import (
    CellplaneError,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from cellplane.portal import data, forms
from cellplane.portal.operator_web import operator_page
from cellplane.portal.web import Caller, caller, check_csrf, portal_of, redirect
from cellplane.services import images
from cellplane.validation import IMAGE_NAME, IMAGE_NAME_MSG

__all__ = ["images_page", "upload"]

_CHUNK = 1024 * 1024
_RAW_TYPES = ("application/x-tar", "application/octet-stream", "application/gzip")


async def _page(
    request: Request,
    c: Caller,
    form: dict[str, str] | None = None,
    errors: forms.FormErrors | None = None,
    status: int = 200,
) -> Response:
    svc = portal_of(request).svc
    errors = errors or {}

    def read() -> dict[str, Any]:
        data.needs(c.principal, "images:read")
        return {
            "images": images.list_images(svc),
            "limit": svc.max_image_bytes,
            "form": form or {},
            "errors": errors,
            "general": errors.get("", []),
            "uploaded": request.query_params.get("uploaded", ""),
        }

    return await operator_page(request, c, "images.html", "images", "Images", read, status)


async def images_page(request: Request) -> Response:
    return await _page(request, await caller(request))


def _field_of(exc: CellplaneError) -> forms.FormErrors:
    """Where the page shows a refusal: the name, the file, or the form as a whole."""
    if isinstance(exc, ValidationFailed):
        out: forms.FormErrors = {}
        for e in exc.errors:
            out.setdefault("name" if e.field == "name" else "file", []).append(e.message)
        return out
    if isinstance(exc, Conflict):
        return {"name" if "already exists" in exc.detail else "": [exc.detail]}
    return {"file": [exc.detail]}  # too large, not a tarball


async def _chunks(file: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await file.read(_CHUNK):
        yield chunk


async def upload(request: Request) -> Response:
    """One image upload: raw (XHR, answered in JSON) or a multipart form (answered with a page)."""
    c = await caller(request)
    data.needs(c.principal, "images:write")  # before a byte of the body is read
    svc = portal_of(request).svc
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    raw = media != "multipart/form-data"
    name = request.query_params.get("name", "").strip()
    try:
        if raw:
            check_csrf(request, c.session, {})
            if media and media not in _RAW_TYPES:
                raise UnsupportedMediaType(
                    f"an image is a tarball (application/x-tar), not {media}"
                )
            if not IMAGE_NAME.fullmatch(name):
                raise ValidationFailed.field("name", IMAGE_NAME_MSG)
            declared = request.headers.get("content-length", "")
            saved = await images.save_upload(svc, request.stream(), declared)
        else:
            form = await request.form(max_files=1, max_fields=5)
            check_csrf(request, c.session, form)
            name = str(form.get("name", "")).strip()
            file = form.get("file")
            if not IMAGE_NAME.fullmatch(name):
                raise ValidationFailed.field("name", IMAGE_NAME_MSG)
            if not isinstance(file, UploadFile) or not file.filename:
                raise ValidationFailed.field("file", "choose an image tarball to upload")
            saved = await images.save_upload(svc, _chunks(file))
        view = await run_in_threadpool(images.import_image, svc, name, *saved)
    except (ValidationFailed, Conflict, PayloadTooLarge, UnsupportedMediaType) as exc:
        errors = _field_of(exc)
        if raw:
            body = {"status": exc.status, "detail": exc.detail, "errors": errors}
            return JSONResponse(body, exc.status, headers={"Cache-Control": "no-store"})
        return await _page(request, c, {"name": name}, errors, 422)
    if raw:
        return JSONResponse(view, 201, headers={"Cache-Control": "no-store"})
    return redirect("/portal/images?uploaded=" + quote(view["name"], safe=""))
