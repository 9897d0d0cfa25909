"""Constants and tunables of the OIDC provider (`OidcSettings`, read by `settings_of`).

Imported by every module of the provider; `services/context.py` names `OidcSettings` as the type
of `Services.oidc`, and the tests build their own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from cellplane.services.context import Services

log = logging.getLogger("cellplane.oidc")

#: The public client every tenant accepts (the `cellplane` CLI); it is not stored.
BUILTIN_CLIENT_ID: Final = "cellplane-cli"
#: The public client of the web portal (`cellplane.portal`, served at ``{base}/portal``); every
#: tenant accepts it, not stored. Its only redirect URIs are the portal's own, on the issuer's base.
PORTAL_CLIENT_ID: Final = "cellplane-portal"
PORTAL_REDIRECT_PATHS: Final = ("/portal/callback", "/portal/signed-out")
SCOPES_SUPPORTED: Final = ("openid", "profile", "email")
GRANT_TYPES: Final = ("authorization_code", "password", "client_credentials", "refresh_token")
AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "none")
_CONFIDENTIAL: Final = ("client_secret_basic", "client_secret_post")
#: The one answer to every failed password login, whatever the reason.
LOGIN_FAILED: Final = "The username or password is incorrect, or the account cannot sign in now."
#: Parameters of an authorization request carried through the login form.
AUTHZ_PARAMS: Final = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
)
_FORM_KEY_SETTING: Final = "identity.form_key"
_CSRF_COOKIE: Final = "cp_authz"
_MAX_NONCE: Final = 512
_MAX_URI: Final = 2048
_ROLES_SEP: Final = "\n"


@dataclass(frozen=True)
class OidcSettings:
    """Tunables of the provider. Read from ``Services.oidc`` when present (see `settings_of`)."""

    #: Account lock: failures (each within the window of the previous one) before it locks.
    max_failures: int = 10
    failure_window_s: float = 300.0
    lock_s: float = 300.0
    #: Per (tenant, client address): failed logins allowed at once, then one per interval.
    source_max_failures: int = 5
    source_failure_interval_s: float = 300.0
    #: A locked account still admits addresses its user signed in from within this time.
    familiar_ttl_s: float = 30 * 86400.0
    refresh_ttl_s: float = 30 * 86400.0
    ldap_refresh_ttl_s: float = 12 * 3600.0
    code_ttl_s: float = 60.0
    #: Token-bucket rate limit of the token and login endpoints per (tenant, client address).
    rate_per_s: float = 20.0
    rate_burst: float = 40.0
    form_ttl_s: float = 900.0
    max_body_bytes: int = 64 * 1024
    max_field_chars: int = 8192
    max_username_chars: int = 128
    max_password_chars: int = 1024
    #: How long the token endpoint may reuse a tenant, client or role lookup (see `lookups`);
    #: a change committed in this process drops them at once. 0 = read the database each time.
    lookup_cache_s: float = 5.0


def settings_of(svc: Services, environ: Mapping[str, str] | None = None) -> OidcSettings:
    """``svc.oidc`` if the Services carry one, else the defaults; then any
    ``CELLPLANE_OIDC_<FIELD>`` environment variable overrides its field (e.g.
    ``CELLPLANE_OIDC_RATE_PER_S=1000`` for a benchmark against a real server)."""
    found = getattr(svc, "oidc", None)
    settings = found if isinstance(found, OidcSettings) else OidcSettings()
    env = os.environ if environ is None else environ
    changes: dict[str, Any] = {}
    for f in fields(OidcSettings):
        raw = env.get(f"CELLPLANE_OIDC_{f.name.upper()}")
        if raw is not None:
            cast = int if isinstance(getattr(settings, f.name), int) else float
            changes[f.name] = cast(raw)
    return replace(settings, **changes) if changes else settings
