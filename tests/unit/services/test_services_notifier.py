"""The server's `Notifier`: waiters wake on a publish, a version is never given twice, and it
keeps a bounded number of topics (the soak in `bench/load.py` showed one kept per task before)."""

from __future__ import annotations

import asyncio

from cellplane.services.context import Notifier


def test_a_waiter_wakes_on_a_publish_and_sees_the_new_version() -> None:
    async def scenario() -> tuple[int, int]:
        n = Notifier()
        n.bind(asyncio.get_running_loop())
        seen = n.version("task:1")
        waiting = asyncio.create_task(n.wait("task:1", seen, timeout=5))
        await asyncio.sleep(0)
        n.publish("task:1")
        return seen, await waiting

    seen, now = asyncio.run(scenario())
    assert seen == 0 and now > seen


def test_a_waiter_that_times_out_leaves_nothing_behind() -> None:
    async def scenario() -> Notifier:
        n = Notifier()
        n.bind(asyncio.get_running_loop())
        assert await n.wait("task:quiet", 0, timeout=0.01) == 0
        return n

    n = asyncio.run(scenario())
    assert n._events == {}
    assert n.version("task:quiet") == 0 and "task:quiet" not in n._versions


def test_versions_are_never_given_twice_across_topics() -> None:
    n = Notifier()
    n.publish("a")
    n.publish("b")
    n.publish("a")
    assert (n.version("a"), n.version("b")) == (3, 2)


def test_only_the_most_recently_published_topics_are_kept() -> None:
    n = Notifier()
    n.MAX_TOPICS = 3
    for i in range(10):
        n.publish(f"task:{i}")
    n.publish("task:7")  # published again: the most recent
    assert list(n._versions) == ["task:8", "task:9", "task:7"]
    # A forgotten topic reads 0: a waiter that had seen its old version returns at once.
    assert n.version("task:0") == 0

    async def stale_waiter() -> int:
        return await n.wait("task:0", 1, timeout=5)

    assert asyncio.run(stale_waiter()) == 0
