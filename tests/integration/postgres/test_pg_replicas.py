"""Server replicas on one PostgreSQL: one leader runs the controllers; kill -9 it and another
takes over; a leader paused (SIGSTOP) loses the lock, and its controllers cannot commit after
the takeover (fencing by the leadership epoch).

The fence itself is shown on the database without processes first (a controller transaction
of an old epoch is rolled back, its write absent); then two replicas with one agent and real
containers.
"""

from __future__ import annotations

import contextlib
import contextvars
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from cellplane.client import Client
from cellplane.ids import utcnow
from cellplane.state.db import Database, migrate
from cellplane.state.leadership import FencedOut, bump_epoch, fenced
from cellplane.state.models import Setting
from cellplane.testing.replicas import Replicas
from cellplane.testing.waits import SLEEP, finish, unique, wait_for

from .conftest import IMAGE, PostgresServer

pytestmark = pytest.mark.integration

SMALL = {"cpu": 0.05, "memory_mb": 32}


def test_a_controller_commit_of_a_stale_epoch_is_rolled_back(pg: PostgresServer) -> None:
    url = pg.create_database("fence")
    migrate(url)
    old, new = Database(url, strict=False), Database(url, strict=False)

    def take_over(holder: str) -> int:
        with new.connection() as conn:
            return bump_epoch(conn, holder, utcnow())

    try:
        first = take_over("replica-a")
        with fenced(first), old.session() as s:  # the leader of `first` writes: committed
            s.add(Setting(key="fence-ok", value="1"))
        stale = pytest.raises(FencedOut, match=f"epoch {first} is stale")
        with stale, fenced(first), old.session() as s:
            s.add(Setting(key="fence-stale", value="1"))
            s.flush()
            # another replica (outside this leader's context) takes over meanwhile
            assert contextvars.Context().run(take_over, "replica-b") == first + 1
        with new.reader() as s:
            keys = set(s.scalars(select(Setting.key)))
            assert "fence-ok" in keys
            assert "fence-stale" not in keys
            row = s.execute(text("SELECT epoch, holder FROM leadership")).one()
            assert tuple(row) == (first + 1, "replica-b")
    finally:
        old.dispose()
        new.dispose()


@contextlib.contextmanager
def _replicas(pg: PostgresServer, archive: Path, *, agent_on_leader: bool) -> Iterator[Replicas]:
    r = Replicas(pg.create_database("replicas"), count=2)
    try:
        r.start(agent=False)
        leader = _one_leader(r, {0, 1})
        r.start_agent(leader if agent_on_leader else 1 - leader)
        with r.client() as c:
            c.upload_image(IMAGE, archive)
        yield r
    finally:
        r.close()


def _one_leader(r: Replicas, among: set[int], timeout: float = 30.0) -> int:
    def check() -> int | None:
        leading = [i for i in r.leading() if i in among]
        return leading[0] + 1 if len(leading) == 1 else None

    return wait_for(check, timeout, f"one leader among {among}") - 1


def _run_cell(c: Client, name: str) -> str:
    task = c.create_cell("default", name, IMAGE, command=SLEEP, **SMALL)  # type: ignore[arg-type]
    done = finish(c, task["id"], timeout=60)
    assert done["state"] == "COMPLETED", done
    cell = c.get_cell(task["entity"]["id"])
    assert cell["state"] == "RUNNING", cell
    return str(cell["id"])


def _scheduled_events(c: Client, cell_id: str) -> int:
    events = c.get_cell(cell_id).get("events") or []
    return sum(1 for e in events if e.get("type") == "scheduled")


def test_kill_the_leader_and_the_other_replica_takes_over(
    pg: PostgresServer, busybox_archive: Path
) -> None:
    # The agent talks to the leader: the kill moves it to the other replica too.
    with _replicas(pg, busybox_archive, agent_on_leader=True) as r:
        _kill_and_take_over(r)


def _kill_and_take_over(r: Replicas) -> None:
    leader = _one_leader(r, {0, 1})
    other = 1 - leader
    before = r.leader(other)
    assert before["leader"] == f"replica-{leader}" and before["leading"] is False
    metrics = httpx.get(f"{r.urls[leader]}/metrics", timeout=10).text
    assert "cellplane_leader 1.0" in metrics
    r.kill(leader)
    assert _one_leader(r, {other}) == other
    after = r.leader(other)
    assert after["leader"] == f"replica-{other}"
    assert int(after["epoch"]) > int(before["epoch"])  # type: ignore[call-overload]
    with r.client() as c:  # the killed replica is first in the list for one of the two
        cell_id = _run_cell(c, unique("after-kill"))
        assert _scheduled_events(c, cell_id) == 1
        c.delete_cell(cell_id)


def test_a_paused_leader_is_fenced_out_and_steps_down(
    pg: PostgresServer, busybox_archive: Path
) -> None:
    # The agent talks to replica 1: a paused server would hold its requests until they time out.
    with _replicas(pg, busybox_archive, agent_on_leader=False) as r:
        _pause_and_resume(r)


def _pause_and_resume(r: Replicas) -> None:
    leader = _one_leader(r, {0, 1})
    other = 1 - leader
    epoch = int(r.leader(other)["epoch"])  # type: ignore[call-overload]
    r.signal(leader, signal.SIGSTOP)
    try:
        # PostgreSQL ends the silent leader's session (its lock transaction idles out)
        assert _one_leader(r, {other}, timeout=40) == other
        assert int(r.leader(other)["epoch"]) == epoch + 1  # type: ignore[call-overload]
        with Client(r.urls[other], r.token) as c:  # placed by the new leader
            cell_id = _run_cell(c, unique("while-paused"))
    finally:
        r.signal(leader, signal.SIGCONT)
    # The old leader wakes up believing it leads; its lock is gone and its epoch stale: it
    # stops its controllers and says so; nothing it had under way committed twice.
    wait_for(lambda: r.leader(leader)["leading"] is False, 30, "the resumed replica to step down")
    assert r.leading() == [other]
    assert r.leader(leader)["leader"] == f"replica-{other}"
    metrics = httpx.get(f"{r.urls[leader]}/metrics", timeout=10).text
    assert "cellplane_leader 0.0" in metrics
    with Client(r.urls[leader], r.token) as c:  # the resumed replica still serves the API
        assert c.get_cell(cell_id)["state"] == "RUNNING"
        assert _scheduled_events(c, cell_id) == 1
        c.delete_cell(cell_id)
