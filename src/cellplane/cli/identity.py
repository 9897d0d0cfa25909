"""Identity commands: `login`, `logout`, `whoami`, and the `tenant`, `user`, `group`, `client`,
`role`, `quota`, `cert` and `audit` nouns.

Attached to the root app by `register` (called from `cellplane.cli.main`).

Logging in is OAuth 2.0 against the tenant's issuer `{server}/identity/{tenant}`, whose
endpoints come from its discovery document: a user logs in with the password grant of the
built-in public client `cellplane-cli`, a service account with client_credentials
(client_secret_basic). The session is stored in the CLI configuration (`cli/config.py`,
0600) and renewed transparently by the SDK. Passwords and secrets are only ever read from a
hidden prompt or from stdin (`--password-stdin`, `--client-secret-stdin`), never from a flag
value, and tokens are never printed.

TLS trust at login: an https server is verified with the CA the configuration already has
for it (`ca_cert`, or `CELLPLANE_CA_CERT`), else with `--ca-file`, else with the system's
trust store. `--trust-server-ca` is the explicit trust-on-first-use alternative: it fetches
`GET /v1/ca` without verification, prints the root's SHA-256 fingerprint (pin it with
`--ca-fingerprint`), stores it next to the configuration and verifies everything after with
it. Nothing is ever fetched unverified without that flag.

Secrets the server generates (a new user's or tenant admin's password, a client secret) are
printed once, with a warning on stderr that they are not shown again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cellplane.cli import output

if TYPE_CHECKING:
    import httpx

    from cellplane.cli.config import LoginSession
    from cellplane.client import Client

__all__ = [
    "audit_app",
    "cert_app",
    "client_app",
    "group_app",
    "login",
    "logout",
    "quota_app",
    "register",
    "role_app",
    "tenant_app",
    "transport_factory",
    "user_app",
    "whoami",
]

JSONDict = dict[str, Any]


def _no_transport() -> httpx.BaseTransport | None:
    return None


#: The httpx transport of the requests `login` and `logout` make themselves (before there is
#: a session). Tests point it at an in-process app; None is the network.
transport_factory: Callable[[], httpx.BaseTransport | None] = _no_transport

tenant_app = typer.Typer(help="Manage tenants (system admins).", no_args_is_help=True)
user_app = typer.Typer(help="Manage the users of your tenant.", no_args_is_help=True)
group_app = typer.Typer(help="Manage the groups of your tenant.", no_args_is_help=True)
client_app = typer.Typer(
    help="Manage OAuth clients (service accounts are confidential clients).", no_args_is_help=True
)
role_app = typer.Typer(help="Assign and revoke roles.", no_args_is_help=True)
quota_app = typer.Typer(help="Show and set tenant and project quotas.", no_args_is_help=True)
cert_app = typer.Typer(help="Client certificates (mutual TLS) for yourself.", no_args_is_help=True)
audit_app = typer.Typer(help="Read the audit log.", no_args_is_help=True)


# -- helpers ------------------------------------------------------------------------------------
# The directory routes have no SDK methods yet: these go through the SDK's transport (retries,
# idempotency keys, credential renewal, errors) with the route paths of docs/api.md.


def _get(client: Client, path: str, params: Sequence[tuple[str, str]] | None = None) -> JSONDict:
    return client._json("GET", path, params=params)


def _items(client: Client, path: str) -> list[JSONDict]:
    return list(client._iter(path))


def _post(client: Client, path: str, body: Any = None) -> JSONDict:
    return client._json("POST", path, json_body=body)


def _delete(client: Client, path: str) -> JSONDict:
    return client._json("DELETE", path)


def _seg(value: str) -> str:
    """A user-given name as one path segment."""
    from urllib.parse import quote

    return quote(value, safe="")


def _read_stdin_secret(what: str) -> str:
    """The first line of stdin (without its newline); fails when it is empty."""
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        output.fail(f"no {what} on stdin")
    return line


def _as_json(out: output.OutputFormat) -> bool:
    return out is output.OutputFormat.json


def _say(text: str) -> None:
    output.out_console.print(text)


def _secret_once(label: str, secret: str) -> None:
    """Print a generated secret once: the value on stdout, the warning on stderr."""
    output.err_console.print(
        f"[yellow]Warning:[/] the {output.escape(label)} is shown only now; it cannot be "
        "retrieved again."
    )
    _say(f"{output.escape(label)}: {output.escape(secret)}")


def _fields(rows: Iterable[tuple[str, Any]]) -> None:
    output.print_table(["FIELD", "VALUE"], rows)


def _show_or_json(
    data: JSONDict, out: output.OutputFormat, rows: Iterable[tuple[str, Any]]
) -> None:
    if _as_json(out):
        output.print_json(data)
    else:
        _fields(rows)


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


# -- login, logout, whoami ------------------------------------------------------------------------


def _trust_server_ca(server: str, fingerprint: str | None) -> str:
    """Fetch the server's root CA unverified (trust on first use), store it, return its path."""
    import hashlib
    import os
    from urllib.parse import urlsplit

    import httpx
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from cellplane.cli.config import config_path

    try:
        with _http_client(None, verify=False) as http:
            response = http.get(f"{server}/v1/ca")
    except httpx.HTTPError as exc:
        output.fail(f"cannot fetch the CA of {server}", _connection_hint(exc))
    if response.status_code != 200:
        output.fail(f"cannot fetch the CA of {server}", f"GET /v1/ca: HTTP {response.status_code}")
    try:
        certs = x509.load_pem_x509_certificates(response.content)
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


