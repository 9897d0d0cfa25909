"""A service's cells admitted and placed as one batch (`services.cell_batch`), in-process."""

from __future__ import annotations

from collections import Counter

from cellplane_platform_support import Platform
from sqlalchemy import select

from cellplane.state.models import Cell, CellEvent, Host, Task

BASE = "/v1/projects/default/services"
TEMPLATE = {"image": "host", "command": ["sleep", "3600"], "cpu": 0.05, "memory_mb": 16}


def _create(plat: Platform, instances: int, template: dict[str, object] = TEMPLATE) -> int:
    body = {"name": "web", "template": template, "instances": instances}
    r = plat.client.post(BASE, json=body, headers=plat.admin)
    return r.status_code


def test_a_batch_is_placed_spread_addressed_and_announced_in_one_change(plat: Platform) -> None:
    others = [plat.register_host(f"host-{i}")[0] for i in (2, 3, 4)]
    with plat.svc.db.reader() as s:
        revs = dict(s.execute(select(Host.id, Host.revision)).all())
    assert _create(plat, 40) == 202
    with plat.svc.db.reader() as s:
        cells = [
            (c.name, c.state, c.host_id, c.host_rev, c.network_address, c.task_id)
            for c in s.scalars(select(Cell))
        ]
        events = Counter(e.type for e in s.scalars(select(CellEvent)))
        tasks = Counter(t.kind for t in s.scalars(select(Task)))
        after = dict(s.execute(select(Host.id, Host.revision)).all())
    assert sorted(c[0] for c in cells) == sorted(f"web-{i}" for i in range(1, 41))
    assert {c[1] for c in cells} == {"SCHEDULED"}
    # Spread by the soft anti-affinity: 10 on each of the 4 hosts, each host's revision bumped
    # once, and every cell stamped with it (the agents' deltas carry them).
    assert Counter(c[2] for c in cells) == {h: 10 for h in [plat.host_id, *others]}
    assert all(after[h] == revs[h] + 1 for h in after)
    assert all(c[3] == after[c[2]] for c in cells)
    addresses = {c[4] for c in cells}
    assert len(addresses) == 40 and None not in addresses
    assert events == {"accepted": 40, "scheduled": 40}
    assert tasks == {"CREATE_SERVICE": 1} and {c[5] for c in cells} == {None}
    # What an agent gets: its ten, in a delta from the revision before.
    delta = plat.assignments(revision=revs[plat.host_id])
    assert delta["full"] is False and len(delta["cells"]) == 10


def test_cells_that_do_not_fit_wait_pending_and_none_fitting_is_refused(plat: Platform) -> None:
    with plat.svc.db.reader() as s:
        host = s.get(Host, plat.host_id)
        assert host is not None
        cpu = host.cpu
    big = {**TEMPLATE, "cpu": cpu / 3}
    assert _create(plat, 5, big) == 202
    with plat.svc.db.reader() as s:
        rows = s.execute(select(Cell.state, Cell.message)).all()
    states = Counter(state for state, _ in rows)
    messages = {message for state, message in rows if state == "PENDING"}
    # As many as the host holds are placed (2 or 3, with what the host reserves); the others wait.
    assert states["SCHEDULED"] >= 2 and states["PENDING"] >= 1 and sum(states.values()) == 5
    assert len(messages) == 1 and "cpu" in str(messages.pop())
    r = plat.client.post(
        BASE,
        json={"name": "huge", "template": {**TEMPLATE, "cpu": cpu * 2}, "instances": 3},
        headers=plat.admin,
    )
    assert r.status_code == 409 and "cpu" in r.json()["detail"], r.text
    with plat.svc.db.reader() as s:
        assert not s.scalars(select(Cell.id).where(Cell.name.like("huge-%"))).all()
