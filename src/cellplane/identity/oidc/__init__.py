"""The OpenID Connect provider: one issuer per tenant, at ``{public_url}/identity/{tenant}``.

The protocol is authlib's: an :class:`authlib.oauth2.rfc6749.AuthorizationServer` subclass (built
per request, for the tenant in the URL) with authlib's grant classes (password, client
credentials, refresh token, authorization code + PKCE), its OIDC extensions (ID tokens), and its
revocation (RFC 7009), introspection (RFC 7662), userinfo and RP-initiated logout endpoints. This
module supplies what authlib leaves to the application: storage callbacks against the identity
models, client and user lookup, and the token generator, which mints JWTs with the tenant's own
:class:`~cellplane.identity.tokens.TokenIssuer` (RS256, ``kid`` header, RFC 9068 access tokens).

authlib is synchronous; the routes (``api/routes_identity.py``) read the request body in the
event loop and call the provider in a worker thread with plain pairs and headers. The provider
answers data (:class:`~cellplane.identity.oidc.answers.Answer`, ``Page``); the api layer makes
the HTTP responses and renders the login page from a Jinja2 template. No web framework is
imported here.

Modules, by concern:

* ``settings``: constants and :class:`OidcSettings` (tunables, ``CELLPLANE_OIDC_*``).
* ``records``: the request context (:class:`Ctx`), users, clients, token and code records,
  authlib's request and payload types.
* ``adapters``: authlib's server, grants, PKCE, ID token and endpoint subclasses.
* ``core``: the provider's state, request plumbing, client and user lookup.
* ``lookups``: tenant, client and role lookups of the token endpoint, kept a few seconds and
  dropped by any commit that changes the directory.
* ``login``: password checks, throttles and lockout, LDAP federation.
* ``store``: token minting, refresh token families, codes, revocation, logout.
* ``discovery``: discovery document and JWKS.
* ``authorize``: the authorization endpoint and its CSRF-bound login form.
* ``answers``: framework-free answers (JSON / raw / page).
* ``provider``: :class:`OidcProvider`, the parts put together.

Storage and hardening decisions:

* Refresh tokens and authorization codes are opaque 256-bit random strings, stored as SHA-256.
  A refresh token is *claimed* (marked used, with a conditional UPDATE, so two concurrent uses
  cannot both win) when presented; the grant then issues the next token of the same family.
  Presenting a used refresh token revokes the whole family (reuse detection). A code is claimed
  the same way when redeemed; a replayed code is refused and the refresh family it issued is
  revoked (RFC 6749 section 4.1.2). A code or refresh token presented with a wrong PKCE verifier,
  redirect URI or scope is spent all the same.
* PKCE is mandatory for the authorization code grant, and only ``S256`` is accepted.
* Password logins: unknown users cost one argon2 verification against a dummy hash; every
  failure (unknown user, wrong password, locked, disabled, directory down) answers the same
  ``invalid_grant`` description. Guessing is throttled per source before per account (so an
  attacker is slowed down rather than the owner locked out; docs/identity.md):

  - per (tenant, client address): a token bucket of ``source_max_failures`` failed logins,
    refilled by one every ``source_failure_interval_s``. A slot is reserved *before* the
    password is checked and given back on success, so parallel guesses cannot overrun it; a
    source without a slot answers 429 at once (no argon2 work, no account counted).
  - per account: ``max_failures`` failures, each within ``failure_window_s`` of the previous
    one (``User.last_failure_at``; the window slides), lock it for ``lock_s``; it unlocks by
    itself. The counter is charged *before* the check by one atomic ``UPDATE ... SET
    failed_logins = failed_logins + 1 ... RETURNING``, so N parallel guesses get at most
    ``max_failures`` real checks. With the defaults one address can never lock an account
    (5 < 10, and its next guess comes only after the window has passed).
  - a locked account still admits sign-in from a *familiar* address (one this user signed in
    from within ``familiar_ttl_s``, by the audit log), still under that address's throttle.

  A stale argon2 hash is rehashed after a good login.
* LDAP federation: when the tenant has an :class:`LdapConfig` and no *local* user of that name
  exists, the password is checked against the directory (``cellplane.identity.ldap``, imported
  lazily) and a ``source="ldap"`` user row is upserted. The roles the directory groups map to go
  into the access token; the refresh family keeps them (in ``RefreshToken.scope``, after a
  newline: OAuth scopes never contain one) because the directory cannot be asked about a user's
  groups again without their password. So they cannot go stale for long, an LDAP family has an
  absolute lifetime of ``ldap_refresh_ttl_s`` (rotation does not extend it); local users' refresh
  tokens live ``refresh_ttl_s`` from their last use.
* The token and login endpoints are rate limited per (tenant, client address) by a token bucket.
* Every authentication event is audited: ``login``, ``lockout``, ``token`` (per grant),
  ``token.reuse`` (refresh reuse and code replay), ``revoke``, ``logout``.
"""

from cellplane.identity.oidc.answers import Answer, Cookie, Page, Reply
from cellplane.identity.oidc.provider import OidcProvider
from cellplane.identity.oidc.records import AuthUser, Ctx, FormRequest, SlowDown
from cellplane.identity.oidc.settings import (
    BUILTIN_CLIENT_ID,
    GRANT_TYPES,
    LOGIN_FAILED,
    SCOPES_SUPPORTED,
    OidcSettings,
    settings_of,
)
from cellplane.identity.ratelimit import RateLimiter

__all__ = [
    "BUILTIN_CLIENT_ID",
    "GRANT_TYPES",
    "LOGIN_FAILED",
    "SCOPES_SUPPORTED",
    "Answer",
    "AuthUser",
    "Cookie",
    "Ctx",
    "FormRequest",
    "OidcProvider",
    "OidcSettings",
    "Page",
    "RateLimiter",
    "Reply",
    "SlowDown",
    "settings_of",
]
