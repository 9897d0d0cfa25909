"""`cellplane login`, `logout` and `whoami`.

Attached to the root app by `cellplane.cli.main`.

Logging in is OAuth 2.0 against the tenant's issuer `{server}/identity/{tenant}`, whose
endpoints come from its discovery document: a user logs in with the password grant of the
built-in public client `cellplane-cli`, a service account with client_credentials
(client_secret_basic). The session is stored in the SDK's configuration file
(`cellplane.client.config`, 0600) and renewed transparently by the SDK
(`cellplane.client.credentials.SessionCredentials`). Passwords and secrets are only ever read
from a hidden prompt or from stdin (`--password-stdin`, `--client-secret-stdin`), never from a
flag value, and tokens are never printed.

TLS trust at login: an https server is verified with the CA the configuration already has
for it (`ca_cert`, or `CELLPLANE_CA_CERT`), else with `--ca-file`, else with the system's
trust store. `--trust-server-ca` is the explicit trust-on-first-use alternative: it fetches
`GET /v1/ca` without verification, prints the root's SHA-256 fingerprint (pin it with
`--ca-fingerprint`), stores it next to the configuration and verifies everything after with
it. Nothing is ever fetched unverified without that flag.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from cellplane.cli import output

if TYPE_CHECKING:
    import httpx

    from cellplane.client.config import LoginSession

__all__ = ["login", "logout", "transport_factory", "whoami"]


def _no_transport() -> httpx.BaseTransport | None:
    return None


#: The httpx transport of the requests `login` and `logout` make themselves (before there is
#: a session). Tests point it at an in-process app; None is the network.
transport_factory: Callable[[], httpx.BaseTransport | None] = _no_transport


def _http_client(
    ca_cert: str | None, *, verify: bool = True, timeout: float = 30.0
) -> httpx.Client:
    """A plain httpx client verifying TLS as the SDK does (a CA file: that CA only)."""
    import ssl

    import httpx

    tls: bool | ssl.SSLContext = verify
    if verify and ca_cert:
        tls = ssl.create_default_context(cafile=ca_cert)
    return httpx.Client(
        verify=tls,
        timeout=timeout,
        transport=transport_factory(),
        headers={"User-Agent": "cellplane-cli"},
    )


def _connection_hint(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        text += (
            "\nthe server's certificate is not trusted: pass --ca-file with its CA, or "
            "--trust-server-ca to fetch it (its fingerprint is printed)"
        )
    return text


def _trust_server_ca(server: str, fingerprint: str | None) -> str:
    """Fetch the server's root CA unverified (trust on first use), store it, return its path."""
    import hashlib
    import os
    from urllib.parse import urlsplit

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from cellplane.client import CellplaneConnectionError, CellplaneError, Client
    from cellplane.client.config import config_path

    try:
        # Unverified on purpose: this is the trust-on-first-use fetch (see the module doc).
        with Client(server, None, verify=False, transport=transport_factory()) as api:
            pem = api.ca_certificates()
    except CellplaneConnectionError as exc:
        output.fail(f"cannot fetch the CA of {server}", _connection_hint(exc))
    except CellplaneError as exc:
        output.fail(f"cannot fetch the CA of {server}", f"GET /v1/ca: {exc}")
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        output.fail(f"cannot fetch the CA of {server}", "GET /v1/ca did not answer PEM")
    roots = [c for c in certs if c.subject == c.issuer] or certs[-1:]
    root = roots[0]
    der = root.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    pretty = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
    output.err_console.print(
        f"Server CA: {output.escape(root.subject.rfc4514_string())}\nSHA-256 fingerprint: {pretty}"
    )
    if fingerprint is not None:
        wanted = fingerprint.replace(":", "").replace(" ", "").upper()
        if wanted != digest:
            output.fail("the server's CA does not have the expected fingerprint", pretty)
    else:
        output.err_console.print(
            "[yellow]Warning:[/] trusting this CA on first use; compare the fingerprint with "
            "the one your operator published (or pass --ca-fingerprint)."
        )
    parts = urlsplit(server)
    label = f"{parts.hostname or 'server'}-{parts.port or 443}".replace(":", "_")
    target = config_path().parent / f"ca-{label}.pem"
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    os.chmod(tmp, 0o644)  # a certificate is public
    tmp.replace(target)
    return str(target)


