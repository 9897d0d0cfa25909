"""The audit log (filters: actor, action, outcome, time range; pages of 50, newest first) and
certificates (list; revoke after the confirmation page)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import NotFound, ValidationFailed
from cellplane.portal import admin_data
from cellplane.portal.operator_web import Confirmed, operator_page
from cellplane.portal.web import caller, portal_of

__all__ = [
    "REVOKE",
    "audit_page",
    "certificates_page",
    "filters_of",
    "may_revoke",
]

PAGE = 50
OUTCOMES = ("success", "failure", "denied")
_FILTERS = ("actor", "action", "outcome", "since", "until")


def _when(field: str, raw: str) -> datetime | None:
    """A time of the form's `datetime-local` input (UTC), or an ISO 8601 time."""
    if not raw:
        return None
    try:
        t = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed.field(field, f"{raw!r} is not a time (YYYY-MM-DDTHH:MM)") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def filters_of(q: Any) -> dict[str, str]:
    """The audit page's filters from its query string; bad values answer 422 naming the field."""
    f = {k: str(q.get(k, "")).strip() for k in _FILTERS}
    if f["outcome"] and f["outcome"] not in OUTCOMES:
        raise ValidationFailed.field("outcome", f"must be one of {', '.join(OUTCOMES)}")
    for k in ("actor", "action"):
        if len(f[k]) > 256:
            raise ValidationFailed.field(k, "is longer than 256 characters")
    return f


async def audit_page(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc
    f = filters_of(request.query_params)
    since, until = _when("since", f["since"]), _when("until", f["until"])
    if since and until and since >= until:
        raise ValidationFailed.field("until", "must be after since")
    before = request.query_params.get("before") or None

    def read() -> dict[str, Any]:
        page = admin_data.audit_events(
            svc,
            c.principal,
            actor=f["actor"] or None,
            action=f["action"] or None,
            outcome=f["outcome"] or None,
            since=since,
            until=until,
            before=before,
            limit=PAGE,
        )
        kept = {k: v for k, v in f.items() if v}
        older = urlencode({**kept, "before": page["next_cursor"]}) if page["next_cursor"] else ""
        return {
            "events": page["items"],
            "filters": f,
            "outcomes": OUTCOMES,
            "older": older,
            "newest": urlencode(kept) if before else None,
        }

    return await operator_page(request, c, "audit.html", "audit", "Audit log", read)


async def certificates_page(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc
    p = c.principal

    def read() -> list[dict[str, Any]]:
        return admin_data.certificates(svc, p)

    return await operator_page(
        request,
        c,
        "certificates.html",
        "certificates",
        "Certificates",
        lambda: {"certificates": [{**x, "may_revoke": may_revoke(p, x)} for x in read()]},
    )


def may_revoke(p: Any, cert: dict[str, Any]) -> bool:
    """What `pki.revoke` allows: the owner, a tenant admin for a client certificate, or a
    system admin (so nobody sees a Revoke button that would fail)."""
    own = p.kind == "user" and cert["owner"] == f"user:{p.subject}"
    return bool(own or (cert["profile"] == "client" and p.can("users:write")) or p.is_system_admin)


def _certificate_name(svc: Any, p: Any, a: dict[str, str]) -> str:
    found = [x for x in admin_data.certificates(svc, p) if x["serial"] == a["serial"]]
    if not found:
        raise NotFound(f"certificate {a['serial']!r} does not exist")
    return f"{found[0]['subject']} ({a['serial']})"


REVOKE = Confirmed(
    path="/certificates/{serial}/revoke",
    nav="certificates",
    verb="Revoke",
    kind="certificate",
    permission="self",
    note="It is listed in the CA's revocation list from now on.",
    back="/portal/certificates",
    name=_certificate_name,
    run=lambda svc, p, a: admin_data.revoke_certificate(svc, p, a["serial"]),
)
