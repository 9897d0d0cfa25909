"""`OidcProvider`: the identity endpoints of every tenant of one server process.

Made once per app by `api/routes_identity.provider_of` (on the first identity request) and by
tests and `bench/tokens.py`. Its parts live in modules by concern, combined here as mixins so
that authlib's adapters and the routes see one object: `core` (state, requests, lookups),
`login` (passwords and lockout), `store` (tokens and refresh families), `discovery` (discovery
and JWKS) and `authorize` (the login form).
"""

from __future__ import annotations

from cellplane.identity.oidc.authorize import AuthorizeMixin
from cellplane.identity.oidc.discovery import DiscoveryMixin
from cellplane.identity.oidc.store import TokenStoreMixin

__all__ = ["OidcProvider"]


class OidcProvider(AuthorizeMixin, TokenStoreMixin, DiscoveryMixin):
    """The identity endpoints of every tenant of one server process."""
