"""LDAP v3 federation: check a tenant user's password against a directory and map their groups.

A tenant that keeps its people in LDAP (OpenLDAP, 389-ds, Active Directory) configures
:class:`LdapSettings`; the identity service's password grant calls :func:`authenticate`, and
the admin API calls :func:`check_settings` before saving a configuration.

The flow is the usual "search then bind": bind as the service account, find exactly one entry
under ``user_base`` with ``user_filter``, bind as that entry's DN with the given password on a
fresh connection, then (as the service account again) find the groups under ``group_base``
that list the user, and map their names to Cellplane roles through ``group_roles``.

Every value put into a filter is escaped (RFC 4515), so a username such as ``*`` or
``alice)(uid=*`` matches nothing. An empty password is refused before any bind: LDAP treats a
simple bind with a DN and no password as an *unauthenticated* bind that succeeds
(RFC 4513 section 5.1.2). ``ldaps://`` URLs verify the server certificate against the system
trust store. :func:`authenticate` returns ``None`` for anything that is the user's fault (no
such user, several entries, wrong password); :class:`LdapError` means the directory or the
configuration is broken, and names the problem.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import os
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import (
    LDAPBindError,
    LDAPCommunicationError,
    LDAPException,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars

__all__ = [
    "ALLOWED_HOSTS_ENV",
    "LDAP_ROLES",
    "HostPolicy",
    "LdapError",
    "LdapNotAllowed",
    "LdapSettings",
    "LdapUser",
    "authenticate",
    "check_settings",
    "group_search_filter",
    "map_roles",
    "url_host_port",
    "user_search_filter",
]

#: The Cellplane roles an LDAP group may grant: the tenant-scoped assignable roles
#: (``cellplane.identity.rbac.ASSIGNABLE_ROLES["tenant"]``).
LDAP_ROLES: Final = frozenset({"tenant-admin", "project-member", "project-viewer"})

#: Keys of ``LdapSettings.attributes``: the user fields read from the directory entry.
_ATTRIBUTE_KEYS: Final = frozenset({"username", "email", "display_name"})

# Result codes of a refused user bind: the user's fault, not the directory's
# (invalidCredentials, inappropriateAuthentication, insufficientAccessRights,
# unwillingToPerform - e.g. a locked or disabled account).
_USER_BIND_REFUSED: Final = frozenset({48, 49, 50, 53})
_SUCCESS: Final = 0
_SIZE_LIMIT_EXCEEDED: Final = 4
_NO_SUCH_OBJECT: Final = 32


def _default_attributes() -> Mapping[str, str]:
    return {"username": "uid", "email": "mail", "display_name": "cn"}


def _default_group_roles() -> Mapping[str, str]:
    return {}


def _check_filter(name: str, template: str, required: tuple[str, ...]) -> None:
    """ValueError unless `template` is a parenthesised filter using only `required` placeholders
    and at least one of them."""
    if not (template.startswith("(") and template.endswith(")")):
        raise ValueError(f"{name} must be an LDAP filter in parentheses, got {template!r}")
    if not any("{" + p + "}" in template for p in required):
        wanted = " or ".join("{" + p + "}" for p in required)
        raise ValueError(f"{name} must contain the placeholder {wanted}: {template!r}")
    try:
        template.format(**dict.fromkeys(required, "x"))
    except (KeyError, IndexError, ValueError) as exc:
        allowed = ", ".join("{" + p + "}" for p in required)
        raise ValueError(
            f"{name} may only use the placeholders {allowed} "
            f"(write a literal brace as {{{{ or }}}}): {template!r} ({exc!r})"
        ) from None


@dataclass(frozen=True)
class LdapSettings:
    """How to reach one tenant's directory and read users and groups from it."""

    url: str
    bind_dn: str
    bind_password: str = field(repr=False)
    user_base: str
    group_base: str
    user_filter: str = "(uid={username})"
    group_filter: str = "(|(member={dn})(uniqueMember={dn})(memberUid={username}))"
    attributes: Mapping[str, str] = field(default_factory=_default_attributes)
    group_name_attribute: str = "cn"
    group_roles: Mapping[str, str] = field(default_factory=_default_group_roles)
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        scheme, sep, rest = self.url.partition("://")
        if not sep or scheme.lower() not in ("ldap", "ldaps") or not rest.strip("/"):
            raise ValueError(
                f"url must look like ldap://host[:port] or ldaps://host[:port], got {self.url!r}"
            )
        for name in ("bind_dn", "user_base", "group_base", "group_name_attribute"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name} must not be empty")
        if not self.bind_password:
            raise ValueError(
                "bind_password must not be empty (an empty password is an unauthenticated bind)"
            )
        _check_filter("user_filter", self.user_filter, ("username",))
        _check_filter("group_filter", self.group_filter, ("dn", "username"))
        unknown = sorted(set(self.attributes) - _ATTRIBUTE_KEYS)
        if unknown:
            raise ValueError(
                f"attributes has unknown keys {unknown}; allowed: {sorted(_ATTRIBUTE_KEYS)}"
            )
        if not all(v.strip() for v in self.attributes.values()):
            raise ValueError("attributes must map to non-empty LDAP attribute names")
        bad = sorted({r for r in self.group_roles.values() if r not in LDAP_ROLES})
        if bad:
            raise ValueError(
                f"group_roles maps to unknown roles {bad}; allowed: {sorted(LDAP_ROLES)}"
            )
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        # Snapshot the mappings so a caller mutating its dict cannot change frozen settings.
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))
        object.__setattr__(self, "group_roles", MappingProxyType(dict(self.group_roles)))


