"""Backup and restore of a real deployment (HTTPS, its own CA): `cellplane admin backup` while
the server runs, the server killed and its state destroyed, `cellplane admin restore`, the server
started again. Every tenant, user, token, certificate and cell is back; the running cells are
adopted (same containers); a cell created after the backup is unknown to the restored server
and its container is removed by the agent as an orphan. The agent keeps running throughout, as
on a host whose server machine was lost."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cellplane.client import CellplaneError, Client
from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment
from cellplane.testing.waits import SLEEP, finish, unique, wait_for

from .conftest import IMAGE, SMALL, cli, tree

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    archive = build_busybox_archive(tmp_path_factory.mktemp("busybox"))
    with Deployment(tls=True) as d:
        with d.client() as c:
            c.upload_image(IMAGE, archive)
        yield d


def _run(c: Client, stem: str) -> dict[str, Any]:
    task = c.create_cell("default", unique(stem), IMAGE, command=SLEEP, **SMALL)
    assert finish(c, task["id"])["state"] == "COMPLETED"
    cell_id = task["entity"]["id"]
    return wait_for(
        lambda: (cell := c.get_cell(cell_id))["state"] == "RUNNING" and cell,
        what=f"cell {cell_id} RUNNING",
    )


def _client_certificate(d: Deployment, tmp: Path) -> httpx.Client:
    """A client certificate of the admin, and an HTTPS client that presents it (no token)."""
    key = ec.generate_private_key(ec.SECP256R1())
    with d.client() as c:
        subject = c.whoami()["subject"]
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )
        issued = c.request_certificate(csr, ttl_days=2)
    (tmp / "chain.pem").write_text(issued["chain"])
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert d.ca_file is not None
    ctx = ssl.create_default_context(cafile=str(d.ca_file))
    ctx.load_cert_chain(tmp / "chain.pem", tmp / "key.pem")
    return httpx.Client(base_url=d.url, verify=ctx, timeout=10)


def _password_token(d: Deployment, user: str, password: str) -> str:
    r = httpx.post(
        f"{d.url}/identity/default/token",
        data={
            "grant_type": "password",
            "client_id": "cellplane-cli",
            "username": user,
            "password": password,
        },
        verify=d.verify,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _list_cells(d: Deployment, token: str) -> httpx.Response:
    return httpx.get(
        f"{d.url}/v1/projects/default/cells",
        headers={"Authorization": f"Bearer {token}"},
        verify=d.verify,
    )


def _state(c: Client) -> dict[str, Any]:
    return {
        "tenants": sorted((t["id"], t["name"]) for t in c.list_tenants()),
        "users": sorted((u["id"], u["name"]) for u in c.list_users()),
        "roles": sorted((a["id"], a["role"]) for a in c.list_role_assignments()),
        "certificates": sorted(
            (x["serial"], x["subject"], x.get("revoked_at")) for x in c.list_certificates()
        ),
        "cells": sorted((x["id"], x["state"], x["container_id"]) for x in c.iter_cells("default")),
        "images": sorted(i["name"] for i in c.list_images()["items"]),
    }


def test_backup_destroy_restore_finds_everything_back(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    engine = PodmanDriver(d.engine_url)
    host_label = {"cellplane.host": ""}
    try:
        with d.client() as c:
            tenant = c.create_tenant(unique("acme"), admin={"name": "root-admin"})
            c.create_user("alice", password="alice-password-1")
            c.assign_role("project-viewer", user="alice", project="default")
            kept = [_run(c, "kept"), _run(c, "kept")]
            host_label["cellplane.host"] = kept[0]["host"]
        alice = _password_token(d, "alice", "alice-password-1")
        mtls = _client_certificate(d, tmp_path)
        with d.client() as c:
            before = _state(c)
        assert (tenant["name"], tenant["id"]) in [(n, i) for i, n in before["tenants"]]
        assert len(before["certificates"]) == 2  # the admin's, and the agent's host certificate
        ca_before = d.ca_file.read_bytes() if d.ca_file else b""
        files_before = tree(d.data_dir / "server")
        containers_before = sorted(x.id for x in engine.list(host_label))
        assert containers_before == sorted(c["container_id"] for c in kept)

        # Online: the server and agent keep running while the backup is taken.
        out = tmp_path / "deployment.cpbak"
        env = {"CELLPLANE_BACKUP_PASSPHRASE": PASSPHRASE}
        r = cli("admin", "backup", "--data-dir", str(d.data_dir), "--out", str(out), env=env)
        assert r.returncode == 0, r.stderr
        assert "Backed up" in r.stdout

        with d.client() as c:
            late = _run(c, "late")  # after the backup: the restored server never knew it
        assert len(engine.list(host_label)) == 3

        # The server's machine is lost: process killed, state gone. The agent runs on.
        d.kill_server()
        shutil.rmtree(d.data_dir / "server")

        r = cli(
            "admin",
            "restore",
            "--data-dir",
            str(d.data_dir),
            "--from",
            str(out),
            env={"CELLPLANE_BACKUP_PASSPHRASE": "not the passphrase"},
        )
        assert r.returncode == 1 and "passphrase is wrong" in r.stderr, r.stderr
        assert not (d.data_dir / "server").exists()
        r = cli("admin", "restore", "--data-dir", str(d.data_dir), "--from", str(out), env=env)
        assert r.returncode == 0, r.stderr
        assert tree(d.data_dir / "server") == files_before

        d.start_server()
        d.wait_host_ready()
        assert d.ca_file is not None and d.ca_file.read_bytes() == ca_before

        with d.client() as c:  # the bootstrap admin's personal access token
            # The late cell's container is an orphan to the restored server: removed.
            wait_for(
                lambda: len(engine.list(host_label)) == 2,
                what="the orphan container of the late cell removed",
            )
            with pytest.raises(CellplaneError) as gone:
                c.get_cell(late["id"])
            assert gone.value.status == 404
            after = _state(c)
        assert after == before  # same cells, RUNNING, in the same containers (adopted)
        assert sorted(x.id for x in engine.list(host_label)) == containers_before
        assert all(engine.inspect(i).running for i in containers_before)
        # An access token signed before the backup verifies: the signing keys are back.
        seen = _list_cells(d, alice)
        assert seen.status_code == 200, seen.text
        assert sorted(x["id"] for x in seen.json()["items"]) == sorted(x["id"] for x in kept)
        # The client certificate issued before the backup authenticates: the CA is back.
        who = mtls.get("/v1/whoami")
        assert who.status_code == 200 and who.json()["name"] == "admin", who.text
        mtls.close()
        # And the restored deployment works: a new cell runs on the same host.
        with d.client() as c:
            again = _run(c, "again")
            assert again["host"] == kept[0]["host"]
            for cell in [*kept, again]:
                finish(c, c.delete_cell(cell["id"])["id"])
        wait_for(lambda: engine.list(host_label) == [], what="every container removed")
    finally:
        engine.close()
