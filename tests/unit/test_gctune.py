"""The server's garbage collector thresholds (`cellplane.gctune`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cellplane import gctune


@pytest.fixture
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_no_setting_is_the_default_and_default_keeps_the_interpreters() -> None:
    assert gctune.parse(None) == gctune.parse("") == gctune.DEFAULT_THRESHOLD
    assert gctune.parse("default") is None
    assert gctune.parse(" 1000, 5 ,7 ") == (1000, 5, 7)


@pytest.mark.parametrize("bad", ["50000,20", "a,b,c", "-1,10,10", "0,10,10", "1,2,3,4", "1.5,2,3"])
def test_a_bad_setting_is_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(ValueError, match=gctune.GC_ENV):
        gctune.parse(bad)


def test_apply_sets_the_thresholds_in_force(restored: None) -> None:
    gc.set_threshold(700, 10, 10)
    assert gctune.apply({}) == gctune.DEFAULT_THRESHOLD == gc.get_threshold()
    assert gctune.apply({gctune.GC_ENV: "900,11,12"}) == (900, 11, 12)
    assert gctune.apply({gctune.GC_ENV: "default"}) == (900, 11, 12)  # left as it was