@dataclass(frozen=True)
class LdapUser:
    """A user the directory vouched for, with their groups and the roles those grant."""

    dn: str
    username: str
    email: str | None
    display_name: str | None
    groups: tuple[str, ...]
    roles: tuple[str, ...]


class LdapError(Exception):
    """The directory is unreachable, the service bind fails, or the settings are wrong."""


def user_search_filter(settings: LdapSettings, username: str) -> str:
    """``settings.user_filter`` with the username escaped (RFC 4515)."""
    return settings.user_filter.format(username=escape_filter_chars(username))


def group_search_filter(settings: LdapSettings, dn: str, username: str) -> str:
    """``settings.group_filter`` with the user's DN and username escaped (RFC 4515)."""
    return settings.group_filter.format(
        dn=escape_filter_chars(dn), username=escape_filter_chars(username)
    )


def map_roles(group_roles: Mapping[str, str], groups: tuple[str, ...]) -> tuple[str, ...]:
    """The roles `groups` grant, sorted and without duplicates (group names match exactly)."""
    return tuple(sorted({group_roles[g] for g in groups if g in group_roles}))


# --- talking to the directory -------------------------------------------------------------


def _server(settings: LdapSettings) -> ldap3.Server:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED)
    try:
        return ldap3.Server(
            settings.url, connect_timeout=settings.timeout_s, get_info=ldap3.NONE, tls=tls
        )
    except LDAPException as exc:
        raise LdapError(f"invalid LDAP url {settings.url!r}: {exc}") from exc


def _receive_timeout(settings: LdapSettings) -> int:
    # ldap3 packs the receive timeout into SO_RCVTIMEO as whole seconds: a float breaks it.
    return max(1, math.ceil(settings.timeout_s))


def _reason(exc: BaseException) -> str:
    text = str(exc)
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "timed out" in lowered or "timeout" in lowered:
        return "timed out"
    if "certificate verify failed" in lowered:
        return "the server's TLS certificate is not trusted (certificate verify failed)"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host"
    return text or type(exc).__name__


def _unreachable(settings: LdapSettings, exc: BaseException) -> LdapError:
    return LdapError(f"cannot reach {settings.url}: {_reason(exc)}")


def _service_connection(settings: LdapSettings) -> ldap3.Connection:
    try:
        return ldap3.Connection(
            _server(settings),
            user=settings.bind_dn,
            password=settings.bind_password,
            auto_bind=ldap3.AUTO_BIND_NO_TLS,
            receive_timeout=_receive_timeout(settings),
            read_only=True,
            auto_referrals=False,
            raise_exceptions=False,
        )
    except LDAPBindError as exc:
        raise LdapError(f"the service bind as {settings.bind_dn} was refused: {exc}") from exc
    except (LDAPCommunicationError, LDAPStartTLSError, OSError) as exc:
        raise _unreachable(settings, exc) from exc
    except LDAPException as exc:
        raise LdapError(f"the service bind as {settings.bind_dn} failed: {exc}") from exc


