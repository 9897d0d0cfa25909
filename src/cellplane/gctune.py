"""The server's cyclic garbage collector thresholds (its own process, never the machine's).

With Python's defaults (700, 10, 10) a server holding ~400,000 tracked objects (1,000 agents'
connections and long polls, the ORM's and FastAPI's own) ran a full collection every ~1.3 s, each
200-290 ms with the GIL held: a fifth of the server's time, and the ~300 ms stalls of the list
pages' p99 (docs/scale.md, part 6). `CELLPLANE_GC_THRESHOLD` sets the three thresholds
(`gc.set_threshold`); the default, 50,000 allocations for a young collection and 20 and 100
collections for the older generations, made full collections rare in the same run. Python's
own rule that a full collection waits until the long-lived objects grew by a quarter still holds.
`default` keeps the interpreter's thresholds.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping
from typing import Final

__all__ = ["DEFAULT_THRESHOLD", "GC_ENV", "apply", "parse"]

GC_ENV: Final = "CELLPLANE_GC_THRESHOLD"
DEFAULT_THRESHOLD: Final = (50_000, 20, 100)


def parse(text: str | None) -> tuple[int, int, int] | None:
    """The thresholds `text` names (None: keep the interpreter's); ValueError naming the
    problem."""
    if text is None or not text.strip():
        return DEFAULT_THRESHOLD
    if text.strip() == "default":
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(
            f"{GC_ENV} must be three whole numbers such as '50000,20,100', or 'default'; "
            f"not {text!r}"
        )
    first, second, third = (int(p) for p in parts)
    if first < 1:
        raise ValueError(
            f"{GC_ENV}: the first threshold must be at least 1 (0 turns collection off)"
        )
    return first, second, third


def apply(environ: Mapping[str, str] = os.environ) -> tuple[int, int, int]:
    """Set the thresholds from `environ`; returns the ones in force."""
    chosen = parse(environ.get(GC_ENV))
    if chosen is not None:
        gc.set_threshold(*chosen)
    first, second, third = gc.get_threshold()
    return first, second, third
