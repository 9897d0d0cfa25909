"""The token endpoint's cached directory lookups (identity/oidc/lookups.py): a change committed in
this process applies to the very next request; any other change within `lookup_cache_s`."""

from __future__ import annotations

import sqlite3
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet
from oidc_support import Oidc
from sqlalchemy import delete, select

from cellplane.identity.oidc.lookups import Lookups
from cellplane.ids import new_id, utcnow
from cellplane.state.identity_models import OAuthClient, RoleAssignment


def grant(oidc: Oidc, cid: str, secret: str) -> Any:
    return oidc.token(grant_type="client_credentials", auth=(cid, secret))


def roles_in(oidc: Oidc, r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    jwks = oidc.client.get(oidc.url("/jwks")).json()
    claims = jwt.decode(r.json()["access_token"], KeySet.import_key_set(jwks)).claims
    return list(claims["roles"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_rotated_secret_is_refused_by_the_next_request(oidc: Oidc) -> None:
    cid, old = oidc.add_client("deployer")
    assert grant(oidc, cid, old).status_code == 200  # the client is now remembered
    r = oidc.client.post(f"/v1/clients/{cid}/secret", headers=oidc.plat.admin)
    assert r.status_code == 200, r.text
    new = r.json()["client_secret"]
    refused = grant(oidc, cid, old)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert grant(oidc, cid, new).status_code == 200


def test_a_deleted_client_gets_no_token_from_the_next_request(oidc: Oidc) -> None:
    cid, secret = oidc.add_client("deployer", roles=("project-member",))
    assert grant(oidc, cid, secret).status_code == 200
    r = oidc.client.delete(f"/v1/clients/{cid}", headers=oidc.plat.admin)
    assert r.status_code == 204, r.text
    refused = grant(oidc, cid, secret)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_role_changes_show_in_the_next_token(oidc: Oidc) -> None:
    cid, secret = oidc.add_client("deployer", roles=("project-member",))
    assert roles_in(oidc, grant(oidc, cid, secret)) == ["project-member"]
    with oidc.plat.svc.db.reader() as s:
        assignment = s.scalar(select(RoleAssignment.id).where(RoleAssignment.subject_id == cid))
    r = oidc.client.delete(f"/v1/role-assignments/{assignment}", headers=oidc.plat.admin)
    assert r.status_code == 204, r.text
    assert roles_in(oidc, grant(oidc, cid, secret)) == []
    # Written straight through a session (not the directory), as a bulk statement too.
    tid = oidc.tenant_id()
    with oidc.plat.svc.db.session() as s:
        s.add(
            RoleAssignment(
                id=new_id("rol"),
                scope="tenant",
                tenant_id=tid,
                project_id=None,
                subject_kind="client",
                subject_id=cid,
                role="tenant-admin",
                created_at=utcnow(),
            )
        )
    assert roles_in(oidc, grant(oidc, cid, secret)) == ["tenant-admin"]
    with oidc.plat.svc.db.session() as s:
        s.execute(delete(RoleAssignment).where(RoleAssignment.subject_id == cid))
    assert roles_in(oidc, grant(oidc, cid, secret)) == []


def test_a_change_made_elsewhere_is_seen_after_the_cache_time(oidc: Oidc) -> None:
    """Another process (here: sqlite3 itself, which no session event sees) deletes a client."""
    clock = Clock()
    oidc.provider.lookups = Lookups(5.0, clock=clock)
    cid, secret = oidc.add_client("deployer")
    assert grant(oidc, cid, secret).status_code == 200
    path = oidc.plat.svc.db.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM oauth_clients WHERE id = ?", (cid,))
    clock.now += 4.9
    assert grant(oidc, cid, secret).status_code == 200  # still within lookup_cache_s
    clock.now += 0.2
    assert grant(oidc, cid, secret).status_code == 401


def test_a_rolled_back_change_drops_nothing_and_a_failed_lookup_is_not_kept() -> None:
    lookups = Lookups(5.0, clock=Clock())
    loads: list[str] = []

    def load(value: str | None) -> Any:
        def go() -> str | None:
            loads.append(str(value))
            return value

        return go

    assert lookups.get("a", load("1")) == "1"
    assert lookups.get("a", load("2")) == "1"
    assert lookups.get("missing", load(None)) is None
    assert lookups.get("missing", load("3")) == "3"  # None was not remembered
    assert loads == ["1", "None", "3"]
    lookups.changed()
    assert lookups.get("a", load("4")) == "4"


def test_a_lookup_that_ran_while_the_directory_changed_is_not_kept() -> None:
    lookups = Lookups(5.0, clock=Clock())

    def racing() -> str:
        lookups.changed()  # a commit lands while the lookup reads
        return "stale"

    assert lookups.get("k", racing) == "stale"
    assert lookups.get("k", lambda: "fresh") == "fresh"


def test_zero_cache_time_reads_every_time() -> None:
    lookups = Lookups(0.0)
    values = iter(["1", "2"])
    assert lookups.get("k", lambda: next(values)) == "1"
    assert lookups.get("k", lambda: next(values)) == "2"


def test_only_committed_changes_of_identity_rows_drop_the_cache(oidc: Oidc) -> None:
    lookups = Lookups(5.0, clock=Clock())
    db = oidc.plat.svc.db
    tid = oidc.tenant_id()
    assert lookups.get("k", lambda: "v") == "v"
    with db.session() as s:
        s.add(
            OAuthClient(
                id=new_id("cli"),
                tenant_id=tid,
                name="x",
                secret_hash=None,
                redirect_uris=[],
                grant_types=[],
                created_at=utcnow(),
            )
        )
        s.flush()
        s.rollback()
    assert lookups.get("k", lambda: "other") == "v"  # rolled back: nothing changed
    with db.session() as s:
        s.execute(select(OAuthClient.id))  # reading changes nothing either
    assert lookups.get("k", lambda: "other") == "v"
    with db.session() as s:
        s.execute(delete(OAuthClient).where(OAuthClient.id == "nobody"))
    assert lookups.get("k", lambda: "new") == "new"