def _search(
    conn: ldap3.Connection,
    settings: LdapSettings,
    base: str,
    what: str,
    search_filter: str,
    attributes: list[str],
    *,
    scope: str = ldap3.SUBTREE,
    size_limit: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """(result code, entries) of one search; LdapError when it fails for the directory's sake."""
    try:
        conn.search(
            base,
            search_filter,
            search_scope=scope,
            attributes=attributes,
            size_limit=size_limit,
            time_limit=_receive_timeout(settings),
        )
    except (LDAPCommunicationError, OSError) as exc:
        raise _unreachable(settings, exc) from exc
    except LDAPException as exc:
        raise LdapError(f"searching the {what} {base} failed: {exc}") from exc
    code = int(conn.result.get("result", -1))
    if code == _NO_SUCH_OBJECT:
        raise LdapError(f"the {what} {base} does not exist on {settings.url}")
    if code not in (_SUCCESS, _SIZE_LIMIT_EXCEEDED):
        desc = conn.result.get("description", "")
        msg = conn.result.get("message", "")
        raise LdapError(f"searching the {what} {base} failed: {desc} {msg}".rstrip())
    entries = [e for e in (conn.response or []) if e.get("type") == "searchResEntry"]
    return code, entries


def _values(entry: Mapping[str, Any], attribute: str) -> list[str]:
    """All values of an attribute (matched case-insensitively) as strings."""
    attrs: Mapping[str, Any] = entry.get("attributes") or {}
    found: Any = None
    for key, value in attrs.items():
        if key.lower() == attribute.lower():
            found = value
            break
    if found is None:
        return []
    items = found if isinstance(found, list | tuple) else [found]
    out: list[str] = []
    for item in items:
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
        if text:
            out.append(text)
    return out


def _first(entry: Mapping[str, Any], attribute: str | None) -> str | None:
    if not attribute:
        return None
    values = _values(entry, attribute)
    return values[0] if values else None


def _user_bind(settings: LdapSettings, dn: str, password: str) -> bool:
    """Whether `dn` binds with `password` (on its own connection, closed at once)."""
    conn = ldap3.Connection(
        _server(settings),
        user=dn,
        password=password,
        auto_bind=ldap3.AUTO_BIND_NONE,
        receive_timeout=_receive_timeout(settings),
        read_only=True,
        auto_referrals=False,
        raise_exceptions=False,
    )
    try:
        try:
            conn.open()
            ok = bool(conn.bind())
        except (LDAPCommunicationError, OSError) as exc:
            raise _unreachable(settings, exc) from exc
        except LDAPException as exc:
            raise LdapError(f"binding as {dn} failed: {exc}") from exc
        if ok:
            return True
        code = int(conn.result.get("result", -1)) if conn.result else -1
        if code in _USER_BIND_REFUSED:
            return False
        desc = conn.result.get("description", "") if conn.result else ""
        raise LdapError(f"binding as {dn} on {settings.url} failed: {desc or code}")
    finally:
        _close(conn)


def _close(conn: ldap3.Connection) -> None:
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()


def authenticate(settings: LdapSettings, username: str, password: str) -> LdapUser | None:
    """The directory's user `username` if `password` is theirs, else None.

    None when the user does not exist, is ambiguous (more than one entry), or the password is
    wrong or empty. Raises LdapError when the directory is unreachable, the service bind is
    refused, or a base does not exist.
    """
    if not username or not password:
        return None
    attrs = settings.attributes
    wanted = sorted({v for v in attrs.values() if v})
    service = _service_connection(settings)
    try:
        code, entries = _search(
            service,
            settings,
            settings.user_base,
            "user base",
            user_search_filter(settings, username),
            wanted,
            size_limit=2,
        )
        if len(entries) != 1 or code != _SUCCESS:
            return None
        entry = entries[0]
        dn = str(entry.get("dn") or "")
        if not dn:
            return None
        if not _user_bind(settings, dn, password):
            return None
        name = _first(entry, attrs.get("username")) or username
        _, group_entries = _search(
            service,
            settings,
            settings.group_base,
            "group base",
            group_search_filter(settings, dn, name),
            [settings.group_name_attribute],
        )
    finally:
        _close(service)
    groups = tuple(
        sorted({g for e in group_entries for g in _values(e, settings.group_name_attribute)})
    )
    return LdapUser(
        dn=dn,
        username=name,
        email=_first(entry, attrs.get("email")),
        display_name=_first(entry, attrs.get("display_name")),
        groups=groups,
        roles=map_roles(settings.group_roles, groups),
    )


def check_settings(settings: LdapSettings) -> None:
    """Raise LdapError unless the service account can bind and both bases exist."""
    service = _service_connection(settings)
    try:
        for base, what in ((settings.user_base, "user base"), (settings.group_base, "group base")):
            _, entries = _search(
                service, settings, base, what, "(objectClass=*)", ["1.1"], scope=ldap3.BASE
            )
            if not entries:
                raise LdapError(f"the {what} {base} does not exist on {settings.url}")
    finally:
        _close(service)


# --- which directories the operator lets tenants name ----------------------------------------

#: The operator's allow-list of LDAP hosts (see `HostPolicy`).
ALLOWED_HOSTS_ENV: Final = "CELLPLANE_LDAP_ALLOWED_HOSTS"
_STANDARD_PORTS: Final = frozenset({389, 636})
_HOST_NAME: Final = re.compile(
    r"[a-z0-9_]([a-z0-9_-]*[a-z0-9])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9])?)*"
)


class LdapNotAllowed(LdapError):
    """The settings name a host or port the operator does not allow."""


def url_host_port(url: str) -> tuple[str, int]:
    """(host, port) of an ``ldap://`` or ``ldaps://`` URL (default ports 389 and 636)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise LdapNotAllowed(f"{url!r} is not an ldap:// or ldaps:// URL with a host")
    try:
        port = parts.port
    except ValueError:
        raise LdapNotAllowed(f"{url!r} has an invalid port") from None
    return parts.hostname.lower(), port or (636 if scheme == "ldaps" else 389)


@dataclass(frozen=True)
class _Rule:
    host: str  # "*", "name", "*.suffix"; or "" when `network` is set
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    ports: frozenset[int] | None  # None: any port

    def matches_port(self, port: int) -> bool:
        return self.ports is None or port in self.ports


def _parse_rule(text: str) -> _Rule:
    host, ports_text = text, ""
    if text.startswith("["):  # [IPv6 or IPv6/len]:port
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: unclosed '['")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':port' after ']'")
        ports_text = rest[1:]
    elif text.count(":") == 1:
        host, ports_text = text.split(":")
    elif text.count(":") > 1:
        host = text  # a bare IPv6 address or network, any standard port
    ports: frozenset[int] | None
    if ports_text == "*":
        ports = None
    elif ports_text:
        if not ports_text.isdigit() or not 0 < int(ports_text) < 65536:
            raise ValueError(f"{text!r}: the port must be 1-65535 or '*'")
        ports = frozenset({int(ports_text)})
    else:
        ports = _STANDARD_PORTS
    host = host.strip().lower().rstrip(".")
    if not host:
        raise ValueError(f"{text!r}: no host")
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        network = None
    if network is not None:
        return _Rule("", network, ports)
    if host != "*" and not _HOST_NAME.fullmatch(host.removeprefix("*.")):
        raise ValueError(f"{text!r}: not a host name, *.domain, IP address or network")
    return _Rule(host, None, ports)


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Not this machine, not link-local (cloud metadata lives there), not multicast."""
    return not (
        address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )


Resolver = Callable[[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]


def _resolve(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


@dataclass(frozen=True)
class HostPolicy:
    """Which hosts and ports a tenant's LDAP settings may name: the operator's
    ``CELLPLANE_LDAP_ALLOWED_HOSTS``, a comma- or space-separated list of ``HOST[:PORT]``.

    HOST is ``*`` (any host), a name, ``*.example.org`` (any name under it), an IP address or a
    network in CIDR notation (IPv6 in brackets when a port follows: ``[fd00::/8]:636``); a name
    matches a network rule when every address it resolves to is inside. PORT is a number or
    ``*``; without one, the standard LDAP ports 389 and 636. An empty value allows nothing (no
    federation at all).

    Unset, the default admits any host on ports 389 and 636 except this machine's own
    addresses, link-local ones (where cloud metadata services live), unspecified and multicast
    addresses, also when a name resolves to one of them: a tenant admin cannot point the server
    at its own loopback services or probe arbitrary ports. An operator whose directory is on
    such an address, or on another port, lists it (e.g. ``127.0.0.1:10389``).
    """

    rules: tuple[_Rule, ...] | None  # None: the default

    @classmethod
    def parse(cls, spec: str | None) -> HostPolicy:
        if spec is None:
            return cls(None)
        items = [t for t in spec.replace(",", " ").split() if t]
        return cls(tuple(_parse_rule(t) for t in items))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HostPolicy:
        env = os.environ if environ is None else environ
        try:
            return cls.parse(env.get(ALLOWED_HOSTS_ENV))
        except ValueError as exc:  # a typo of the operator's must not open everything
            logging.getLogger("cellplane.ldap").error(
                "%s is malformed (%s): no LDAP host is allowed", ALLOWED_HOSTS_ENV, exc
            )
            return cls(())

    def check(self, url: str, resolve: Resolver = _resolve) -> None:
        """Raise LdapNotAllowed unless ``url``'s host and port are allowed."""
        host, port = url_host_port(url)
        try:
            literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
                host
            )
        except ValueError:
            literal = None
        refused = LdapNotAllowed(
            f"{host}:{port} is not among the LDAP hosts this server allows "
            f"(the operator's {ALLOWED_HOSTS_ENV})"
        )
        if self.rules is None:
            addresses = [literal] if literal is not None else resolve(host)
            if port not in _STANDARD_PORTS or not addresses:
                raise refused
            if not all(_public(a) for a in addresses):
                raise refused
            return
        addresses_cache: list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None = None
        for rule in self.rules:
            if not rule.matches_port(port):
                continue
            if rule.network is None:
                if rule.host == "*" or rule.host == host:
                    return
                if rule.host.startswith("*.") and host.endswith(rule.host[1:]):
                    return
                continue
            if literal is not None:
                if literal in rule.network:
                    return
                continue
            if addresses_cache is None:
                addresses_cache = resolve(host)
            if addresses_cache and all(a in rule.network for a in addresses_cache):
                return
        raise refused
