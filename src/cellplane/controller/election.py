"""The leader election's state machine, pure: what a replica does after each look at its lock.

`cellplane.controller.leader` feeds it observations (did this replica get or keep the
PostgreSQL advisory lock, which epoch does the database hold) and carries out the action it
returns: start the controllers under a new epoch, stop them, or nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Action", "Election", "Observation", "Role"]


class Role(enum.StrEnum):
    FOLLOWER = "follower"
    LEADER = "leader"


class Action(enum.StrEnum):
    NONE = "none"
    #: Got the lock: bump the epoch (a takeover), then start the controllers under it.
    TAKE_OVER = "take_over"
    #: Lost the lock or fenced out: stop the controllers, release the lock.
    STEP_DOWN = "step_down"


@dataclass(frozen=True)
class Observation:
    """One look: ``holds_lock`` (the lock is this replica's now, on its live connection) and
    ``db_epoch`` (the epoch the database holds; None when it could not be read)."""

    holds_lock: bool
    db_epoch: int | None = None


@dataclass
class Election:
    """A replica's role and, while it leads, the epoch it took."""

    role: Role = Role.FOLLOWER
    epoch: int | None = None

    def observe(self, seen: Observation) -> Action:
        """The action for this observation; the role changes with it (``took`` completes a
        takeover once the new epoch is known)."""
        if self.role is Role.FOLLOWER:
            return Action.TAKE_OVER if seen.holds_lock else Action.NONE
        if not seen.holds_lock:
            self._follow()
            return Action.STEP_DOWN
        if seen.db_epoch is not None and seen.db_epoch != self.epoch:
            self._follow()  # another replica bumped the epoch: this one is fenced out
            return Action.STEP_DOWN
        return Action.NONE

    def took(self, epoch: int) -> None:
        """The takeover committed ``epoch``: this replica leads under it."""
        if epoch < 1:
            raise ValueError(f"an epoch starts at 1, not {epoch}")
        self.role = Role.LEADER
        self.epoch = epoch

    def failed(self) -> None:
        """The takeover could not commit its epoch: stay a follower (the lock is released)."""
        self._follow()

    def _follow(self) -> None:
        self.role = Role.FOLLOWER
        self.epoch = None

    @property
    def leading(self) -> bool:
        return self.role is Role.LEADER
