"""What the operators' pages share: the frame (project switcher kept from `?project=`), reading a
form, turning a refusal into errors at the form's fields, and the confirmation page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import Conflict, FieldError, NotFound, ValidationFailed
from cellplane.portal import forms
from cellplane.portal.pages import _projects, layout
from cellplane.portal.web import Caller, check_csrf, page, portal_of, work

__all__ = ["confirm_page", "operator_page", "read_form", "refusal", "validated"]

M = TypeVar("M", bound=BaseModel)


async def operator_page(
    request: Request,
    c: Caller,
    template: str,
    nav: str,
    title: str,
    read: Callable[[], dict[str, Any]],
    status: int = 200,
) -> Response:
    """An operator's page: `read()` (in the thread pool) gives its values."""
    svc = portal_of(request).svc

    def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return _projects(svc, c.principal), read()

    projects, values = await work(go)
    project = request.query_params.get("project") or None
    if project not in {p["name"] for p in projects}:
        project = None
    return page(
        request,
        template,
        {**layout(c, projects, project, nav), "title": title, **values},
        status=status,
        session=c.session,
    )


async def read_form(request: Request, c: Caller) -> dict[str, str]:
    """The posted form's text fields (trimmed), after the CSRF check."""
    raw = await request.form()
    check_csrf(request, c.session, raw)
    return {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}


def validated(model: type[M], body: dict[str, Any]) -> M:
    """The request model, or `ValidationFailed` naming each field (as the API's 422)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = [
            (str(e["loc"][0]) if e["loc"] else "", str(e["msg"]).removeprefix("Value error, "))
            for e in exc.errors()
        ]
        raise ValidationFailed([FieldError(f, m) for f, m in errors]) from None


def refusal(exc: Exception, known: tuple[str, ...]) -> forms.FormErrors:
    """A service's refusal as errors at the form's fields ("" for the form as a whole)."""
    if isinstance(exc, ValidationFailed):
        return forms.errors_of(exc.errors, known)
    if isinstance(exc, Conflict | NotFound):
        return {"": [exc.detail]}
    raise exc


async def confirm_page(
    request: Request,
    c: Caller,
    *,
    nav: str,
    verb: str,
    kind: str,
    name: str,
    action: str,
    back: str,
    note: str,
) -> Response:
    return await operator_page(
        request,
        c,
        "confirm.html",
        nav,
        f"{verb} {kind} {name}?",
        lambda: {
            "verb": verb,
            "kind": kind,
            "name": name,
            "action": action,
            "back": back,
            "hidden": {},
            "note": note,
            "keep_volumes": False,
        },
    )
