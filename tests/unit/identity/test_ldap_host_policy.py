"""The operator's allow-list of LDAP hosts (CELLPLANE_LDAP_ALLOWED_HOSTS), issue 7 item 5."""

from __future__ import annotations

import ipaddress

import pytest

from cellplane.identity.ldap import HostPolicy, LdapNotAllowed


def resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    return lambda host: [ipaddress.ip_address(a) for a in table.get(host, [])]


DNS = resolver(
    {
        "ldap.example.org": ["192.0.2.10"],
        "inside.example.org": ["10.1.2.3"],
        "sneaky.example.org": ["127.0.0.1"],
        "meta.example.org": ["169.254.169.254"],
    }
)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("ldap://ldap.example.org", True),
        ("ldaps://ldap.example.org:636", True),
        ("ldap://192.0.2.10:389", True),
        ("ldap://ldap.example.org:22", False),  # not an LDAP port
        ("ldap://127.0.0.1", False),
        ("ldap://[::1]", False),
        ("ldap://sneaky.example.org", False),  # a name for loopback
        ("ldap://meta.example.org", False),
        ("ldap://169.254.169.254", False),
        ("ldap://0.0.0.0", False),
        ("ldap://unknown.example.org", False),  # does not resolve
    ],
)
def test_the_default_policy(url: str, allowed: bool) -> None:
    policy = HostPolicy.parse(None)
    if allowed:
        policy.check(url, DNS)
    else:
        with pytest.raises(LdapNotAllowed):
            policy.check(url, DNS)


@pytest.mark.parametrize(
    ("spec", "url", "allowed"),
    [
        ("127.0.0.1:*", "ldap://127.0.0.1:40123", True),
        ("127.0.0.1", "ldap://127.0.0.1:40123", False),
        ("127.0.0.1", "ldap://127.0.0.1", True),
        ("*.example.org", "ldaps://ldap.example.org", True),
        ("*.example.org", "ldaps://example.com", False),
        ("10.0.0.0/8:10389", "ldap://inside.example.org:10389", True),
        ("10.0.0.0/8:10389", "ldap://ldap.example.org:10389", False),
        ("[::1]:*", "ldap://[::1]:3890", True),
        ("*:*", "ldap://127.0.0.1:1", True),
        ("", "ldap://ldap.example.org", False),  # nothing allowed
        ("a.example.org, b.example.org", "ldap://b.example.org", True),
    ],
)
def test_an_explicit_list(spec: str, url: str, allowed: bool) -> None:
    policy = HostPolicy.parse(spec)
    if allowed:
        policy.check(url, DNS)
    else:
        with pytest.raises(LdapNotAllowed):
            policy.check(url, DNS)


@pytest.mark.parametrize("bad", ["host:0", "host:99999", "host:x", "[::1", "bad host!"])
def test_a_malformed_list_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        HostPolicy.parse(bad)
