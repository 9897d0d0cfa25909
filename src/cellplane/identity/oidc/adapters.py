"""Adapters to authlib: the per-request `TenantServer` (an `AuthorizationServer`) with its grants,
PKCE, ID token extensions and the revocation, introspection, userinfo and end-session endpoints.

Each adapter calls back into the provider (`ctx.provider`) for storage and user checks. Built per
request by `core.OidcProviderCore._run`. Answers are framework-free `Answer` values; the api layer
turns them into HTTP responses.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeGrant,
    AuthorizationServer,
    ClientCredentialsGrant,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Request,
    RefreshTokenGrant,
    ResourceOwnerPasswordCredentialsGrant,
    ResourceProtector,
)
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import OpenIDCode, OpenIDToken, UserInfo, UserInfoEndpoint
from authlib.oidc.rpinitiated import EndSessionEndpoint
from sqlalchemy import select

from cellplane.identity.oidc.answers import Answer
from cellplane.identity.oidc.records import (
    AccessTokenRecord,
    AuthUser,
    Client,
    CodeRecord,
    Ctx,
    FormRequest,
    RefreshRecord,
)
from cellplane.identity.oidc.settings import (
    _CONFIDENTIAL,
    _MAX_NONCE,
    AUTH_METHODS,
    SCOPES_SUPPORTED,
)
from cellplane.identity.passwords import (
    generate_secret,
)
from cellplane.identity.signing import ALGORITHMS
from cellplane.state.identity_models import (
    AuthCode,
    RefreshToken,
)

# --- the per-request authorization server ---------------------------------------------------


class TenantServer(AuthorizationServer):  # type: ignore[misc]
    """authlib's AuthorizationServer for one request to one tenant's issuer."""

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(scopes_supported=list(SCOPES_SUPPORTED))
        self.ctx = ctx
        self.register_token_generator("default", self._generate)
        self.register_grant(PasswordGrant, [IdToken()])
        self.register_grant(ClientCredentials)
        self.register_grant(RefreshGrant, [IdToken()])
        self.register_grant(CodeGrant, [S256CodeChallenge(required=True), IdCode()])
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)
        self.register_endpoint(UserInfoEndpoint_(self, resource_protector=_protector(ctx)))
        self.register_endpoint(EndSession)

    # authlib callbacks

    def query_client(self, client_id: str) -> Client | None:
        return self.ctx.provider.client(self.ctx, client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.ctx.provider.save_token(self.ctx, token, request)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        raise TypeError("build a FormRequest in the route")

    def create_json_request(self, request: Any) -> Any:
        raise TypeError("no JSON requests here")

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Answer:
        return Answer(status, body, dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def _generate(
        self,
        grant_type: str,
        client: Client,
        user: AuthUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        return self.ctx.provider.generate_token(
            self.ctx, grant_type, client, user, scope, include_refresh_token
        )


def _server(grant: Any) -> TenantServer:
    server: TenantServer = grant.server
    return server


class PasswordGrant(ResourceOwnerPasswordCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    def authenticate_user(self, username: str, password: str) -> AuthUser:
        ctx = _server(self).ctx
        return ctx.provider.check_password(ctx, username, password)


class ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(_CONFIDENTIAL)


class RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        ctx = _server(self).ctx
        return ctx.provider.claim_refresh_token(ctx, refresh_token, self)

    def authenticate_user(self, refresh_token: RefreshRecord) -> AuthUser:
        ctx = _server(self).ctx
        first = ctx.reader.scalar(
            select(RefreshToken.created_at)
            .where(RefreshToken.family_id == refresh_token.family_id)
            .order_by(RefreshToken.created_at)
            .limit(1)
        )
        return ctx.provider.active_user(
            ctx, refresh_token.subject_id, roles=refresh_token.roles, auth_time=first
        )

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        return None  # already marked used when it was claimed


class CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        nonce = self.request.payload.data.get("nonce")
        if nonce is not None and len(nonce) > _MAX_NONCE:
            raise InvalidRequestError("'nonce' is too long.", redirect_uri=redirect_uri)
        return redirect_uri

    def generate_authorization_code(self) -> str:
        return generate_secret(32)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        ctx = _server(self).ctx
        ctx.provider.save_code(ctx, code, request)

    def query_authorization_code(self, code: str, client: Client) -> CodeRecord | None:
        ctx = _server(self).ctx
        return ctx.provider.claim_code(ctx, code, client)

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        return None  # already marked used when it was claimed

    def authenticate_user(self, authorization_code: CodeRecord) -> AuthUser:
        ctx = _server(self).ctx
        return ctx.provider.active_user(
            ctx, authorization_code.user_id, auth_time=authorization_code.created_at
        )


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE required of every client, S256 only (``plain`` and a missing method are refused)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send 'code_challenge' (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)

    def get_authorization_code_challenge(self, authorization_code: CodeRecord) -> str:
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: CodeRecord) -> str:
        return "S256"


class _IdTokenMixin:
    """ID tokens signed by the tenant's TokenIssuer (not authlib's JWT code)."""

    def encode_id_token(self, token: dict[str, Any], request: FormRequest) -> str:
        code: CodeRecord | None = request.authorization_code
        user: AuthUser = request.user
        return request.ctx.provider.id_token(
            request.ctx,
            request.client,
            user,
            token,
            nonce=code.get_nonce() if code else None,
            auth_time=user.auth_time,
        )

    def generate_user_info(self, user: AuthUser, scope: str) -> UserInfo:
        return user_info(user, scope)


class IdToken(_IdTokenMixin, OpenIDToken):  # type: ignore[misc]
    """ID tokens for the password and refresh grants (scope `openid`)."""


class IdCode(_IdTokenMixin, OpenIDCode):  # type: ignore[misc]
    """OpenID Connect for the authorization code flow (nonce, auth_time, prompt)."""

    def exists_nonce(self, nonce: str, request: FormRequest) -> bool:
        ctx = request.ctx
        found = ctx.reader.scalar(
            select(AuthCode.code_hash).where(
                AuthCode.tenant_id == ctx.tenant_id,
                AuthCode.client_id == request.payload.client_id,
                AuthCode.nonce == nonce,
            )
        )
        return found is not None


def user_info(user: AuthUser, scope: str) -> UserInfo:
    info = UserInfo(
        sub=user.id,
        name=user.display_name or user.name,
        preferred_username=user.name,
        email=user.email,
    )
    return UserInfo({k: v for k, v in info.filter(scope).items() if v is not None})


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    def query_token(
        self, token_string: str, token_type_hint: str | None
    ) -> AccessTokenRecord | RefreshRecord | None:
        server: TenantServer = self.server
        return server.ctx.provider.find_token(server.ctx, token_string)

    def revoke_token(
        self, token: AccessTokenRecord | RefreshRecord, request: OAuth2Request
    ) -> None:
        server: TenantServer = self.server
        server.ctx.provider.revoke(server.ctx, token, request.client)


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(_CONFIDENTIAL)

    def query_token(
        self, token_string: str, token_type_hint: str | None
    ) -> AccessTokenRecord | RefreshRecord | None:
        server: TenantServer = self.server
        return server.ctx.provider.find_token(server.ctx, token_string)

    def check_permission(
        self, token: AccessTokenRecord | RefreshRecord, client: Client, request: OAuth2Request
    ) -> bool:
        # Any confidential client of the tenant (a resource server) may introspect its tokens;
        # query_token only finds tokens of this tenant.
        return not client.public

    def introspect_token(self, token: AccessTokenRecord | RefreshRecord) -> dict[str, Any]:
        server: TenantServer = self.server
        ctx = server.ctx
        if isinstance(token, AccessTokenRecord):
            c = token.claims
            body: dict[str, Any] = {
                k: c[k]
                for k in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti")
                if k in c
            }
            body["username"] = c.get("name")
            body["token_type"] = "Bearer"
            body["tenant"] = c.get("tenant")
            return body
        return {
            "scope": token.scope,
            "client_id": token.client_id,
            "sub": token.subject_id,
            "iss": ctx.issuer,
            "exp": math.floor(token.expires_at),
            "iat": math.floor(token.created_at),
            "token_type": "refresh_token",
        }


class _Validator(BearerTokenValidator):  # type: ignore[misc]
    def __init__(self, ctx: Ctx) -> None:
        super().__init__(realm=ctx.issuer)
        self.ctx = ctx

    def authenticate_token(self, token_string: str) -> AccessTokenRecord | None:
        return self.ctx.provider.verify_access(self.ctx, token_string)


def _protector(ctx: Ctx) -> ResourceProtector:
    protector = ResourceProtector()
    protector.register_token_validator(_Validator(ctx))
    return protector


class UserInfoEndpoint_(UserInfoEndpoint):  # type: ignore[misc]
    """OIDC userinfo: a bearer access token of this tenant with scope `openid`."""

    def __call__(self, request: OAuth2Request) -> tuple[int, Any, list[tuple[str, str]]]:
        server: TenantServer = self.server
        token: AccessTokenRecord = self.resource_protector.validate_request(["openid"], request)
        if token.claims.get("kind") != "user":
            raise InvalidTokenError(description="This token does not stand for a user.")
        try:
            user = server.ctx.provider.active_user(server.ctx, str(token.claims["sub"]))
        except InvalidGrantError:
            raise InvalidTokenError() from None
        return 200, dict(self.generate_user_info(user, token.scope)), default_json_headers

    def generate_user_info(self, user: AuthUser, scope: str) -> UserInfo:
        return user_info(user, scope)


class EndSession(EndSessionEndpoint):  # type: ignore[misc]
    """RP-initiated logout: revokes the refresh families of the ID token's user and client."""

    def get_server_jwks(self) -> dict[str, Any]:
        ctx = _server(self).ctx
        return ctx.provider.svc.tokens.jwks(ctx.tenant_id, ctx.now)

    def get_algorithms(self) -> list[str]:
        return list(ALGORITHMS)

    def validate_request(self, request: OAuth2Request) -> Any:
        ctx = _server(self).ctx
        if (
            len(request.payload.data.get("id_token_hint") or "")
            > ctx.provider.settings.max_field_chars
        ):
            raise InvalidRequestError("'id_token_hint' is too long.")
        validated = super().validate_request(request)
        claims = validated.id_token_claims
        if claims is not None and claims.get("iss") != ctx.issuer:
            raise InvalidRequestError("The 'id_token_hint' was not issued by this issuer.")
        return validated

    def end_session(self, end_session_request: Any) -> None:
        ctx = _server(self).ctx
        claims = end_session_request.id_token_claims
        if claims:
            ctx.provider.logout(ctx, str(claims.get("sub", "")), claims.get("aud"))
