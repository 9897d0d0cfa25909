"""An agent's assignments answer built as plain JSON (`services.host_assignments`) is the answer
the pydantic models gave.

`_reference` is the implementation before part 5 of docs/scale.md, kept verbatim here (ORM
objects, a `wire.CellAssignment` per cell, `model_dump(mode="json")`): on a fixture of cells on
two hosts with volumes here and elsewhere, several networks, a cell without a network row, ports,
restart policies, a stop under way and an ended cell, every revision the agent may ask from gets
the same answer from both. Then the odd stored values that only the models coerced, the number
of statements, and the HTTP answer read by the agent's own parser.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from cellplane_platform_support import Platform
from sqlalchemy import delete, event, select, update

from cellplane.errors import NotFound
from cellplane.ids import utcnow
from cellplane.services import cell_networks, hosts, networks
from cellplane.services.context import Services
from cellplane.state import networks as state_networks
from cellplane.state.models import Cell, CellNetwork, Host, Image, Network, Volume
from cellplane.wire import agent as wire
from cellplane.wire import agent_plain


def _mounts(cell: Cell, vols: dict[str, Volume]) -> tuple[list[wire.MountAssignment], list[str]]:
    mounts: list[wire.MountAssignment] = []
    pending: list[str] = []
    for m in cell.volumes or []:
        v = vols.get(m["volume"] + "@" + cell.project_id)
        if v is None:
            pending.append(m["volume"])
            continue
        mounts.append(
            wire.MountAssignment(
                volume_id=v.id,
                engine_name=hosts.volume_engine_name(v.id),
                path=m["path"],
                read_only=bool(m.get("read_only")),
            )
        )
    return mounts, pending


def _reference(svc: Services, host_id: str, since: int) -> wire.Assignments:
    """`services.hosts.assignments` as it was (f5efc00), verbatim but for the names."""
    with svc.db.reader() as s:
        h = s.get(Host, host_id)
        if h is None:
            raise NotFound(f"host {host_id!r} does not exist")
        q = (
            select(Cell, Image)
            .join(Image, Image.id == Cell.image_id)
            .where(Cell.host_id == host_id)
        )
        full = (
            not (0 < since <= h.revision)
            or since < h.departed_revision
            or h.fence_revision > h.fenced_revision
        )
        if not full:
            q = q.where(Cell.host_rev > since)
        vols = {
            v.name + "@" + v.project_id: v
            for v in s.scalars(select(Volume).where(Volume.host_id == host_id))
        }
        rows = list(s.execute(q))
        nets = networks.descriptions(s, {cell.network_id for cell, _ in rows if cell.network_id})
        joined = cell_networks.attachments(s, [cell.id for cell, _ in rows])
        cells = []
        for cell, image in rows:
            mounts, pending = _mounts(cell, vols)
            row = nets.get(cell.network_id or "")
            net = (
                networks.description(row, cell.network_address)
                if row is not None
                else hosts.network_description(cell.project_id)
            )
            extra = [
                networks.description(n, address)
                for n, address in joined.get(cell.id, [])
                if n.id != cell.network_id
            ]
            cells.append(
                wire.CellAssignment(
                    cell_id=cell.id,
                    name=cell.name,
                    project_id=cell.project_id,
                    network=net,
                    image=wire.ImageRef(
                        id=image.id,
                        kind=image.kind,
                        engine_ref=image.engine_ref,
                        sha256=image.sha256,
                    ),
                    cpu=cell.cpu,
                    memory_mb=cell.memory_mb,
                    command=cell.command,
                    entrypoint=cell.entrypoint,
                    workdir=cell.workdir,
                    user=cell.user,
                    hostname=cell.hostname,
                    read_only=bool(cell.read_only),
                    pids_limit=cell.pids_limit,
                    env=cell.env or {},
                    labels=cell.labels or {},
                    ports=[wire.PortAssignment.model_validate(p) for p in cell.ports or []],
                    mounts=mounts,
                    pending_volumes=pending,
                    restart=wire.RestartPolicy(
                        policy=cell.restart_policy, max_retries=cell.max_retries
                    ),
                    isolation=cell.isolation or "standard",
                    stop_timeout=(
                        cell.stop_timeout
                        if cell.stop_request_timeout is None
                        else cell.stop_request_timeout
                    ),
                    desired_state=cell.desired_state,
                    restarts=cell.restarts,
                    restart_requested_at=(
                        cell.restart_requested_at.isoformat() if cell.restart_requested_at else None
                    ),
                    ended_at=cell.ended_at.isoformat() if cell.ended_at else None,
                    generation=cell.generation or 1,
                    extra_networks=extra,
                )
            )
        volumes = [
            wire.VolumeAssignment(
                volume_id=v.id, engine_name=hosts.volume_engine_name(v.id), state=v.state
            )
            for v in vols.values()
        ]
        return wire.Assignments(revision=h.revision, full=full, cells=cells, volumes=volumes)


def _ok(r: Any, status: int = 202) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return dict(r.json())


def _by_id(answer: dict[str, Any]) -> str:
    """The answer as JSON, its cells in id order (neither implementation orders them). As
    text: in Python `1 == 1.0 == True`, on the wire they differ."""
    cells = sorted(answer["cells"], key=lambda c: c["cell_id"])
    return json.dumps({**answer, "cells": cells}, sort_keys=True)


def _same(plat: Platform, host_id: str, since: int) -> dict[str, Any]:
    new = hosts.assignments_answer(plat.svc, host_id, since)
    old = _reference(plat.svc, host_id, since).model_dump(mode="json")
    assert _by_id(new) == _by_id(old)
    # The plain answer is exactly what the typed contract makes of it.
    typed = wire.Assignments.model_validate(new).model_dump(mode="json")
    assert json.dumps(typed) == json.dumps(new)
    return new


def _fixture(plat: Platform) -> tuple[str, list[str]]:
    """Cells of every kind on two hosts; returns the second host and the cells' ids."""
    h2, _ = plat.register_host("host-2")
    admin, c = plat.admin, plat.client
    for name in ("a", "b"):
        _ok(c.post("/v1/projects/default/networks", json={"name": name}, headers=admin), 201)
    for name in ("data", "logs", "away"):
        _ok(c.post("/v1/projects/default/volumes", json={"name": name}, headers=admin), 201)
    small = {"cpu": 0.05, "memory_mb": 16}
    specs: list[tuple[str, dict[str, Any]]] = [
        ("plain", {}),
        ("multi", {"networks": ["a", "b"]}),
        ("multi2", {"networks": ["b", "default", "a"]}),
        ("onb", {"network": "b"}),
        (
            "vols",
            {
                "volumes": [
                    {"volume": "data", "path": "/d"},
                    {"volume": "logs", "path": "/l", "read_only": True},
                ]
            },
        ),
        (
            "rich",
            {
                "env": {"A": "1", "B": "two"},
                "labels": {"tier": "web"},
                "ports": [{"container_port": 80, "host_port": 8080}, {"container_port": 53}],
                "restart": {"policy": "on-failure", "max_retries": 3},
                "stop_timeout": 4,
            },
        ),
        ("stopped", {}),
    ]
    ids = [
        str(_ok(plat.create_cell(name, **small, **body))["entity"]["id"]) for name, body in specs
    ]
    svc_body = {"name": "web", "instances": 6, "template": {"image": "host", **small}}
    _ok(c.post("/v1/projects/default/services", json=svc_body, headers=admin))
    plat.schedule()
    now = utcnow()
    with plat.svc.db.session() as s:
        cells = {cell.name: cell for cell in s.scalars(select(Cell))}
        rich, stopped, plain = cells["rich"], cells["stopped"], cells["plain"]
        rich.entrypoint, rich.workdir = ["/bin/sh", "-c"], "/w"
        rich.user, rich.hostname = "1:1", "h"
        rich.read_only, rich.pids_limit, rich.isolation = True, 64, "sandbox"
        rich.restart_requested_at, rich.restarts, rich.generation = now, 2, 3
        stopped.desired_state, stopped.stop_request_timeout = "STOPPED", 0.0
        stopped.ended_at = now - timedelta(seconds=5)
        # A cell from before networks were rows: no network, one further attachment.
        plain.network_id, plain.network_address = None, None
        s.execute(delete(CellNetwork).where(CellNetwork.cell_id == plain.id))
        (net_a,) = [n for n in networks_of(s) if n.name == "a"]
        s.add(CellNetwork(cell_id=plain.id, network_id=net_a.id, address="10.99.0.9", position=1))
        s.execute(update(Volume).where(Volume.name == "away").values(host_id=h2))
        s.execute(update(Volume).where(Volume.name == "logs").values(state="DELETING"))
    ids += [cell.id for cell in cells.values() if cell.name.startswith("web-")]
    return h2, ids


