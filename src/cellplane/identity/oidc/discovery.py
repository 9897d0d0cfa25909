"""Discovery (`/.well-known/openid-configuration`) and the JWKS of a tenant's issuer.

Called by the discovery and JWKS routes (`api/routes_identity.py`) through `OidcProvider`.
"""

from __future__ import annotations

from typing import Any

from authlib.oidc.discovery import OpenIDProviderMetadata

from cellplane.identity.oidc.core import OidcProviderCore
from cellplane.identity.oidc.records import (
    Ctx,
)
from cellplane.identity.oidc.settings import (
    _CONFIDENTIAL,
    AUTH_METHODS,
    GRANT_TYPES,
    SCOPES_SUPPORTED,
)
from cellplane.identity.signing import ALGORITHMS


class DiscoveryMixin(OidcProviderCore):
    """Discovery and JWKS of `OidcProvider`."""

    # -- discovery -----------------------------------------------------------------------------

    def discovery(self, ctx: Ctx) -> dict[str, Any]:
        iss = ctx.issuer
        meta = OpenIDProviderMetadata(
            issuer=iss,
            authorization_endpoint=f"{iss}/authorize",
            token_endpoint=f"{iss}/token",
            userinfo_endpoint=f"{iss}/userinfo",
            jwks_uri=f"{iss}/jwks",
            revocation_endpoint=f"{iss}/revoke",
            introspection_endpoint=f"{iss}/introspect",
            end_session_endpoint=f"{iss}/logout",
            scopes_supported=list(SCOPES_SUPPORTED),
            response_types_supported=["code"],
            response_modes_supported=["query"],
            grant_types_supported=list(GRANT_TYPES),
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=list(ALGORITHMS),
            token_endpoint_auth_methods_supported=list(AUTH_METHODS),
            revocation_endpoint_auth_methods_supported=list(AUTH_METHODS),
            introspection_endpoint_auth_methods_supported=list(_CONFIDENTIAL),
            code_challenge_methods_supported=["S256"],
            claims_supported=[
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "name",
                "preferred_username",
                "email",
            ],
            request_parameter_supported=False,
            request_uri_parameter_supported=False,
        )
        return dict(meta)

    def jwks(self, ctx: Ctx) -> dict[str, Any]:
        return self.svc.tokens.jwks(ctx.tenant_id, ctx.now)
