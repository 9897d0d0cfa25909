"""Default locations. Kept apart from `settings` so the agent need not import pydantic (~17 MB)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["default_data_dir"]


def default_data_dir() -> Path:
    import platformdirs  # here: a daemon given --data-dir never loads it (~0.4 MB resident)

    return Path(platformdirs.user_data_dir("cellplane"))
