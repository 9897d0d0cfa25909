"""A `--rm` container is removed only once the attaches relaying its output are done (as
dockerd does): `streams.attached` counts them, `_attaches_done` waits."""

from __future__ import annotations

import asyncio
import contextlib

from cellplane.dockerapi import streams


def test_a_removal_waits_for_the_attaches_of_its_container() -> None:
    async def scenario() -> None:
        outer = contextlib.ExitStack()  # an attach that outlives the next one
        outer.enter_context(streams.attached("cel-a"))
        with streams.attached("cel-a"):  # two attaches of one container
            waiting = asyncio.create_task(streams._attaches_done("cel-a", 5.0))
            await asyncio.sleep(0.15)
            assert not waiting.done()
        await asyncio.sleep(0.15)
        assert not waiting.done()  # one attach still relays
        outer.close()
        await asyncio.wait_for(waiting, 1.0)
        assert "cel-a" not in streams._ATTACHED
        # Another container's attach is not waited for.
        with streams.attached("cel-b"):
            await asyncio.wait_for(streams._attaches_done("cel-a", 5.0), 0.5)

    asyncio.run(scenario())


def test_a_removal_waits_no_longer_than_its_bound() -> None:
    async def scenario() -> float:
        with streams.attached("cel-c"):
            loop = asyncio.get_running_loop()
            t = loop.time()
            await streams._attaches_done("cel-c", 0.2)
            return loop.time() - t

    took = asyncio.run(scenario())
    assert 0.2 <= took < 5.0  # the bound, not the attach, ends the wait
    assert "cel-c" not in streams._ATTACHED
