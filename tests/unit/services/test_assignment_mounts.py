"""A cell is never assigned to its host without the mounts it declares.

The failure this guards against (a Patroni node's engine container started without its data
volume): `services.hosts.assignments` read the host's volumes and its cells in separate
statements; the scheduler committed a placement (the cell and its new volume bound to the host in
one transaction) between the two, so the answer named the cell but not its volume, the mount was
dropped, and the agent created the container without it (same generation later: adopted as is).
"""

from __future__ import annotations

import threading
from typing import Any

from cellplane_platform_support import Platform
from sqlalchemy import event

from cellplane.services import hosts
from cellplane.state.models import Cell, Volume


def _volume(plat: Platform, name: str) -> str:
    r = plat.client.post("/v1/projects/default/volumes", json={"name": name}, headers=plat.admin)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _schedule_after_volumes_read(plat: Platform) -> dict[str, bool]:
    """Once an assignment has read the host's volumes, place the pending cells (committed, on
    another connection) before its next statement runs: the scheduler's window, made certain."""
    engine = plat.svc.db.engine
    done = {"placed": False}

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if done["placed"] or "FROM volumes" not in statement or "volumes.host_id" not in statement:
            return
        done["placed"] = True
        worker = threading.Thread(target=plat.schedule)
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive()

    event.listen(engine, "after_cursor_execute", after)
    return done


def test_a_placement_committed_while_the_view_is_read_does_not_drop_the_mount(
    plat: Platform,
) -> None:
    vid = _volume(plat, "pg-data")
    rev = hosts.assignments(plat.svc, plat.host_id, 0).revision
    r = plat.create_cell("pg", volumes=[{"volume": "pg-data", "path": "/var/lib/pg"}])
    assert r.status_code == 202, r.text
    done = _schedule_after_volumes_read(plat)

    seen: list[dict[str, Any]] = []
    since = rev
    for _ in range(3):  # the agent's polls: each asks from the revision it was last given
        a = hosts.assignments(plat.svc, plat.host_id, since).model_dump(mode="json")
        seen.extend(a["cells"])
        since = a["revision"]
    assert done["placed"], "the placement was not interleaved"
    with plat.svc.db.reader() as s:
        (cell,) = s.query(Cell).all()
        assert cell.host_id == plat.host_id
    assert seen, "the placed cell was never assigned"
    for c in seen:
        # Whenever the cell is named, its mount is there: nothing may create it without.
        assert c["mounts"] == [
            {
                "volume_id": vid,
                "engine_name": f"cp-{vid}",
                "path": "/var/lib/pg",
                "read_only": False,
                "host_path": None,
                "host_root": None,
            }
        ], c


def test_a_cell_whose_volume_is_on_another_host_is_assigned_waiting_for_it(
    plat: Platform,
) -> None:
    vid = _volume(plat, "shared")
    mount = [{"volume": "shared", "path": "/data"}]
    r = plat.create_cell("a", volumes=mount)
    assert r.status_code == 202, r.text
    plat.schedule()  # "a" binds the volume to this host
    r = plat.create_cell("b", volumes=[*mount, {"volume": "other", "path": "/x"}])
    assert r.status_code == 422, r.text  # a volume that does not exist is refused
    _volume(plat, "other")
    r = plat.create_cell("b", volumes=[*mount, {"volume": "other", "path": "/x"}])
    assert r.status_code == 202, r.text
    plat.schedule()
    a, b = sorted(hosts.assignments(plat.svc, plat.host_id, 0).cells, key=lambda c: c.name)
    assert (a.name, [m.volume_id for m in a.mounts], a.pending_volumes) == ("a", [vid], [])
    # "other" was bound here with "b": both mounted, nothing pending.
    assert [m.path for m in b.mounts] == ["/data", "/x"] and b.pending_volumes == []
    # A volume bound elsewhere (how a cell could get here without it): named as pending, and
    # the cell keeps the mounts of the volumes that are here.
    h2, _ = plat.register_host("host-2")
    with plat.svc.db.session() as s:
        v = s.query(Volume).filter(Volume.name == "other").one()
        v.host_id = h2
    (b,) = [c for c in hosts.assignments(plat.svc, plat.host_id, 0).cells if c.name == "b"]
    assert [m.path for m in b.mounts] == ["/data"] and b.pending_volumes == ["other"]
