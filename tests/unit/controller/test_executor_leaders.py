"""The leader pass: which node leads a role that elects one (Patroni's /primary), followed through
a failover, shown in the cluster view with its endpoints and a `leader` event (the `ex` fixture:
executor_support.py, with the leader probe answered per cell by the test)."""

from __future__ import annotations

from typing import Any

import pytest
from cellplane_executor_support import Executor, cells, deploy, group
from cellplane_platform_support import Platform

from cellplane.clusters import Catalog, RoleDefinition
from cellplane.state.cluster_models import Cluster


def view(plat: Platform, cluster_id: str) -> Any:
    r = plat.client.get(f"/v1/clusters/{cluster_id}", headers=plat.admin)
    assert r.status_code == 200, r.text
    return r.json()


class Leading:
    """Answers the leader probe (GET /primary) with 0 on the one cell that leads; counts probes."""

    def __init__(self) -> None:
        self.cell: str | None = None
        self.probes: list[str] = []

    def __call__(self, ctx: Any, cell_id: str, command: list[str], timeout: float = 30) -> Any:
        if "GET /primary" not in " ".join(command):
            return 0, ""  # readiness probes pass
        self.probes.append(cell_id)
        return (0, "") if cell_id == self.cell else (1, "HTTP/1.0 503")


def test_the_leader_is_found_followed_and_shown(
    plat: Platform, ex: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    leading = Leading()
    monkeypatch.setattr(ex, "exec", leading)
    c = deploy(plat, ex, "pg", group("etcd", ["etcd"], 3), group("postgres", ["patroni"], 3))
    ids = {name: cell.id for name, cell in cells(plat).items()}
    assert view(plat, c.id)["leaders"] == {}  # not known before the first pass

    leading.cell = ids["pg-postgres-1"]
    assert ex.track_leaders() == {c.id: {"patroni": "pg-postgres-1"}}
    v = view(plat, c.id)
    assert v["leaders"] == {
        "patroni": {
            "node": "pg-postgres-1",
            "endpoints": {"postgres": "pg-postgres-1:5432", "rest": "pg-postgres-1:8008"},
        }
    }
    assert v["events"][-1]["type"] == "leader" and v["events"][-1]["node"] == "pg-postgres-1"
    assert set(leading.probes) <= {ids[f"pg-postgres-{i}"] for i in range(3)}  # etcd: no leader

    # While it leads, one probe per pass, of the known leader only; no new event.
    leading.probes.clear()
    events = len(view(plat, c.id)["events"])
    assert ex.track_leaders() == {c.id: {"patroni": "pg-postgres-1"}}
    assert leading.probes == [ids["pg-postgres-1"]]
    assert len(view(plat, c.id)["events"]) == events

    # Patroni failed over: the old leader answers 503, the pass finds the new one.
    leading.cell = ids["pg-postgres-2"]
    assert ex.track_leaders() == {c.id: {"patroni": "pg-postgres-2"}}
    v = view(plat, c.id)
    assert v["leaders"]["patroni"]["node"] == "pg-postgres-2"
    assert v["events"][-1]["message"] == "role patroni: pg-postgres-2 leads (was pg-postgres-1)"
    states = {n["name"]: n["role_states"] for n in v["nodes"]}
    assert states["pg-postgres-1"] == {"patroni": "READY"}
    assert states["pg-postgres-2"] == {"patroni": "LEADER"}

    # No node leads (mid-election): none is shown, and the view never shows a stale leader.
    leading.cell = None
    assert ex.track_leaders() == {c.id: {"patroni": None}}
    v = view(plat, c.id)
    assert v["leaders"] == {}
    assert v["events"][-1]["message"] == "role patroni: no node leads (was pg-postgres-2)"


def test_a_stopped_cluster_is_not_probed(
    plat: Platform, ex: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    leading = Leading()
    monkeypatch.setattr(ex, "exec", leading)
    c = deploy(plat, ex, "pg", group("etcd", ["etcd"], 3), group("postgres", ["patroni"], 1))
    # The fake agent does not stop cells: the row says what a finished stop leaves.
    with plat.svc.db.session() as s:
        row = s.get(Cluster, c.id)
        assert row is not None
        row.state = "STOPPED"
    assert ex.track_leaders() == {} and leading.probes == []


def test_a_leader_check_must_name_a_known_port(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="leader uses port 'http', which is not in ports"):
        RoleDefinition(name="x", ports={"rest": 8008}, leader={"port": "http", "path": "/"})
    role = catalog.roles["patroni"]
    assert role.leader is not None and role.leader.path == "/primary"
