"""LDAP federation against a real, private OpenLDAP server (started by conftest.py)."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import pytest

from cellplane.identity.ldap import LdapError, LdapSettings, authenticate, check_settings

from .conftest import (
    ALICE_PW,
    BOB_PW,
    CAROL_PW,
    GROUP_ROLES,
    GROUPS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PW,
    SUFFIX,
    Slapd,
    _free_port,
    _require_slapd,
    seed,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(slapd: Slapd) -> LdapSettings:
    return LdapSettings(
        url=slapd.url,
        bind_dn=SERVICE_DN,
        bind_password=SERVICE_PW,
        user_base=PEOPLE,
        group_base=GROUPS,
        group_roles=GROUP_ROLES,
        timeout_s=3.0,
    )


def test_alice_logs_in_and_her_group_makes_her_tenant_admin(settings: LdapSettings) -> None:
    user = authenticate(settings, "alice", ALICE_PW)
    assert user is not None
    assert user.dn == f"uid=alice,{PEOPLE}"
    assert user.username == "alice"
    assert user.email == "alice@example.org"
    assert user.display_name == "Alice Liddell"
    assert user.groups == ("ops", "platform-admins")  # groupOfNames and posixGroup memberUid
    assert user.roles == ("tenant-admin",)


def test_bob_with_a_plain_text_password_is_a_project_member(settings: LdapSettings) -> None:
    user = authenticate(settings, "bob", BOB_PW)
    assert user is not None
    assert user.groups == ("developers",)
    assert user.roles == ("project-member",)


def test_a_user_in_no_group_has_no_roles_and_missing_attributes_are_none(
    settings: LdapSettings,
) -> None:
    user = authenticate(settings, "carol", CAROL_PW)
    assert user is not None
    assert (user.email, user.groups, user.roles) == (None, (), ())


def test_wrong_password_is_none(settings: LdapSettings) -> None:
    assert authenticate(settings, "alice", "not-her-password") is None
    assert authenticate(settings, "alice", BOB_PW) is None


def test_unknown_user_is_none(settings: LdapSettings) -> None:
    assert authenticate(settings, "mallory", "whatever") is None


def test_empty_password_is_none_never_an_unauthenticated_bind(settings: LdapSettings) -> None:
    assert authenticate(settings, "alice", "") is None


def test_an_ambiguous_username_is_none(settings: LdapSettings) -> None:
    assert authenticate(settings, "twin", "twin-pw") is None


@pytest.mark.parametrize(
    "username",
    ["*", "alice)(uid=*", "*)(|(uid=*", "al*", "alice\\", "alice\x00", "(uid=alice)"],
)
def test_filter_injection_matches_nothing(settings: LdapSettings, username: str) -> None:
    assert authenticate(settings, username, ALICE_PW) is None


def test_check_settings_accepts_a_good_configuration(settings: LdapSettings) -> None:
    check_settings(settings)


@pytest.mark.parametrize("field", ["user_base", "group_base"])
def test_check_settings_rejects_a_missing_base(settings: LdapSettings, field: str) -> None:
    nowhere = f"ou=nowhere,{SUFFIX}"
    if field == "user_base":
        bad = replace(settings, user_base=nowhere)
    else:
        bad = replace(settings, group_base=nowhere)
    with pytest.raises(LdapError, match=f"ou=nowhere,{SUFFIX} does not exist"):
        check_settings(bad)


def test_wrong_service_password_is_an_error_naming_the_bind_dn(settings: LdapSettings) -> None:
    bad = replace(settings, bind_password="wrong")
    with pytest.raises(LdapError, match=f"service bind as {SERVICE_DN} was refused"):
        authenticate(bad, "alice", ALICE_PW)
    with pytest.raises(LdapError, match="was refused"):
        check_settings(bad)


def test_authenticate_with_a_missing_user_base_is_an_error(settings: LdapSettings) -> None:
    bad = replace(settings, user_base=f"ou=nowhere,{SUFFIX}")
    with pytest.raises(LdapError, match="does not exist"):
        authenticate(bad, "alice", ALICE_PW)


def test_unreachable_url_is_an_error_naming_it() -> None:
    url = f"ldap://127.0.0.1:{_free_port()}"  # nothing listens there
    settings = LdapSettings(
        url=url, bind_dn=SERVICE_DN, bind_password="x", user_base=PEOPLE, group_base=GROUPS
    )
    with pytest.raises(LdapError, match=f"cannot reach {url}: connection refused"):
        authenticate(settings, "alice", ALICE_PW)
    with pytest.raises(LdapError, match=f"cannot reach {url}"):
        check_settings(settings)


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:  # accepts TCP connections (backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"ldap://127.0.0.1:{listener.getsockname()[1]}"
        settings = LdapSettings(
            url=url,
            bind_dn=SERVICE_DN,
            bind_password="x",
            user_base=PEOPLE,
            group_base=GROUPS,
            timeout_s=0.5,
        )
        started = time.monotonic()
        with pytest.raises(LdapError, match=f"cannot reach {url}"):
            authenticate(settings, "alice", ALICE_PW)
        assert time.monotonic() - started < 5


def test_a_stopped_server_is_an_error_naming_its_url() -> None:
    _require_slapd()
    server = Slapd()
    try:
        server.start()
        seed(server)
        settings = LdapSettings(
            url=server.url,
            bind_dn=SERVICE_DN,
            bind_password=SERVICE_PW,
            user_base=PEOPLE,
            group_base=GROUPS,
        )
        assert authenticate(settings, "bob", BOB_PW) is not None
        server.stop()
        with pytest.raises(LdapError, match=f"cannot reach {server.url}"):
            authenticate(settings, "bob", BOB_PW)
    finally:
        server.close()
