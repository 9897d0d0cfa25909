"""What the integration tests share to name things and wait for them: unique names, a bounded
poll (`wait_for`), a task's end (`finish`), and a cell command that stops at once.

Bounded polls, not the SDK's waits: a test must fail with what it saw after its timeout, never
hang the run (`Client.wait_task` follows an event stream whose keep-alives reset its timer).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from cellplane.client import Client

__all__ = ["SLEEP", "finish", "unique", "wait_for"]

T = TypeVar("T")

#: A cell command that runs until stopped and exits 0 at once on SIGTERM (a shell as PID 1
#: ignores TERM otherwise, and every stop would wait out its timeout).
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]

_TERMINAL = ("COMPLETED", "ERROR")


def unique(stem: str) -> str:
    """A DNS-label name (cell, volume, network, project) that no other test uses."""
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def wait_for(
    check: Callable[[], T | None], timeout: float = 60.0, what: str = "", interval: float = 0.2
) -> T:
    """Call `check` until it returns something truthy and return that; after `timeout` seconds
    fail with an AssertionError naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what or check}: {last!r}"
            )
        time.sleep(interval)


def finish(client: Client, task_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll a task until it is COMPLETED or ERROR and return it; fail naming its steps."""
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        last.clear()
        last.update(client.get_task(task_id))
        return dict(last) if last["state"] in _TERMINAL else None

    try:
        return wait_for(check, timeout, f"task {task_id} to finish", interval=0.1)
    except AssertionError:
        steps = [(s["name"], s["state"]) for s in last.get("steps") or []]
        raise AssertionError(
            f"task {task_id} ({last.get('kind')}) still {last.get('state')} after {timeout:g} s: "
            f"steps {steps}"
        ) from None