def _check_ca_file(path: Path) -> str:
    import ssl

    resolved = path.expanduser().resolve()
    try:
        ssl.create_default_context(cafile=str(resolved))
    except (OSError, ssl.SSLError) as exc:
        raise typer.BadParameter(
            f"{path}: not a PEM CA file ({exc})", param_hint="'--ca-file'"
        ) from None
    return str(resolved)


def _discover(http: httpx.Client, server: str, tenant: str) -> dict[str, Any]:
    import httpx

    url = f"{server}/identity/{quote(tenant, safe='')}/.well-known/openid-configuration"
    try:
        response = http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        output.fail(f"login failed: cannot reach {server}", _connection_hint(exc))
    if response.status_code == 404:
        output.fail(f"login failed: tenant {tenant!r} does not exist on {server}")
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if response.status_code != 200 or not isinstance(doc, dict):
        output.fail(
            "login failed: no OpenID Connect discovery document",
            f"GET {url}: HTTP {response.status_code}",
        )
    endpoint = doc.get("token_endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        output.fail("login failed: the discovery document has no token endpoint")
    if server.startswith("https://") and not endpoint.startswith("https://"):
        output.fail("login failed: the token endpoint is not https", endpoint)
    return doc


def _login_error(kind: str, exc: Exception) -> str:
    from cellplane.client.credentials import OAuthError

    if not isinstance(exc, OAuthError):
        return str(exc)
    if exc.error == "invalid_grant" and kind == "user":
        return "invalid username or password"
    if exc.error in ("invalid_client", "unauthorized_client") and kind == "service":
        return "invalid client id or secret"
    if exc.status == 429:
        return "too many attempts; wait a little and try again"
    return exc.description or exc.error


def login(
    server: Annotated[
        str | None, typer.Option("--server", help="Server URL (default: the configured one).")
    ] = None,
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="Your tenant.")] = "default",
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="User name (prompted if absent).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="Log in as this service account.")
    ] = None,
    client_secret_stdin: Annotated[
        bool, typer.Option("--client-secret-stdin", help="Read the client secret from stdin.")
    ] = False,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="Verify the server with this CA (PEM).")
    ] = None,
    trust_server_ca: Annotated[
        bool,
        typer.Option(
            "--trust-server-ca",
            help="Fetch the server's CA unverified (trust on first use) and keep it.",
        ),
    ] = False,
    ca_fingerprint: Annotated[
        str | None,
        typer.Option("--ca-fingerprint", help="With --trust-server-ca: its expected SHA-256."),
    ] = None,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Log in (a user with a password, or a service account) and keep the session."""
    import os
    import time
    from dataclasses import replace

    import httpx

    from cellplane.client import CellplaneError, Client, config, credentials

    if client_id is not None and (username is not None or password_stdin):
        raise typer.BadParameter(
            "--client-id logs in a service account: no --username/--password-stdin",
            param_hint="'--client-id'",
        )
    if client_secret_stdin and client_id is None:
        raise typer.BadParameter(
            "--client-secret-stdin needs --client-id", param_hint="'--client-secret-stdin'"
        )
    if ca_file is not None and trust_server_ca:
        raise typer.BadParameter(
            "use --ca-file or --trust-server-ca, not both", param_hint="'--ca-file'"
        )
    if ca_fingerprint is not None and not trust_server_ca:
        raise typer.BadParameter(
            "--ca-fingerprint goes with --trust-server-ca", param_hint="'--ca-fingerprint'"
        )
    try:
        conf = config.load_config()
    except config.ConfigError as exc:
        output.fail("bad configuration", str(exc))
    target = (server or conf.server or "").strip().rstrip("/")
    if not target:
        output.fail("no server", "pass --server URL (e.g. https://cp.example:7400)")
    if not target.startswith(("https://", "http://")):
        raise typer.BadParameter(f"{target!r} is not an http(s) URL", param_hint="'--server'")
    https = target.startswith("https://")
    if trust_server_ca and not https:
        raise typer.BadParameter("the server is not https", param_hint="'--trust-server-ca'")

    # TLS trust first: a fingerprint shown before the password prompt can still be refused.
    same_server = conf.server is not None and conf.server.rstrip("/") == target
    ca_cert: str | None = None
    if ca_file is not None:
        ca_cert = _check_ca_file(ca_file)
    elif trust_server_ca:
        ca_cert = _trust_server_ca(target, ca_fingerprint)
    elif https and (same_server or os.environ.get("CELLPLANE_CA_CERT")):
        ca_cert = conf.ca_cert  # the CA already configured for this server

    kind = "user" if client_id is None else "service"
    if kind == "user":
        if username is None:
            username = typer.prompt("Username")
        secret = (
            output.read_stdin_secret("password")
            if password_stdin
            else typer.prompt("Password", hide_input=True)
        )
    else:
        secret = (
            output.read_stdin_secret("client secret")
            if client_secret_stdin
            else typer.prompt("Client secret", hide_input=True)
        )

    with _http_client(ca_cert) as http:
        doc = _discover(http, target, tenant)
        token_endpoint = str(doc["token_endpoint"])
        revocation = doc.get("revocation_endpoint")
        now = time.time()
        try:
            if client_id is None:
                answer = credentials.token_request(
                    http,
                    token_endpoint,
                    {
                        "grant_type": "password",
                        "username": username or "",
                        "password": secret,
                        "client_id": config.BUILTIN_CLIENT_ID,
                    },
                )
            else:
                answer = credentials.token_request(
                    http,
                    token_endpoint,
                    {"grant_type": "client_credentials"},
                    basic=(client_id, secret),
                )
        except credentials.OAuthError as exc:
            output.fail(f"login failed: {_login_error(kind, exc)}", exc.description)
        except httpx.HTTPError as exc:
            output.fail(f"login failed: cannot reach {target}", _connection_hint(exc))
    session = config.LoginSession(
        server=target,
        tenant=tenant,
        kind=kind,
        client_id=client_id or config.BUILTIN_CLIENT_ID,
        access_token="",
        expires_at=0.0,
        token_endpoint=token_endpoint,
        revocation_endpoint=revocation if isinstance(revocation, str) else None,
        client_secret=secret if kind == "service" else None,
        username=username,
    )
    try:
        session = credentials.session_from_token_answer(session, answer, now)
    except credentials.OAuthError as exc:
        output.fail(f"login failed: {exc.description or exc.error}")
    del secret
    try:
        with Client(
            target,
            session.access_token,
            verify=ca_cert or True,
            transport=transport_factory(),
            retries=1,
        ) as client:
            me = client.whoami()
    except CellplaneError as exc:
        output.fail("login failed: the server refused the new token", str(exc))
    session = replace(session, subject=me.get("subject"), name=me.get("name"))
    try:
        with config.session_lock():
            path = config.save_session(target, ca_cert, session)
    except (OSError, config.ConfigError) as exc:
        output.fail("cannot store the session", str(exc))
    if output.is_json(out):
        output.print_json(me)
        return
    who = me.get("name") or me.get("subject")
    output.say(
        f"Logged in to {output.escape(target)} as {output.escape(str(who))} "
        f"({me.get('kind')}, tenant {output.escape(str(me.get('tenant')))})"
    )
    roles = ", ".join(me.get("roles") or []) or "none"
    output.say(f"roles: {output.escape(roles)}")
    output.err_console.print(f"session saved to {output.escape(str(path))}")
    if os.environ.get("CELLPLANE_TOKEN"):
        output.err_console.print(
            "[yellow]Warning:[/] CELLPLANE_TOKEN is set: commands use it, not this session"
        )


def _revoke(session: LoginSession, ca_cert: str | None) -> list[str]:
    """Revoke the session's tokens at the revocation endpoint; return the problems (if any)."""
    import httpx

    from cellplane.client import credentials

    if not session.revocation_endpoint:
        return ["the server has no revocation endpoint"]
    problems: list[str] = []
    tokens: list[tuple[str, str]] = []
    if session.refresh_token:
        tokens.append((session.refresh_token, "refresh_token"))
    if session.access_token:
        tokens.append((session.access_token, "access_token"))
    basic = None
    if session.kind == "service" and session.client_secret:
        basic = (session.client_id, session.client_secret)
    with _http_client(ca_cert, timeout=10.0) as http:
        for token, hint in tokens:
            form = {"token": token, "token_type_hint": hint}
            if basic is None:
                form["client_id"] = session.client_id
            try:
                credentials.token_request(http, session.revocation_endpoint, form, basic=basic)
            except credentials.OAuthError as exc:
                problems.append(f"{hint}: {exc.description or exc.error}")
            except httpx.HTTPError as exc:
                problems.append(f"{hint}: {exc or type(exc).__name__}")
                break  # the server is unreachable: do not wait twice
    return problems


