"""The status reports' group commit (`services.status_batch.StatusCombiner`), with threads."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from cellplane.services.status_batch import StatusCombiner


class Recorder:
    """An `apply` that records its batches; the first call waits for `release`."""

    def __init__(self, bad: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.bad = bad
        self._lock = threading.Lock()

    def __call__(self, items: Sequence[str]) -> None:
        with self._lock:
            first = not self.batches and not self.entered.is_set()
            self.entered.set()
        if first:
            assert self.release.wait(30)
        if self.bad in items:
            raise LookupError(f"{self.bad} does not exist")
        with self._lock:
            self.batches.append(list(items))


def _waiting(c: StatusCombiner, n: int) -> bool:
    with c._cv:
        return len(c._queue) >= n


def test_reports_arriving_during_a_write_are_written_together_once_each() -> None:
    c = StatusCombiner()
    rec = Recorder()
    with ThreadPoolExecutor(12) as pool:
        first = pool.submit(c.submit, "r0", rec)
        assert rec.entered.wait(30)
        rest = [pool.submit(c.submit, f"r{i}", rec) for i in range(1, 11)]
        while not _waiting(c, 10):
            threading.Event().wait(0.01)
        rec.release.set()
        for f in [first, *rest]:
            f.result(30)
    assert rec.batches[0] == ["r0"]
    assert sorted(x for b in rec.batches for x in b) == sorted(f"r{i}" for i in range(11))
    assert len(rec.batches) == 2 and c.batches == 2  # the ten waiting ones in one transaction


def test_a_bad_report_fails_alone_and_the_others_are_written() -> None:
    c = StatusCombiner()
    rec = Recorder(bad="r3")
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(c.submit, "r0", rec)
        assert rec.entered.wait(30)
        rest = {i: pool.submit(c.submit, f"r{i}", rec) for i in range(1, 6)}
        while not _waiting(c, 5):
            threading.Event().wait(0.01)
        rec.release.set()
        first.result(30)
        with pytest.raises(LookupError, match="r3 does not exist"):
            rest[3].result(30)
        for i in (1, 2, 4, 5):
            rest[i].result(30)
    written = sorted(x for b in rec.batches for x in b)
    assert written == ["r0", "r1", "r2", "r4", "r5"]


def test_a_batch_is_bounded() -> None:
    c = StatusCombiner(max_batch=3)
    rec = Recorder()
    with ThreadPoolExecutor(10) as pool:
        first = pool.submit(c.submit, "r0", rec)
        assert rec.entered.wait(30)
        rest = [pool.submit(c.submit, f"r{i}", rec) for i in range(1, 8)]
        while not _waiting(c, 7):
            threading.Event().wait(0.01)
        rec.release.set()
        for f in [first, *rest]:
            f.result(30)
    assert max(len(b) for b in rec.batches) == 3
    assert sorted(x for b in rec.batches for x in b) == sorted(f"r{i}" for i in range(8))
    with pytest.raises(ValueError, match="max_batch"):
        StatusCombiner(max_batch=0)
