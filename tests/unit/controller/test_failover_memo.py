"""`services.failover_memo`: which DOWN hosts' cells failover reads (pure: marks and ids in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cellplane.services.failover_memo import DownMark, FailoverMemo

T0 = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)


def _mark(revision: int = 5, beat_s: float = 0.0, revoked: datetime | None = None) -> DownMark:
    return DownMark(revision, T0 + timedelta(seconds=beat_s), revoked)


def test_a_down_host_is_read_once_per_transition() -> None:
    memo = FailoverMemo()
    down = {"h1": _mark(), "h2": _mark(revision=9)}
    assert memo.to_read(down) == ["h1", "h2"]
    memo.read("h1", down["h1"])
    memo.read("h2", down["h2"])
    for _ in range(3):  # later passes, the same hosts DOWN and unchanged: nothing to read
        assert memo.to_read(dict(down)) == []


def test_a_host_read_is_only_skipped_once_it_was_read() -> None:
    memo = FailoverMemo()
    down = {"h1": _mark(), "h2": _mark()}
    assert memo.to_read(down) == ["h1", "h2"]
    memo.read("h1", down["h1"])  # h2's transaction did not commit: it is read again
    assert memo.to_read(down) == ["h2"]


def test_a_change_of_the_host_is_read_again() -> None:
    memo = FailoverMemo()
    memo.read("h1", _mark(revision=5))
    assert memo.to_read({"h1": _mark(revision=6)}) == ["h1"]  # a cell came, left or stopped
    memo.read("h1", _mark(revision=6))
    revoked = T0 + timedelta(seconds=30)
    assert memo.to_read({"h1": _mark(revision=6, revoked=revoked)}) == ["h1"]


def test_a_host_back_and_down_again_is_a_new_transition() -> None:
    memo = FailoverMemo()
    memo.read("h1", _mark())
    memo.read("h2", _mark())
    assert memo.to_read({"h2": _mark()}) == []  # h1 is READY again: forgotten
    assert "h1" not in memo and len(memo) == 1
    # h1 DOWN again with the same revision and last beat (a lost beat buffer, a clock): read.
    assert memo.to_read({"h1": _mark(), "h2": _mark()}) == ["h1"]


def test_the_order_is_by_host_id() -> None:
    memo = FailoverMemo()
    assert memo.to_read({"hc": _mark(), "ha": _mark(), "hb": _mark()}) == ["ha", "hb", "hc"]
