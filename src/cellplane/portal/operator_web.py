"""What the operators' pages share: the frame (project switcher kept from `?project=`), reading a
form, turning a refusal into errors at the form's fields, and the confirmation step (`Confirmed`:
one GET page that names what the action does, one POST that does it only with ``confirm=yes``,
for every operator's delete, disable, unassign and revoke)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import Conflict, FieldError, NotFound, ValidationFailed
from cellplane.portal import data, forms
from cellplane.portal.pages import _projects, layout
from cellplane.portal.web import Caller, caller, check_csrf, page, portal_of, redirect, work
from cellplane.services.context import Principal, Services

__all__ = ["Confirmed", "confirm_page", "operator_page", "read_form", "refusal", "validated"]

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
    final: bool = True,
    general: list[str] | None = None,
    status: int = 200,
) -> Response:
    """The confirmation page of an operator's action (`general`: why it was just refused)."""
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
            "final": final,
            "general": general or [],
        },
        status,
    )


#: What an action is given: the services, the caller and the route's path parameters.
Params = dict[str, str]
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Confirmed:
    """An operator's action behind the confirmation page, at `path` (a route template such as
    ``/directory/users/{user}/delete``): GET shows the page, POST does it with ``confirm=yes``
    (without it the browser is sent to the page; nothing happens on a single click).

    `permission` is the one the API's route requires (checked first: 403 before any lookup);
    `name(svc, p, params)` names the object (and answers 404 for one that is not there);
    `run(svc, p, params)` calls the same service as the API (its checks, its audit). A refusal
    of the service (409: yourself, what is left in it) is shown on the confirmation page."""

    path: str
    nav: str
    verb: str
    kind: str
    permission: str
    note: str
    back: str
    name: Callable[[Services, Principal, Params], str]
    run: Callable[[Services, Principal, Params], object]
    #: False for what can be undone (disable, enable): the page does not say it cannot.
    final: bool = True

    def _action(self, params: Params) -> str:
        path = self.path
        for k, v in params.items():
            path = path.replace("{" + k + "}", quote(v, safe=""))
        return "/portal" + path

    async def _page(self, request: Request, c: Caller, general: list[str], status: int) -> Response:
        params = dict(request.path_params)
        name = await work(self.name, portal_of(request).svc, c.principal, params)
        return await confirm_page(
            request,
            c,
            nav=self.nav,
            verb=self.verb,
            kind=self.kind,
            name=name,
            action=self._action(params),
            back=self.back,
            note=self.note,
            final=self.final,
            general=general,
            status=status,
        )

    async def page(self, request: Request) -> Response:
        c = await caller(request)
        data.needs(c.principal, self.permission)
        return await self._page(request, c, [], 200)

    async def post(self, request: Request) -> Response:
        c = await caller(request)
        form = await read_form(request, c)
        params = dict(request.path_params)
        if form.get("confirm") != "yes":  # not from the confirmation page
            return redirect(self._action(params))
        data.needs(c.principal, self.permission)
        try:
            await work(self.run, portal_of(request).svc, c.principal, params)
        except Conflict as exc:
            return await self._page(request, c, [exc.detail], 409)
        return redirect(self.back)

    def handlers(self) -> tuple[Handler, Handler]:
        """(the page, the post): their names name the action (the server's logs, the fuzzer)."""
        slug = f"{self.verb}_{self.kind}".lower().replace(" ", "_")

        async def page(request: Request) -> Response:
            return await self.page(request)

        async def post(request: Request) -> Response:
            return await self.post(request)

        page.__name__, post.__name__ = f"{slug}_page", f"{slug}_post"
        return page, post