def _discover(http: httpx.Client, server: str, tenant: str) -> JSONDict:
    import httpx

    url = f"{server}/identity/{_seg(tenant)}/.well-known/openid-configuration"
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
    from cellplane.cli.config import OAuthError

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

    from cellplane.cli import config
    from cellplane.client import CellplaneError, Client

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
            _read_stdin_secret("password")
            if password_stdin
            else typer.prompt("Password", hide_input=True)
        )
    else:
        secret = (
            _read_stdin_secret("client secret")
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
                answer = config.token_request(
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
                answer = config.token_request(
                    http,
                    token_endpoint,
                    {"grant_type": "client_credentials"},
                    basic=(client_id, secret),
                )
        except config.OAuthError as exc:
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
        session = config.session_from_token_answer(session, answer, now)
    except config.OAuthError as exc:
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
    if _as_json(out):
        output.print_json(me)
        return
    who = me.get("name") or me.get("subject")
    _say(
        f"Logged in to {output.escape(target)} as {output.escape(str(who))} "
        f"({me.get('kind')}, tenant {output.escape(str(me.get('tenant')))})"
    )
    roles = ", ".join(me.get("roles") or []) or "none"
    _say(f"roles: {output.escape(roles)}")
    output.err_console.print(f"session saved to {output.escape(str(path))}")
    if os.environ.get("CELLPLANE_TOKEN"):
        output.err_console.print(
            "[yellow]Warning:[/] CELLPLANE_TOKEN is set: commands use it, not this session"
        )


def _revoke(session: LoginSession, ca_cert: str | None) -> list[str]:
    """Revoke the session's tokens at the revocation endpoint; return the problems (if any)."""
    import httpx

    from cellplane.cli import config

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
                config.token_request(http, session.revocation_endpoint, form, basic=basic)
            except config.OAuthError as exc:
                problems.append(f"{hint}: {exc.description or exc.error}")
            except httpx.HTTPError as exc:
                problems.append(f"{hint}: {exc or type(exc).__name__}")
                break  # the server is unreachable: do not wait twice
    return problems


def logout() -> None:
    """Revoke the session's tokens at the server (best effort) and forget the session."""
    from cellplane.cli import config

    try:
        document = config.read_document()
        session = config.read_session()
    except config.ConfigError as exc:
        output.fail("bad configuration", str(exc))
    if session is None:
        _say("not logged in")
        return
    ca = document.get("ca_cert")
    problems = _revoke(session, ca if isinstance(ca, str) else None)
    if problems:
        output.err_console.print(
            "[yellow]Warning:[/] could not revoke the session at the server "
            f"({output.escape('; '.join(problems))}); it is forgotten here anyway."
        )
    config.clear_session()
    _say(f"Logged out of {output.escape(session.server)}")
    if isinstance(document.get("token"), str) and document["token"]:
        output.err_console.print(
            "note: the configuration still holds a token (e.g. the bootstrap admin token of "
            "`cellplane up`); commands use it from now on"
        )


def whoami(out: output.OutputOpt = output.OutputFormat.table) -> None:
    """Who the configured credentials are: tenant, name, kind, roles, project roles."""
    import time

    from cellplane.cli import config
    from cellplane.client import CellplaneError

    with output.session() as client:
        me = client.whoami()
        project_roles: dict[str, Any] = me.get("projects") or {}
        names: dict[str, str] = {}
        if project_roles:
            try:
                names = {str(p.get("id")): str(p.get("name")) for p in client.iter_projects()}
            except CellplaneError:
                names = {}
    if _as_json(out):
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
    _fields(
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


def register(app: typer.Typer) -> None:
    """Attach `login`, `logout`, `whoami` and the identity nouns to the root CLI app."""
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("whoami")(whoami)
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(user_app, name="user")
    app.add_typer(group_app, name="group")
    app.add_typer(client_app, name="client")
    app.add_typer(role_app, name="role")
    app.add_typer(quota_app, name="quota")
    app.add_typer(cert_app, name="cert")
    app.add_typer(audit_app, name="audit")


# -- tenants ----------------------------------------------------------------------------------------


@tenant_app.command("ls")
def tenant_ls(out: output.OutputOpt = output.OutputFormat.table) -> None:
    """List tenants (a tenant admin sees their own)."""
    with output.session() as client:
        tenants = _items(client, "/v1/tenants")
    if _as_json(out):
        output.print_json(tenants)
        return
    output.print_table(
        ["NAME", "ID", "AGE"],
        ([t.get("name"), t.get("id"), output.age(t.get("created_at"))] for t in tenants),
    )


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Tenant name (a DNS label).")],
    admin_name: Annotated[
        str, typer.Option("--admin-name", help="Name of the tenant's first admin.")
    ] = "admin",
    admin_password_stdin: Annotated[
        bool,
        typer.Option(
            "--admin-password-stdin",
            help="Read the admin's password from stdin (default: one is generated).",
        ),
    ] = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create a tenant with its `default` project and its first admin user."""
    admin: JSONDict = {"name": admin_name}
    if admin_password_stdin:
        admin["password"] = _read_stdin_secret("password")
    with output.session() as client:
        tenant = _post(client, "/v1/tenants", {"name": name, "admin": admin})
    if _as_json(out):
        output.print_json(tenant)
        return
    user = tenant.get("admin") or {}
    _say(
        f"tenant {output.escape(str(tenant.get('name')))} ({tenant.get('id')}) created; "
        f"admin user {output.escape(str(user.get('name')))} ({user.get('id')})"
    )
    if user.get("password"):
        _secret_once("admin password", str(user["password"]))


@tenant_app.command("show")
def tenant_show(
    tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Show a tenant."""
    with output.session() as client:
        data = _get(client, f"/v1/tenants/{_seg(tenant)}")
    _show_or_json(
        data,
        out,
        [("name", data.get("name")), ("id", data.get("id")), ("created", data.get("created_at"))],
    )


@tenant_app.command("delete")
def tenant_delete(tenant: Annotated[str, typer.Argument(help="Tenant name or id.")]) -> None:
    """Delete a tenant and its directory (refused while it has cells, volumes or clusters)."""
    with output.session() as client:
        _delete(client, f"/v1/tenants/{_seg(tenant)}")
    _say(f"tenant {output.escape(tenant)} deleted")


# -- users ------------------------------------------------------------------------------------------

UserRef = Annotated[str, typer.Argument(help="User name or id.")]


def _user_status(u: JSONDict) -> str:
    states = [s for s, on in (("disabled", u.get("disabled")), ("locked", u.get("locked"))) if on]
    return ", ".join(states) or "active"


def _user_rows(u: JSONDict) -> list[tuple[str, Any]]:
    return [
        ("name", u.get("name")),
        ("id", u.get("id")),
        ("display name", u.get("display_name")),
        ("email", u.get("email")),
        ("source", u.get("source")),
        ("status", _user_status(u)),
        ("created", u.get("created_at")),
    ]


@user_app.command("ls")
def user_ls(out: output.OutputOpt = output.OutputFormat.table) -> None:
    """List the users of your tenant."""
    with output.session() as client:
        users = _items(client, "/v1/users")
    if _as_json(out):
        output.print_json(users)
        return
    output.print_table(
        ["NAME", "ID", "EMAIL", "SOURCE", "STATUS", "AGE"],
        (
            [
                u.get("name"),
                u.get("id"),
                u.get("email"),
                u.get("source"),
                _user_status(u),
                output.age(u.get("created_at")),
            ]
            for u in users
        ),
    )


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="User name.")],
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    display_name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from stdin (default: one is generated)."
        ),
    ] = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create a local user (give them roles with `cellplane role assign`)."""
    body: JSONDict = {"name": name, "email": email, "display_name": display_name}
    if password_stdin:
        body["password"] = _read_stdin_secret("password")
    with output.session() as client:
        user = _post(client, "/v1/users", {k: v for k, v in body.items() if v is not None})
    if _as_json(out):
        output.print_json(user)
        return
    _say(f"user {output.escape(str(user.get('name')))} ({user.get('id')}) created")
    if user.get("password"):
        _secret_once("password", str(user["password"]))


@user_app.command("show")
def user_show(user: UserRef, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """Show a user."""
    with output.session() as client:
        data = _get(client, f"/v1/users/{_seg(user)}")
    _show_or_json(data, out, _user_rows(data))


@user_app.command("update")
def user_update(
    user: UserRef,
    email: Annotated[str | None, typer.Option(help="New email address.")] = None,
    display_name: Annotated[str | None, typer.Option(help="New display name.")] = None,
    disabled: Annotated[
        bool | None,
        typer.Option("--disable/--enable", help="Disable (or enable again) the account."),
    ] = None,
    unlock: Annotated[
        bool, typer.Option("--unlock", help="Clear a lockout after failed logins.")
    ] = False,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Set a new password, read from stdin (ends their sessions)."
        ),
    ] = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Change a user's details, status or password."""
    body: JSONDict = {"email": email, "display_name": display_name, "disabled": disabled}
    body = {k: v for k, v in body.items() if v is not None}
    if unlock:
        body["unlock"] = True
    if password_stdin:
        body["password"] = _read_stdin_secret("password")
    if not body:
        raise typer.BadParameter(
            "nothing to change: pass --email, --display-name, --disable/--enable, --unlock "
            "or --password-stdin"
        )
    with output.session() as client:
        data = client._json("PATCH", f"/v1/users/{_seg(user)}", json_body=body)
    if _as_json(out):
        output.print_json(data)
        return
    changed = ", ".join(sorted(body))
    _say(f"user {output.escape(str(data.get('name')))} updated: {output.escape(changed)}")