def networks_of(s: Any) -> list[Network]:
    return list(s.scalars(select(Network)))


def test_the_answer_is_the_models_answer_at_every_revision(plat: Platform) -> None:
    h2, ids = _fixture(plat)
    for host in (plat.host_id, h2):
        full = _same(plat, host, 0)
        assert full["full"] is True
        rev = full["revision"]
        for since in (1, rev - 2, rev - 1, rev, rev + 100):
            _same(plat, host, since)
    both = [
        c["cell_id"]
        for host in (plat.host_id, h2)
        for c in hosts.assignments_answer(plat.svc, host, 0)["cells"]
    ]
    assert sorted(both) == sorted(ids)
    # What the fixture meant to cover is there.
    cells = {
        c["name"]: c
        for host in (plat.host_id, h2)
        for c in hosts.assignments_answer(plat.svc, host, 0)["cells"]
    }
    # Its further networks in their order: the default one, then "a" (multi's first).
    assert [n["name"] for n in cells["multi2"]["extra_networks"]] == [
        hosts.network_name(cells["multi2"]["project_id"]),
        cells["multi"]["network"]["name"],
    ]
    assert cells["plain"]["network"]["vni"] is None and len(cells["plain"]["extra_networks"]) == 1
    assert cells["stopped"]["stop_timeout"] == 0.0 and cells["stopped"]["ended_at"] is not None
    assert cells["rich"]["isolation"] == "sandbox" and cells["rich"]["ports"][1] == {
        "container_port": 53,
        "host_port": None,
        "protocol": "tcp",
    }
    mounts = cells["vols"]["mounts"]
    assert [m["read_only"] for m in mounts] == [False, True]


