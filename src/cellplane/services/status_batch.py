"""Agents' status reports of many hosts applied in one write transaction (group commit).

With many hosts, a placement of a few hundred cells wakes hundreds of long polls, and each host
answers with a status report of one or two cells: one write transaction each, queued on the
database's single write lock (bench/scale.py, 1,000 hosts: half of the server's thread samples
were reports waiting for it). Here the reports that arrive while one is being applied wait
together, and the next of them applies them all in one transaction (`StatusCombiner.submit`):
the caller's report is written when `submit` returns, as before, and its error (a host that
does not exist) is its own. If the shared transaction fails as a whole, each report of it is
applied again alone, so one bad report never costs the others theirs.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

__all__ = ["MAX_BATCH", "StatusCombiner"]

#: The most reports applied in one transaction (a bound on how long the write lock is held).
MAX_BATCH: Final = 256

J = TypeVar("J")


@dataclasses.dataclass
class _Job:
    item: Any
    done: bool = False
    error: BaseException | None = None


class StatusCombiner:
    """Callers `submit` a report and an `apply(items)` that writes a list of them in one
    transaction (every caller passes the same function: whichever caller applies a batch uses
    its own); one caller at a time applies, the others' reports join the next batch."""

    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.max_batch = max_batch
        self._cv = threading.Condition()
        self._queue: list[_Job] = []
        self._busy = False
        self.batches = 0  # transactions applied (for tests and the curious)

    def submit(self, item: J, apply: Callable[[Sequence[J]], None]) -> None:
        """Apply `item` with others (in one call of `apply`) or alone; returns once it is
        written, raises its own error."""
        job = _Job(item)
        with self._cv:
            self._queue.append(job)
            while not job.done and self._busy:
                self._cv.wait()
            if job.done:
                if job.error is not None:
                    raise job.error
                return
            self._busy = True
            # This caller's report and the oldest others, up to a batch; the rest wait.
            others = [j for j in self._queue if j is not job]
            batch = [job, *others[: self.max_batch - 1]]
            self._queue = others[self.max_batch - 1 :]
        try:
            self._apply(batch, apply)
        finally:
            with self._cv:
                self._busy = False
                self.batches += 1
                for j in batch:
                    j.done = True
                self._cv.notify_all()
        if job.error is not None:
            raise job.error

    @staticmethod
    def _apply(batch: list[_Job], apply: Callable[[Sequence[Any]], None]) -> None:
        try:
            apply([j.item for j in batch])
            return
        except Exception:
            if len(batch) == 1:
                raise
        for j in batch:  # the shared transaction failed: each alone, each its own outcome
            try:
                apply([j.item])
            except Exception as e:
                j.error = e