@user_app.command("delete")
def user_delete(user: UserRef) -> None:
    """Delete a user (their group memberships, roles and sessions go with them)."""
    with output.session() as client:
        _delete(client, f"/v1/users/{_seg(user)}")
    _say(f"user {output.escape(user)} deleted")


# -- groups -----------------------------------------------------------------------------------------

GroupRef = Annotated[str, typer.Argument(help="Group name or id.")]


@group_app.command("ls")
def group_ls(out: output.OutputOpt = output.OutputFormat.table) -> None:
    """List the groups of your tenant."""
    with output.session() as client:
        groups = _items(client, "/v1/groups")
    if _as_json(out):
        output.print_json(groups)
        return
    output.print_table(
        ["NAME", "ID", "MEMBERS", "AGE"],
        (
            [
                g.get("name"),
                g.get("id"),
                ", ".join(g.get("members") or []),
                output.age(g.get("created_at")),
            ]
            for g in groups
        ),
    )


def _print_group(group: JSONDict, out: output.OutputFormat, done: str | None = None) -> None:
    if _as_json(out):
        output.print_json(group)
    elif done is not None:
        members = ", ".join(group.get("members") or []) or "none"
        _say(f"{done}; members: {output.escape(members)}")
    else:
        _fields(
            [
                ("name", group.get("name")),
                ("id", group.get("id")),
                ("members", ", ".join(group.get("members") or [])),
                ("created", group.get("created_at")),
            ]
        )