def logout() -> None:
    """Revoke the session's tokens at the server (best effort) and forget the session."""
    from cellplane.client import config

    try:
        document = config.read_document()
        session = config.read_session()
    except config.ConfigError as exc:
        output.fail("bad configuration", str(exc))
    if session is None:
        output.say("not logged in")
        return
    ca = document.get("ca_cert")
    problems = _revoke(session, ca if isinstance(ca, str) else None)
    if problems:
        output.err_console.print(
            "[yellow]Warning:[/] could not revoke the session at the server "
            f"({output.escape('; '.join(problems))}); it is forgotten here anyway."
        )
    config.clear_session()
    output.say(f"Logged out of {output.escape(session.server)}")
    if isinstance(document.get("token"), str) and document["token"]:
        output.err_console.print(
            "note: the configuration still holds a token (e.g. the bootstrap admin token of "
            "`cellplane up`); commands use it from now on"
        )


def whoami(out: output.OutputOpt = output.OutputFormat.table) -> None:
    """Who the configured credentials are: tenant, name, kind, roles, project roles."""
    import time

    from cellplane.client import CellplaneError, config

    with output.session() as client:
        me = client.whoami()
        project_roles: dict[str, Any] = me.get("projects") or {}
        names: dict[str, str] = {}
        if project_roles:
            try:
                names = {str(p.get("id")): str(p.get("name")) for p in client.iter_projects()}
            except CellplaneError:
                names = {}
    if output.is_json(out):
        output.print_json(me)
        return
    credential = "token"
    try:
        conf = config.load_config()
    except config.ConfigError:
        conf = None
    if conf is not None and conf.session is not None:
        left = int(conf.session.expires_at - time.time())
        how = "refresh token" if conf.session.kind == "user" else "client credentials"
        credential = f"login session (access token {'expired' if left <= 0 else f'valid {left}s'}"
        credential += f", renewed with its {how})"
    projects = "; ".join(
        f"{names.get(pid, pid)}: {', '.join(roles)}" for pid, roles in project_roles.items()
    )
    output.print_fields(
        [
            ("tenant", me.get("tenant")),
            ("name", me.get("name")),
            ("subject", me.get("subject")),
            ("kind", me.get("kind")),
            ("roles", ", ".join(me.get("roles") or [])),
            ("project roles", projects),
            ("server", conf.server if conf is not None else None),
            ("credential", credential),
        ]
    )