def test_a_delta_after_a_change_and_a_fenced_host_are_the_models_answer(plat: Platform) -> None:
    h2, _ = _fixture(plat)
    rev = hosts.assignments_answer(plat.svc, plat.host_id, 0)["revision"]
    _ok(plat.create_cell("late", cpu=0.05, memory_mb=16, networks=["a", "b"]))
    plat.schedule()
    for host in (plat.host_id, h2):
        _same(plat, host, rev)
    with plat.svc.db.session() as s:
        h = s.get(Host, plat.host_id)
        assert h is not None
        h.fence_revision = h.fenced_revision + 1
    fenced = _same(plat, plat.host_id, rev)
    assert fenced["full"] is True


def test_stored_values_of_other_types_are_coerced_as_the_models_did(plat: Platform) -> None:
    _, _ = _fixture(plat)
    with plat.svc.db.session() as s:
        rich = s.scalars(select(Cell).where(Cell.name == "rich")).one()
        # A port as a string and with a key the contract does not know.
        rich.ports = [{"container_port": "80", "host_port": 8080, "note": "x"}]
        host = str(rich.host_id)
    answer = _same(plat, host, 0)
    (cell,) = [c for c in answer["cells"] if c["name"] == "rich"]
    assert cell["ports"] == [{"container_port": 80, "host_port": 8080, "protocol": "tcp"}]
    assert cell["env"] == {"A": "1", "B": "two"}
    with plat.svc.db.session() as s:
        rich = s.scalars(select(Cell).where(Cell.name == "rich")).one()
        rich.labels = {"n": 1}  # not a string: the contract refuses it, as it always did
    for build in (hosts.assignments_answer, _reference):
        with pytest.raises(ValueError):
            build(plat.svc, host, 0)


def test_an_answer_is_four_statements_whatever_it_holds(plat: Platform) -> None:
    h2, _ = _fixture(plat)
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    engine = plat.svc.db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for host in (plat.host_id, h2):
            for since in (0, 1):
                seen.clear()
                answer = hosts.assignments_answer(plat.svc, host, since)
                assert answer["cells"] and len(seen) == 4, seen
        seen.clear()
        rev = hosts.assignments_answer(plat.svc, h2, 0)["revision"]
        seen.clear()
        assert hosts.assignments_answer(plat.svc, h2, rev)["cells"] == []
        assert len(seen) == 3, seen  # nothing changed: no networks to read
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_the_agents_answer_over_http_is_the_same_and_reads_as_agent_v1(plat: Platform) -> None:
    _fixture(plat)
    answer = plat.assignments(revision=0)
    assert _by_id(answer) == _by_id(_reference(plat.svc, plat.host_id, 0).model_dump(mode="json"))
    parsed = agent_plain.parse(agent_plain.Assignments, answer)
    assert agent_plain.dump(parsed) == wire.Assignments.model_validate(answer).model_dump(
        mode="json"
    )
    with pytest.raises(NotFound):
        hosts.assignments_answer(plat.svc, "hst-nope", 0)


def test_the_engine_name_of_a_network_read_as_columns(plat: Platform) -> None:
    _fixture(plat)
    with plat.svc.db.reader() as s:
        for n in networks_of(s):
            named = state_networks.engine_name_of(n.id, n.name, n.project_id)
            assert named == state_networks.engine_name(n)