@group_app.command("create")
def group_create(
    name: Annotated[str, typer.Argument(help="Group name.")],
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create a group."""
    with output.session() as client:
        group = _post(client, "/v1/groups", {"name": name})
    name_text = output.escape(str(group.get("name")))
    _print_group(group, out, f"group {name_text} ({group.get('id')}) created")


@group_app.command("show")
def group_show(group: GroupRef, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """Show a group and its members."""
    with output.session() as client:
        data = _get(client, f"/v1/groups/{_seg(group)}")
    _print_group(data, out)


@group_app.command("delete")
def group_delete(group: GroupRef) -> None:
    """Delete a group (its role assignments go with it)."""
    with output.session() as client:
        _delete(client, f"/v1/groups/{_seg(group)}")
    _say(f"group {output.escape(group)} deleted")


@group_app.command("add-member")
def group_add_member(
    group: GroupRef,
    user: UserRef,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Add a user to a group."""
    with output.session() as client:
        data = client._json("PUT", f"/v1/groups/{_seg(group)}/members/{_seg(user)}")
    done = f"{output.escape(user)} added to group {output.escape(str(data.get('name')))}"
    _print_group(data, out, done)


@group_app.command("remove-member")
def group_remove_member(
    group: GroupRef,
    user: UserRef,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Remove a user from a group."""
    with output.session() as client:
        data = _delete(client, f"/v1/groups/{_seg(group)}/members/{_seg(user)}")
    done = f"{output.escape(user)} removed from group {output.escape(str(data.get('name')))}"
    _print_group(data, out, done)


# -- OAuth clients ----------------------------------------------------------------------------------

ClientRef = Annotated[str, typer.Argument(help="Client name or id.")]


def _client_rows(c: JSONDict) -> list[tuple[str, Any]]:
    return [
        ("name", c.get("name")),
        ("client id", c.get("client_id")),
        ("type", "public" if c.get("public") else "confidential"),
        ("grant types", ", ".join(c.get("grant_types") or [])),
        ("redirect URIs", ", ".join(c.get("redirect_uris") or [])),
        ("created", c.get("created_at")),
    ]


@client_app.command("ls")
def client_ls(out: output.OutputOpt = output.OutputFormat.table) -> None:
    """List the OAuth clients of your tenant."""
    with output.session() as client:
        clients = _items(client, "/v1/clients")
    if _as_json(out):
        output.print_json(clients)
        return
    output.print_table(
        ["NAME", "CLIENT ID", "TYPE", "GRANTS", "AGE"],
        (
            [
                c.get("name"),
                c.get("client_id"),
                "public" if c.get("public") else "confidential",
                ", ".join(c.get("grant_types") or []),
                output.age(c.get("created_at")),
            ]
            for c in clients
        ),
    )


def _print_secret(data: JSONDict) -> None:
    secret = data.get("client_secret")
    if not secret:
        return
    _secret_once("client secret", str(secret))
    output.err_console.print(
        "log in with it: cellplane login --client-id "
        f"{output.escape(str(data.get('client_id')))} --client-secret-stdin"
    )


@client_app.command("create")
def client_create(
    name: Annotated[str, typer.Argument(help="Client name.")],
    public: Annotated[
        bool, typer.Option("--public", help="A public client (no secret, e.g. a browser app).")
    ] = False,
    grant: Annotated[
        list[str] | None,
        typer.Option(
            "--grant",
            help="Grant type (repeat): client_credentials (default), authorization_code, "
            "refresh_token, password.",
        ),
    ] = None,
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option("--redirect-uri", help="Redirect URI for authorization_code (repeat)."),
    ] = None,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create an OAuth client; a confidential one (a service account) gets a secret."""
    body: JSONDict = {"name": name, "public": public, "redirect_uris": list(redirect_uri or [])}
    if grant:
        body["grant_types"] = list(grant)
    with output.session() as client:
        data = _post(client, "/v1/clients", body)
    if _as_json(out):
        output.print_json(data)
        return
    _say(f"client {output.escape(str(data.get('name')))} ({data.get('client_id')}) created")
    _print_secret(data)


@client_app.command("show")
def client_show(client_ref: ClientRef, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """Show an OAuth client."""
    with output.session() as client:
        data = _get(client, f"/v1/clients/{_seg(client_ref)}")
    _show_or_json(data, out, _client_rows(data))


@client_app.command("rotate-secret")
def client_rotate_secret(
    client_ref: ClientRef, out: output.OutputOpt = output.OutputFormat.table
) -> None:
    """Give a confidential client a new secret (the old one stops working at once)."""
    with output.session() as client:
        data = _post(client, f"/v1/clients/{_seg(client_ref)}/secret")
    if _as_json(out):
        output.print_json(data)
        return
    _say(
        f"client {output.escape(str(data.get('name')))} ({data.get('client_id')}) has a new secret"
    )
    _print_secret(data)


@client_app.command("delete")
def client_delete(client_ref: ClientRef) -> None:
    """Delete an OAuth client (its roles and refresh tokens go with it)."""
    with output.session() as client:
        _delete(client, f"/v1/clients/{_seg(client_ref)}")
    _say(f"client {output.escape(client_ref)} deleted")


# -- roles ------------------------------------------------------------------------------------------


def _subject_text(a: JSONDict) -> str:
    subject = a.get("subject") or {}
    return f"{subject.get('kind')}:{subject.get('name') or subject.get('id')}"


@role_app.command("assign")
def role_assign(
    role: Annotated[
        str,
        typer.Argument(help="tenant-admin, project-member, project-viewer or system-admin."),
    ],
    user: Annotated[str | None, typer.Option("--user", help="To this user.")] = None,
    group: Annotated[str | None, typer.Option("--group", help="To this group.")] = None,
    client_ref: Annotated[
        str | None, typer.Option("--client", help="To this client (service account).")
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="In this project only (default: tenant-wide).")
    ] = None,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Assign a role to a user, a group or a client, tenant-wide or in one project."""
    named = [(k, v) for k, v in (("user", user), ("group", group), ("client", client_ref)) if v]
    if len(named) != 1:
        raise typer.BadParameter("name exactly one of --user, --group or --client")
    body: JSONDict = {"role": role, named[0][0]: named[0][1]}
    if project:
        body["project"] = project
    with output.session() as client:
        data = _post(client, "/v1/role-assignments", body)
    if _as_json(out):
        output.print_json(data)
        return
    where = f"in project {data.get('project')}" if data.get("project") else f"({data.get('scope')})"
    _say(
        f"role {output.escape(str(data.get('role')))} assigned to "
        f"{output.escape(_subject_text(data))} {output.escape(where)}: {data.get('id')}"
    )


@role_app.command("revoke")
def role_revoke(
    assignment_id: Annotated[str, typer.Argument(help="Assignment id (rol-...; see role ls).")],
) -> None:
    """Remove a role assignment."""
    with output.session() as client:
        _delete(client, f"/v1/role-assignments/{_seg(assignment_id)}")
    _say(f"role assignment {output.escape(assignment_id)} revoked")


@role_app.command("ls")
def role_ls(out: output.OutputOpt = output.OutputFormat.table) -> None:
    """List the role assignments of your tenant."""
    with output.session() as client:
        assignments = _items(client, "/v1/role-assignments")
    if _as_json(out):
        output.print_json(assignments)
        return
    output.print_table(
        ["ID", "ROLE", "SCOPE", "SUBJECT", "PROJECT", "AGE"],
        (
            [
                a.get("id"),
                a.get("role"),
                a.get("scope"),
                _subject_text(a),
                a.get("project"),
                output.age(a.get("created_at")),
            ]
            for a in assignments
        ),
    )


# -- quotas -----------------------------------------------------------------------------------------

_RESOURCES = ("cpu", "memory_mb", "disk_gb", "cells", "volumes_gb")
_CLEAR = frozenset({"none", "unlimited", "-"})
TenantScope = Annotated[str | None, typer.Option("--tenant", help="A tenant's quota.")]
ProjectScope = Annotated[str | None, typer.Option("--project", help="A project's quota.")]


def _quota_path(client: Client, tenant: str | None, project: str | None) -> str:
    if tenant and project:
        raise typer.BadParameter("use --tenant or --project, not both", param_hint="'--tenant'")
    if project:
        return f"/v1/projects/{_seg(project)}/quota"
    if not tenant:
        tenant = str(client.whoami().get("tenant") or "")
    return f"/v1/tenants/{_seg(tenant)}/quota"


def _limit_text(value: Any) -> str:
    return "unlimited" if value is None else str(value)


def _print_quota(data: JSONDict, out: output.OutputFormat) -> None:
    if _as_json(out):
        output.print_json(data)
        return
    limits, usage = data.get("limits") or {}, data.get("usage") or {}
    allocated = data.get("allocated")
    columns = ["RESOURCE", "LIMIT", "USED"] + (["ALLOCATED TO PROJECTS"] if allocated else [])
    scope = (
        f"project {data.get('project')} of tenant {data.get('tenant')}"
        if data.get("scope") == "project"
        else f"tenant {data.get('tenant')}"
    )
    output.print_table(
        columns,
        (
            [r, _limit_text(limits.get(r)), usage.get(r)]
            + ([allocated.get(r)] if allocated else [])
            for r in _RESOURCES
        ),
        title=f"quota of {scope}",
    )


@quota_app.command("show")
def quota_show(
    tenant: TenantScope = None,
    project: ProjectScope = None,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Show the limits and usage of a tenant (default: yours) or of a project."""
    with output.session() as client:
        data = _get(client, _quota_path(client, tenant, project))
    _print_quota(data, out)


def _parse_limit(value: str | None, option: str, integer: bool) -> tuple[bool, Any]:
    """(given, limit): `none`/`unlimited` clears the limit."""
    if value is None:
        return False, None
    text = value.strip().lower()
    if text in _CLEAR:
        return True, None
    try:
        number: float | int = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise typer.BadParameter(f"{value!r} is not {kind} or 'none'", param_hint=option) from None
    if number < 0 or number != number or number in (float("inf"), float("-inf")):
        raise typer.BadParameter(f"{value!r} must be 0 or more", param_hint=option)
    return True, number


def _limit_opt(flag: str, what: str) -> Any:
    return typer.Option(flag, help=f"{what} ('none' removes the limit).")


@quota_app.command("set")
def quota_set(
    tenant: TenantScope = None,
    project: ProjectScope = None,
    cpu: Annotated[str | None, _limit_opt("--cpu", "CPUs")] = None,
    memory_mb: Annotated[str | None, _limit_opt("--memory-mb", "Memory in MB")] = None,
    disk_gb: Annotated[str | None, _limit_opt("--disk-gb", "Cell disk in GB")] = None,
    cells: Annotated[str | None, _limit_opt("--cells", "Number of cells")] = None,
    volumes_gb: Annotated[str | None, _limit_opt("--volumes-gb", "Volume space in GB")] = None,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Change some limits of a tenant's or a project's quota (the others stay as they are)."""
    if bool(tenant) == bool(project):
        raise typer.BadParameter("name exactly one of --tenant or --project")
    changes: JSONDict = {}
    for name, value, integer in (
        ("cpu", cpu, False),
        ("memory_mb", memory_mb, True),
        ("disk_gb", disk_gb, True),
        ("cells", cells, True),
        ("volumes_gb", volumes_gb, True),
    ):
        given, limit = _parse_limit(value, f"'--{name.replace('_', '-')}'", integer)
        if given:
            changes[name] = limit
    if not changes:
        raise typer.BadParameter(
            "nothing to set: pass --cpu, --memory-mb, --disk-gb, --cells or --volumes-gb"
        )
    with output.session() as client:
        path = _quota_path(client, tenant, project)
        current = _get(client, path).get("limits") or {}
        limits = {r: current.get(r) for r in _RESOURCES} | changes
        data = client._json("PUT", path, json_body=limits)
    _print_quota(data, out)


# -- certificates -----------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` atomically, created with `mode` before anything is written."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@cert_app.command("request")
def cert_request(
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Where to write key.pem, cert.pem and chain.pem.")
    ] = Path("."),
    days: Annotated[int, typer.Option("--days", help="Validity in days.", min=1, max=365)] = 30,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files from an earlier request.")
    ] = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Get a client certificate for yourself: a new EC P-256 key (never leaves this machine)
    and a certificate for it, issued by your tenant's CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from cellplane.cli import config

    files = {
        "key": out_dir / "key.pem",
        "cert": out_dir / "cert.pem",
        "chain": out_dir / "chain.pem",
    }
    existing = [str(p) for p in files.values() if p.exists()]
    if existing and not force:
        output.fail("the files exist already", f"{', '.join(existing)}; pass --force to replace")
    with output.session() as client:
        me = client.whoami()
        if me.get("kind") != "user":
            output.fail(
                "client certificates are issued to users only", f"you are a {me.get('kind')}"
            )
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(me["subject"]))]))
            .sign(key, hashes.SHA256())
        )
        csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
        issued = _post(client, "/v1/certificates", {"csr": csr_pem, "ttl_days": days})
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_private(files["key"], key_pem, 0o600)
        _write_private(files["cert"], str(issued.get("certificate", "")).encode(), 0o644)
        _write_private(files["chain"], str(issued.get("chain", "")).encode(), 0o644)
    except OSError as exc:
        output.fail("cannot write the certificate files", str(exc))
    record = {k: v for k, v in issued.items() if k not in ("certificate", "chain")}
    paths = {name: str(path) for name, path in files.items()}
    if _as_json(out):
        output.print_json({**record, "files": paths})
        return
    try:
        conf = config.load_config()
        server, ca = conf.server or "https://SERVER", conf.ca_cert
    except config.ConfigError:
        server, ca = "https://SERVER", None
    _say(
        f"certificate {record.get('serial')} for {output.escape(str(me.get('name')))} "
        f"({record.get('subject')}), valid until {record.get('not_after')}"
    )
    _say(f"  key (keep it private): {output.escape(paths['key'])}")
    _say(f"  certificate:           {output.escape(paths['cert'])}")
    _say(f"  chain (present this):  {output.escape(paths['chain'])}")
    cacert = f" --cacert {ca}" if ca else ""
    _say("use it with curl:")
    _say(
        output.escape(
            f"  curl --cert {paths['chain']} --key {paths['key']}{cacert} {server}/v1/whoami"
        )
    )
    _say("use it with docker (a registry that asks for client certificates):")
    _say(
        output.escape(
            f"  cp {paths['chain']} /etc/docker/certs.d/<registry:port>/client.cert && "
            f"cp {paths['key']} /etc/docker/certs.d/<registry:port>/client.key"
        )
    )


@cert_app.command("ls")
def cert_ls(out: output.OutputOpt = output.OutputFormat.table) -> None:
    """List your certificates (a tenant admin sees the tenant's)."""
    with output.session() as client:
        certs = _items(client, "/v1/certificates")
    if _as_json(out):
        output.print_json(certs)
        return
    output.print_table(
        ["SERIAL", "SUBJECT", "PROFILE", "OWNER", "NOT AFTER", "REVOKED"],
        (
            [
                c.get("serial"),
                c.get("subject"),
                c.get("profile"),
                c.get("owner"),
                c.get("not_after"),
                c.get("revoked_at"),
            ]
            for c in certs
        ),
    )


@cert_app.command("revoke")
def cert_revoke(
    serial: Annotated[str, typer.Argument(help="Serial number (hex, as cert ls shows it).")],
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Revoke a certificate (it is listed in the CRL from now on)."""
    with output.session() as client:
        data = _post(client, f"/v1/certificates/{_seg(serial)}/revoke")
    if _as_json(out):
        output.print_json(data)
        return
    _say(f"certificate {data.get('serial')} revoked at {data.get('revoked_at')}")


# -- audit ------------------------------------------------------------------------------------------


def _when(timestamp: Any) -> str | None:
    """An ISO 8601 timestamp to the second, in the server's zone: `2025-01-31 12:00:05`."""
    if not isinstance(timestamp, str):
        return None
    return timestamp.replace("T", " ")[:19]


@audit_app.command("ls")
def audit_ls(
    limit: Annotated[
        int, typer.Option("--limit", help="At most this many events.", min=1, max=1000)
    ] = 50,
    action: Annotated[str | None, typer.Option(help="Only this action (e.g. login).")] = None,
    outcome: Annotated[
        str | None, typer.Option(help="Only this outcome: success, failure, denied.")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor (user:<id>, ...).")] = None,
    all_tenants: Annotated[
        bool, typer.Option("--all-tenants", help="Every tenant's events (system admins).")
    ] = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """List audit events, newest first."""
    params = [("limit", str(limit))]
    for name, value in (("action", action), ("outcome", outcome), ("actor", actor)):
        if value:
            params.append((name, value))
    if all_tenants:
        params.append(("all_tenants", "true"))
    with output.session() as client:
        events = _get(client, "/v1/audit", params).get("items") or []
    if _as_json(out):
        output.print_json(events)
        return
    output.print_table(
        ["AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "SOURCE"],
        (
            [
                _when(e.get("at")),
                e.get("actor"),
                e.get("action"),
                e.get("target"),
                e.get("outcome"),
                e.get("source"),
            ]
            for e in events
        ),
    )
