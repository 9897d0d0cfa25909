"""A cell's state view (`docker_resources.state_view`), what `wait`, `start` and `--rm` read on
each change of a container: the fields Docker's state needs, the same answer as the cell's whole
view for it, and a start seen as a new start however it is compared."""

from __future__ import annotations

from cellplane_platform_support import Platform, event

from cellplane.dockerapi import streams, views
from cellplane.services import docker_resources


def _running(plat: Platform) -> str:
    r = plat.create_cell("web", labels={"a": "b"})
    assert r.status_code == 202, r.text
    cid = str(r.json()["entity"]["id"])
    plat.schedule()
    return cid


def test_the_state_view_agrees_with_the_whole_view(plat: Platform) -> None:
    cid = _running(plat)
    first = docker_resources.state_view(plat.svc, cid)
    assert first is not None
    assert first["labels"] == {"a": "b"} and first["name"] == "web"
    assert views.docker_state(first) == views.docker_state(plat.cell(cid)) == "created"
    plat.report(
        {
            "cell_id": cid,
            "state": "RUNNING",
            "container_id": "c0ffee",
            "events": [event("created", "c0ffee"), event("started")],
        }
    )
    now = docker_resources.state_view(plat.svc, cid)
    assert now is not None
    assert views.docker_state(now) == views.docker_state(plat.cell(cid)) == "running"
    assert streams.ran_since(first, now) and not streams.ran_since(now, now)
    plat.report({"cell_id": cid, "state": "EXITED", "exit_code": 3})
    ended = docker_resources.state_view(plat.svc, cid)
    assert ended is not None and ended["exit_code"] == 3
    assert views.docker_state(ended) == views.docker_state(plat.cell(cid)) == "exited"
    assert streams.ran_since(first, ended) and not streams.ran_since(now, ended)


def test_a_cell_that_is_gone_has_no_state_view(plat: Platform) -> None:
    assert docker_resources.state_view(plat.svc, "cel-nothere") is None
