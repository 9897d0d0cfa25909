"""A cell with a volume moves with its data: in-process server, two real agent endpoints (each on
its own FakeDriver with volume data in a temporary directory), the copy streamed between them
through the server and verified by sha256; the old copy is removed only after that."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cellplane_platform_support import Platform

from cellplane.agent.endpoint import AgentEndpoint
from cellplane.agent.volume_transfer import VolumeTransfer, pack, receive, unpack
from cellplane.drivers.fake import FakeDriver
from cellplane.ids import utcnow
from cellplane.sealing import AGENT_SECRET_COLUMN
from cellplane.services import moves, volume_moves
from cellplane.services.hosts import volume_engine_name
from cellplane.state.models import Host, Volume


@dataclass
class Site:
    host_id: str
    token: str
    driver: FakeDriver
    endpoint: AgentEndpoint


@dataclass
class Pair:
    plat: Platform
    a: Site
    b: Site


def _site(plat: Platform, host_id: str, token: str, root: Path, secret: str) -> Site:
    driver = FakeDriver(images=["host"])
    driver.volume_root = root
    endpoint = AgentEndpoint(driver, secret, volumes=VolumeTransfer(driver, scratch=root.parent))
    endpoint.start()
    with plat.svc.db.session() as s:
        h = s.get(Host, host_id)
        assert h is not None
        # Stored sealed, as registration stores it (the server unseals it to call the agent).
        h.agent_url = endpoint.url
        h.agent_secret = plat.svc.sealer.seal(secret, AGENT_SECRET_COLUMN)
    return Site(host_id, token, driver, endpoint)


@pytest.fixture
def pair(plat: Platform, tmp_path: Path) -> Iterator[Pair]:
    h2, t2 = plat.register_host("host-2")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _site(plat, plat.host_id, plat.host_token, tmp_path / "a" / "vols", "secret-a")
    b = _site(plat, h2, t2, tmp_path / "b" / "vols", "secret-b")
    try:
        yield Pair(plat, a, b)
    finally:
        a.endpoint.stop()
        b.endpoint.stop()


def _maintenance(plat: Platform, host_id: str, on: bool) -> None:
    r = plat.client.post(
        f"/v1/hosts/{host_id}/maintenance", json={"enabled": on}, headers=plat.admin
    )
    assert r.status_code == 200, r.text


def _cell_with_data(pair: Pair) -> tuple[str, str, Path]:
    """A running cell on host-1 with volume 'data' holding two files; returns (cell, engine
    name, the volume's directory on host-1)."""
    plat = pair.plat
    r = plat.client.post(
        "/v1/projects/default/volumes", json={"name": "data", "size_gb": 1}, headers=plat.admin
    )
    assert r.status_code == 201, r.text
    _maintenance(plat, pair.b.host_id, True)
    r = plat.create_cell("db", volumes=[{"volume": "data", "path": "/data"}])
    assert r.status_code == 202, r.text
    plat.schedule()
    _maintenance(plat, pair.b.host_id, False)
    cid = str(r.json()["entity"]["id"])
    plat.report({"cell_id": cid, "state": "RUNNING", "container_id": "c1"})
    with plat.svc.db.reader() as s:
        (vol,) = s.query(Volume).all()
        assert vol.host_id == pair.a.host_id
        name = volume_engine_name(vol.id)
    pair.a.driver.ensure_volume(name, {})
    directory = pair.a.driver.volume_path(name)
    (directory / "rows.txt").write_text("alpha\nbeta\n")
    (directory / "sub").mkdir()
    (directory / "sub" / "blob.bin").write_bytes(bytes(range(256)) * 64)
    return cid, name, directory


def _tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _volume_host(plat: Platform) -> str | None:
    with plat.svc.db.reader() as s:
        (vol,) = s.query(Volume).all()
        return vol.host_id


def test_move_stops_copies_verifies_then_starts_on_the_new_host(pair: Pair) -> None:
    plat = pair.plat
    cid, name, src_dir = _cell_with_data(pair)
    before = _tree(src_dir)
    r = plat.client.post(f"/v1/cells/{cid}/move", json={"host": "host-2"}, headers=plat.admin)
    assert r.status_code == 202, r.text
    task = r.json()
    assert [st["name"] for st in task["steps"]][:3] == ["STOP", "COPY_VOLUME", "SCHEDULE"]
    cell = plat.cell(cid)
    assert cell["desired_state"] == "STOPPED" and cell["host"] == pair.a.host_id
    # Nothing is copied while the cell still runs.
    assert volume_moves.advance(plat.svc, utcnow()) == set()
    plat.report({"cell_id": cid, "state": "STOPPED", "container_id": "c1"})
    topics = volume_moves.advance(plat.svc, utcnow())
    assert f"host:{pair.b.host_id}" in topics
    cell = plat.cell(cid)
    assert (cell["host"], cell["desired_state"], cell["generation"]) == (
        pair.b.host_id,
        "RUNNING",
        2,
    )
    assert _volume_host(plat) == pair.b.host_id
    assert _tree(pair.b.driver.volume_path(name)) == before
    # The old copy went last, after the verified one was in place.
    assert name not in pair.a.driver.volumes
    kinds = [e["type"] for e in cell["events"]]
    assert kinds[-2:] == ["moved", "volume-copy-removed"]
    moved = cell["events"][-2]["message"]
    assert "volume data copied and verified" in moved and "sha256" in moved
    view = plat.task(task["id"])
    assert [st["state"] for st in view["steps"]][:3] == ["COMPLETED"] * 3


def test_a_copy_the_new_host_refuses_changes_nothing(pair: Pair) -> None:
    plat = pair.plat
    cid, name, src_dir = _cell_with_data(pair)
    before = _tree(src_dir)
    with plat.svc.db.session() as s:  # the new host's agent does not accept the server
        h = s.get(Host, pair.b.host_id)
        assert h is not None
        h.agent_secret = plat.svc.sealer.seal("wrong", AGENT_SECRET_COLUMN)
    r = plat.client.post(f"/v1/cells/{cid}/move", json={"host": "host-2"}, headers=plat.admin)
    assert r.status_code == 202, r.text
    plat.report({"cell_id": cid, "state": "STOPPED", "container_id": "c1"})
    volume_moves.advance(plat.svc, utcnow())
    task = plat.task(r.json()["id"])
    assert task["state"] == "ERROR"
    assert task["error"].startswith("volume copy failed, the cell stays: host-2 refused it: 401")
    cell = plat.cell(cid)
    assert (cell["host"], cell["desired_state"], cell["generation"]) == (
        pair.a.host_id,
        "RUNNING",
        1,
    )
    assert _volume_host(plat) == pair.a.host_id
    assert _tree(src_dir) == before and name in pair.a.driver.volumes


def test_drain_moves_a_cell_with_its_volume(pair: Pair) -> None:
    plat = pair.plat
    cid, name, src_dir = _cell_with_data(pair)
    before = _tree(src_dir)
    r = plat.client.post(f"/v1/hosts/{pair.a.host_id}/drain", headers=plat.admin)
    assert r.status_code == 202, r.text
    drain = r.json()
    plat.report({"cell_id": cid, "state": "STOPPED", "container_id": "c1"})
    volume_moves.advance(plat.svc, utcnow())
    assert _tree(pair.b.driver.volume_path(name)) == before
    plat.client.post(
        f"/v1/agent/hosts/{pair.b.host_id}/status",
        json={
            "api_version": "agent/v1",
            "cells": [{"cell_id": cid, "state": "RUNNING", "container_id": "c2", "generation": 2}],
        },
        headers={"Authorization": f"Bearer {pair.b.token}"},
    )
    moves.drain_progress(plat.svc, utcnow())
    assert plat.task(drain["id"])["state"] == "COMPLETED"


def test_a_cell_whose_volume_host_is_down_cannot_move(pair: Pair) -> None:
    from datetime import timedelta

    plat = pair.plat
    cid, _, _ = _cell_with_data(pair)
    with plat.svc.db.session() as s:
        h = s.get(Host, pair.a.host_id)
        assert h is not None
        h.last_heartbeat = utcnow() - timedelta(seconds=plat.svc.heartbeat_down_s + 5)
    r = plat.client.post(f"/v1/cells/{cid}/move", json={"host": "host-2"}, headers=plat.admin)
    assert r.status_code == 409, r.text
    assert "its volume 'data' is on host host-1, which is DOWN (no heartbeat for" in r.text


# --- the archive itself ------------------------------------------------------------------------


def test_pack_receive_unpack_round_trip_with_the_checksum(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("x" * 5000)
    archive = tmp_path / "a.tar"
    sha = pack(src, archive)
    data = archive.read_bytes()
    assert sha == hashlib.sha256(data).hexdigest()
    got = receive(io.BytesIO(data), len(data), tmp_path / "in.tar")
    assert got == sha
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "stale").write_text("old")
    unpack(tmp_path / "in.tar", dst)
    assert _tree(dst) == _tree(src)


def test_a_cut_stream_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the stream ended after 3 of 10 bytes"):
        receive(io.BytesIO(b"abc"), 10, tmp_path / "in.tar")


def test_an_archive_reaching_outside_the_volume_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../escaped")
        payload = b"nope"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    dst = tmp_path / "vol"
    dst.mkdir()
    (dst / "keep").write_text("data")
    with pytest.raises(tarfile.TarError):
        unpack(evil, dst)
    assert not (tmp_path / "escaped").exists()
    assert _tree(dst) == {"keep": b"data"}


def test_the_endpoint_refuses_a_wrong_checksum_and_keeps_the_volume(
    tmp_path: Path,
) -> None:
    import httpx

    driver = FakeDriver()
    driver.volume_root = tmp_path / "vols"
    endpoint = AgentEndpoint(driver, "s", volumes=VolumeTransfer(driver, scratch=tmp_path))
    endpoint.start()
    try:
        driver.ensure_volume("cp-vol1", {})
        (driver.volume_path("cp-vol1") / "keep").write_text("data")
        headers: dict[str, Any] = {"Authorization": "Bearer s", "X-Cellplane-SHA256": "0" * 64}
        r = httpx.put(f"{endpoint.url}/volumes/cp-vol1/archive", content=b"xyz", headers=headers)
        assert r.status_code == 422 and "checksum mismatch" in r.text
        assert _tree(driver.volume_path("cp-vol1")) == {"keep": b"data"}
        r = httpx.get(f"{endpoint.url}/volumes/../etc/archive", headers=headers)
        assert r.status_code == 404
        r = httpx.get(f"{endpoint.url}/volumes/cp-vol1/archive")
        assert r.status_code == 401
    finally:
        endpoint.stop()


def test_the_old_copy_waits_until_the_old_container_is_gone(pair: Pair) -> None:
    from cellplane.drivers.base import ContainerSpec, MountSpec

    plat = pair.plat
    cid, name, _ = _cell_with_data(pair)
    old = pair.a.driver.create(
        ContainerSpec(name="cp-old", image="host", mounts=[MountSpec(volume=name, target="/data")])
    )
    r = plat.client.post(f"/v1/cells/{cid}/move", json={"host": "host-2"}, headers=plat.admin)
    assert r.status_code == 202, r.text
    plat.report({"cell_id": cid, "state": "STOPPED", "container_id": "c1"})
    volume_moves.advance(plat.svc, utcnow())
    task = plat.task(r.json()["id"])
    clean = task["steps"][-1]
    assert clean["name"] == "REMOVE_OLD_COPY" and clean["state"] == "QUEUED"
    assert clean["message"].startswith("waiting: 409")
    assert name in pair.a.driver.volumes  # still mounted by the old container
    pair.a.driver.remove(old)
    volume_moves.advance(plat.svc, utcnow())
    assert name not in pair.a.driver.volumes
    plat.client.post(
        f"/v1/agent/hosts/{pair.b.host_id}/status",
        json={
            "api_version": "agent/v1",
            "cells": [{"cell_id": cid, "state": "RUNNING", "container_id": "c2", "generation": 2}],
        },
        headers={"Authorization": f"Bearer {pair.b.token}"},
    )
    task = plat.task(task["id"])
    assert task["state"] == "COMPLETED" and task["progress"] == 100
