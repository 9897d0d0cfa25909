"""Tasks: get, watch (SSE with polling fallback), wait. A part of `cellplane.client.Client`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx

from cellplane.client._base import AMBIGUOUS_ERRORS, BaseClient, JSONDict, seg
from cellplane.client.errors import CellplaneConnectionError, CellplaneTimeoutError
from cellplane.client.sse import iter_sse

__all__ = ["TERMINAL_TASK_STATES", "TasksApi"]

TERMINAL_TASK_STATES = frozenset({"COMPLETED", "ERROR"})


class TasksApi(BaseClient):
    """The task routes of the API."""

    def get_task(self, task_id: str) -> JSONDict:
        return self._json("GET", f"/v1/tasks/{seg(task_id)}")

    def list_tasks(self, project: str = "default", *, limit: int = 20) -> list[JSONDict]:
        """The project's most recent tasks, newest first."""
        page = self._page(f"/v1/projects/{seg(project)}/tasks", [], limit, None)
        return list(page["items"])

    def watch_task(self, task_id: str, *, timeout: float | None = None) -> Iterator[JSONDict]:
        """Yield the task each time it changes, ending after a terminal state.

        Reads the SSE stream; if the stream breaks or ends early the task is
        fetched and the stream reopened, so a restarting server costs nothing
        but a reconnect. Raises CellplaneTimeoutError after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: JSONDict | None = None
        failures = 0

        def remaining() -> float | None:
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise CellplaneTimeoutError(
                    "Timed out", f"task {task_id} not finished after {timeout:g} s"
                )
            return left

        while True:
            left = remaining()
            read = self._timeout if left is None else min(self._timeout, left)
            try:
                with self._stream(
                    f"/v1/tasks/{task_id}/events",
                    headers={"Accept": "text/event-stream"},
                    timeout=httpx.Timeout(self._timeout, read=read),
                ) as response:

                    def lines() -> Iterator[str]:
                        # Keep-alive comments reset the read timeout: check the deadline per line.
                        for line in response.iter_lines():
                            remaining()
                            yield line

                    for event in iter_sse(lines()):
                        if event.event not in ("task", "message"):
                            continue
                        try:
                            task = json.loads(event.data)
                        except ValueError:
                            continue  # The fetch after the stream still reports the truth.
                        if not isinstance(task, dict):
                            continue
                        failures = 0
                        if task != last:
                            last = task
                            yield task
                        if task.get("state") in TERMINAL_TASK_STATES:
                            return
                        remaining()
            except httpx.ReadTimeout:
                pass  # Quiet stream: poll below, then listen again.
            except AMBIGUOUS_ERRORS as exc:
                failures += 1
                if failures > self._retries:
                    raise CellplaneConnectionError(
                        "Connection failed", f"watching task {task_id}: {exc}"
                    ) from exc
            task = self.get_task(task_id)
            if task != last:
                last = task
                yield task
            if task.get("state") in TERMINAL_TASK_STATES:
                return
            left = remaining()
            pause = self._delay(min(failures, 4), None)
            time.sleep(pause if left is None else min(pause, left))

    def wait_task(self, task_id: str, timeout: float | None = 300.0) -> JSONDict:
        """Block until the task is COMPLETED or ERROR and return it (it does not raise on ERROR)."""
        last: JSONDict | None = None
        for task in self.watch_task(task_id, timeout=timeout):
            last = task
        if last is None:  # pragma: no cover - watch_task always yields before returning
            last = self.get_task(task_id)
        return last
