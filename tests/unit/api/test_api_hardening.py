"""Hardening through the API: a cell's read-only root and pids limit reach its host's
assignment; stored secrets are sealed; the API documents can be hidden; error answers carry no
stack trace and no version string."""

from __future__ import annotations

from pathlib import Path

import pytest
from cellplane_platform_support import Platform, Template, make_services
from fastapi.testclient import TestClient
from sqlalchemy import select

from cellplane import __version__
from cellplane.api.app import create_app
from cellplane.sealing import (
    AGENT_SECRET_COLUMN,
    BIND_SECRET_COLUMN,
    KEY_FILE,
    SealedSecretError,
    Sealer,
    is_sealed,
)
from cellplane.services import cells as cells_service
from cellplane.state.identity_models import LdapConfig
from cellplane.state.models import Host


def test_a_cells_read_only_root_and_pids_limit_are_kept_shown_and_assigned(plat: Platform) -> None:
    r = plat.create_cell("ro", read_only=True, pids_limit=64)
    assert r.status_code == 202, r.text
    cid = plat.cell_id("ro")
    view = plat.cell(cid)
    assert view["read_only"] is True and view["pids_limit"] == 64
    plat.schedule()
    (assigned,) = [c for c in plat.assignments()["cells"] if c["cell_id"] == cid]
    assert assigned["read_only"] is True and assigned["pids_limit"] == 64


def test_a_cell_without_the_opt_ins_keeps_a_writable_root_and_the_default_limit(
    plat: Platform,
) -> None:
    assert plat.create_cell("rw").status_code == 202
    cid = plat.cell_id("rw")
    view = plat.cell(cid)
    assert view["read_only"] is False and view["pids_limit"] is None
    plat.schedule()
    (assigned,) = [c for c in plat.assignments()["cells"] if c["cell_id"] == cid]
    assert assigned["read_only"] is False and assigned["pids_limit"] is None


@pytest.mark.parametrize("limit", [0, 15, 1_048_577, "many", True])
def test_a_bad_pids_limit_is_refused_naming_it_and_nothing_is_created(
    plat: Platform, limit: object
) -> None:
    before = plat.cell_count()
    r = plat.create_cell("bad", pids_limit=limit)
    assert r.status_code == 422, r.text
    assert "pids_limit" in r.text
    assert plat.cell_count() == before


def test_the_agent_secret_is_stored_sealed(plat: Platform) -> None:
    body = {
        "api_version": "agent/v1",
        "join_token": plat.join_token,
        "name": "host-2",
        "address": "10.0.0.2",
        "capacity": {"cpu": 8.0, "memory_mb": 8192, "disk_gb": 50},
        "agent_url": "http://10.0.0.2:7443",
        "agent_secret": "the-agents-own-secret",
    }
    r = plat.client.post("/v1/agent/register", json=body)
    assert r.status_code == 200, r.text
    with plat.svc.db.reader() as s:
        stored = s.scalar(select(Host.agent_secret).where(Host.name == "host-2"))
    assert stored is not None and is_sealed(stored) and "the-agents-own-secret" not in stored
    assert plat.svc.sealer.open(stored, AGENT_SECRET_COLUMN) == "the-agents-own-secret"
    key = plat.svc.data_dir / KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600


def test_the_ldap_bind_secret_is_stored_sealed(
    plat: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELLPLANE_LDAP_ALLOWED_HOSTS", "ldap.example.org")
    body = {
        "url": "ldaps://ldap.example.org",
        "bind_dn": "cn=cp,dc=example,dc=org",
        "bind_password": "bind-secret-42",
        "user_base": "ou=people,dc=example,dc=org",
        "group_base": "ou=groups,dc=example,dc=org",
        "check": False,
    }
    r = plat.client.put("/v1/identity/ldap", json=body, headers=plat.admin)
    assert r.status_code == 200, r.text
    assert "bind-secret-42" not in r.text
    with plat.svc.db.reader() as s:
        (stored,) = s.scalars(select(LdapConfig.bind_secret)).all()
    assert is_sealed(stored) and "bind-secret-42" not in stored
    assert plat.svc.sealer.open(stored, BIND_SECRET_COLUMN) == "bind-secret-42"


def test_a_sealed_secret_opens_only_for_its_column_and_with_its_key(tmp_path: Path) -> None:
    sealer = Sealer(tmp_path / "a")
    sealed = sealer.seal("s3cret", AGENT_SECRET_COLUMN)
    assert sealer.seal("s3cret", AGENT_SECRET_COLUMN) != sealed  # a fresh nonce each time
    with pytest.raises(SealedSecretError, match=BIND_SECRET_COLUMN):
        sealer.open(sealed, BIND_SECRET_COLUMN)
    with pytest.raises(SealedSecretError, match="another key"):
        Sealer(tmp_path / "b").open(sealed, AGENT_SECRET_COLUMN)
    with pytest.raises(SealedSecretError, match="not sealed"):
        sealer.open("s3cret", AGENT_SECRET_COLUMN)
    assert Sealer(tmp_path / "a").open(sealed, AGENT_SECRET_COLUMN) == "s3cret"  # key kept


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_the_api_documents_are_served_by_default(plat: Platform, path: str) -> None:
    assert plat.client.get(path).status_code == 200


@pytest.mark.parametrize(
    "path", ["/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui.css"]
)
def test_an_operator_can_hide_the_api_documents(
    tmp_path: Path, template: Template, path: str
) -> None:
    svc = make_services(tmp_path, template)
    svc.api_docs = False
    try:
        with TestClient(create_app(svc, run_controllers=False)) as client:
            assert client.get(path).status_code == 404
            assert client.get("/readyz").status_code == 200  # the API itself still answers
    finally:
        svc.db.dispose()


def _bare_error(text: str) -> None:
    for leak in ("Traceback", 'File "', "site-packages", __version__, "cellplane/"):
        assert leak not in text, leak


def test_error_answers_carry_no_stack_trace_or_version(
    plat: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = plat.client
    answers = [
        c.get("/v1/no-such-route"),  # 404
        c.delete("/readyz"),  # 405
        c.get("/v1/projects/default/cells"),  # 401: no token
        c.post("/v1/projects/default/cells", json={"name": 5}, headers=plat.admin),  # 422
        c.post(
            "/v1/projects/default/cells",
            content=b"{not json",
            headers={**plat.admin, "Content-Type": "application/json"},
        ),  # 400
    ]

    def boom(*args: object, **kwargs: object) -> object:
        raise RuntimeError("boom at /srv/cellplane/secret/path.py line 12")

    monkeypatch.setattr(cells_service, "list_cells", boom)
    failing = TestClient(c.app, raise_server_exceptions=False)
    answers.append(failing.get("/v1/projects/default/cells", headers=plat.admin))  # 500
    assert [a.status_code for a in answers] == [404, 405, 401, 422, 400, 500]
    for a in answers:
        _bare_error(a.text)
        assert __version__ not in str(a.headers)
    assert "boom" not in answers[-1].text
