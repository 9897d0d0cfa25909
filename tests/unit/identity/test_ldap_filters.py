"""LDAP federation, the pure parts: filter building and escaping, role mapping, settings checks."""

from __future__ import annotations

from typing import Any

import pytest

from cellplane.identity.ldap import (
    LDAP_ROLES,
    LdapSettings,
    group_search_filter,
    map_roles,
    user_search_filter,
)

BASE: dict[str, Any] = {
    "url": "ldap://127.0.0.1:3890",
    "bind_dn": "cn=reader,dc=example,dc=org",
    "bind_password": "secret",
    "user_base": "ou=people,dc=example,dc=org",
    "group_base": "ou=groups,dc=example,dc=org",
}


def make(**overrides: Any) -> LdapSettings:
    return LdapSettings(**{**BASE, **overrides})


# --- filters -------------------------------------------------------------------------------


def test_default_user_filter_substitutes_the_username() -> None:
    assert user_search_filter(make(), "alice") == "(uid=alice)"


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        ("*", r"(uid=\2a)"),
        ("alice)(uid=*", r"(uid=alice\29\28uid=\2a)"),
        ("*)(|(uid=*", r"(uid=\2a\29\28|\28uid=\2a)"),
        ("back\\slash", r"(uid=back\5cslash)"),
        ("nul\x00", r"(uid=nul\00)"),
        ("o'brien-ü", "(uid=o'brien-ü)"),
    ],
)
def test_user_filter_escapes_rfc4515_specials(username: str, expected: str) -> None:
    assert user_search_filter(make(), username) == expected


def test_custom_user_filter_keeps_its_shape() -> None:
    s = make(user_filter="(&(objectClass=inetOrgPerson)(|(uid={username})(mail={username})))")
    assert user_search_filter(s, "a*") == r"(&(objectClass=inetOrgPerson)(|(uid=a\2a)(mail=a\2a)))"


def test_default_group_filter_escapes_dn_and_username() -> None:
    dn = "uid=al*ce,ou=people,dc=example,dc=org"
    got = group_search_filter(make(), dn, "al*ce")
    esc = r"uid=al\2ace,ou=people,dc=example,dc=org"
    assert got == f"(|(member={esc})(uniqueMember={esc})(memberUid=al\\2ace))"


def test_group_filter_escapes_a_dn_with_escaped_characters() -> None:
    # A DN may itself contain a backslash escape (RFC 4514); in a filter it becomes \5c.
    dn = r"cn=Smith\, John (ops),ou=people,dc=example,dc=org"
    got = group_search_filter(make(group_filter="(member={dn})"), dn, "jsmith")
    assert got == r"(member=cn=Smith\5c, John \28ops\29,ou=people,dc=example,dc=org)"


def test_group_filter_may_use_only_the_dn_or_only_the_username() -> None:
    assert group_search_filter(make(group_filter="(member={dn})"), "uid=a,o=x", "a") == (
        "(member=uid=a,o=x)"
    )
    assert group_search_filter(make(group_filter="(memberUid={username})"), "uid=a", "a") == (
        "(memberUid=a)"
    )


def test_literal_braces_in_a_filter_survive() -> None:
    s = make(user_filter="(&(description={{x}})(uid={username}))")
    assert user_search_filter(s, "a") == "(&(description={x})(uid=a))"


# --- roles ---------------------------------------------------------------------------------


def test_map_roles_sorts_deduplicates_and_ignores_unmapped_groups() -> None:
    mapping = {"admins": "tenant-admin", "devs": "project-member", "ops": "project-member"}
    assert map_roles(mapping, ("ops", "devs", "admins", "interns")) == (
        "project-member",
        "tenant-admin",
    )


def test_map_roles_is_exact_and_empty_without_matches() -> None:
    assert map_roles({"Admins": "tenant-admin"}, ("admins",)) == ()
    assert map_roles({}, ("admins",)) == ()
    assert map_roles({"admins": "tenant-admin"}, ()) == ()


def test_roles_are_the_tenant_assignable_roles() -> None:
    from cellplane.identity.rbac import ASSIGNABLE_ROLES

    assert frozenset(ASSIGNABLE_ROLES["tenant"]) == LDAP_ROLES


# --- settings ------------------------------------------------------------------------------


def test_defaults() -> None:
    s = make()
    assert s.user_filter == "(uid={username})"
    assert s.group_filter == "(|(member={dn})(uniqueMember={dn})(memberUid={username}))"
    assert dict(s.attributes) == {"username": "uid", "email": "mail", "display_name": "cn"}
    assert s.group_name_attribute == "cn"
    assert dict(s.group_roles) == {}
    assert s.timeout_s == 5.0


def test_settings_snapshot_their_mappings_and_hide_the_password() -> None:
    roles = {"admins": "tenant-admin"}
    s = make(group_roles=roles)
    roles["admins"] = "project-viewer"
    assert s.group_roles["admins"] == "tenant-admin"
    assert "secret" not in repr(s)
    assert make(group_roles={"a": "tenant-admin"}) == make(group_roles={"a": "tenant-admin"})


@pytest.mark.parametrize("url", ["ldap://h", "ldaps://h:636", "LDAP://127.0.0.1:3890/"])
def test_ldap_and_ldaps_urls_are_accepted(url: str) -> None:
    assert make(url=url).url == url


@pytest.mark.parametrize(
    "url", ["http://h", "h:389", "ldapi:///run/slapd.sock", "ldap://", "", "ldap:/h"]
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="url must look like ldap://"):
        make(url=url)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"user_filter": "(cn=fixed)"}, r"user_filter must contain the placeholder \{username\}"),
        ({"user_filter": "(member={dn})"}, r"user_filter must contain the placeholder"),
        ({"user_filter": "(&(uid={username})(x={dn}))"}, r"user_filter may only use"),
        ({"user_filter": "(uid={username}"}, r"in parentheses"),
        ({"user_filter": "uid={username}"}, r"in parentheses"),
        ({"user_filter": "(uid={username)"}, r"user_filter"),
        ({"group_filter": "(cn=staff)"}, r"group_filter must contain the placeholder \{dn\} or"),
        ({"group_filter": "(member={user})"}, r"group_filter"),
        ({"group_filter": "(member={0})"}, r"group_filter"),
        ({"group_roles": {"admins": "root"}}, r"unknown roles \['root'\]"),
        ({"group_roles": {"admins": "system-admin"}}, r"unknown roles"),
        ({"attributes": {"username": "uid", "phone": "tel"}}, r"unknown keys \['phone'\]"),
        ({"attributes": {"username": ""}}, r"non-empty"),
        ({"timeout_s": 0}, r"timeout_s must be positive"),
        ({"timeout_s": -1.0}, r"timeout_s must be positive"),
        ({"user_base": " "}, r"user_base must not be empty"),
        ({"group_base": ""}, r"group_base must not be empty"),
        ({"bind_dn": ""}, r"bind_dn must not be empty"),
        ({"bind_password": ""}, r"bind_password must not be empty"),
        ({"group_name_attribute": ""}, r"group_name_attribute must not be empty"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make(**overrides)
