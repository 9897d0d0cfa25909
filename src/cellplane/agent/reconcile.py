"""The agent's pure reconcile: (desired cells, observed containers, memory, now) -> actions.

No I/O, no clock: `runner` gathers the inputs and executes the actions. The rules:
- a cell that should run and has no container gets one (CREATE), unless a volume it mounts is
  not on this host yet (`pending_volumes`): it waits, as no container starts without its data;
  a cell that should only be made (desired CREATED, `docker create`) gets its container the same
  way, not started, and is then left alone until its start;
- a container that exited is restarted per the cell's restart policy, with exponential backoff:
  `never` leaves it exited, `on-failure` restarts a non-zero exit up to `max_retries` times,
  `always` restarts any exit;
- a container that vanished behind our back (`podman rm -f`) is a failure of the cell, judged by
  the same policy: `always` recreates it; `on-failure` recreates it while retries are left (the
  recreation counts as one); `never` (or `on-failure` out of retries) ends the cell (END: the
  runner confirms by name that the container is gone and reports the cell FAILED, or EXITED if it
  had already exited, with a `container-removed` event). An ended cell is not brought back until
  someone starts it again (a restart request newer than the end);
- a container started before the cell's last restart request is restarted;
- a cell that should be stopped is stopped; a deleted cell's container is removed;
- containers carrying this host's label that no cell claims are removed (only after a full sync);
- a container created for an older generation of its cell's assignment (the cell moved away and
  came back, or was failed over) is stale: removed (REMOVE_ORPHAN), then created anew;
- a running container that matches is adopted, whatever happened to the agent: its CPU and
  memory limits are set again (LIMIT; a start runs without its CPU quota, set right after), and
  nothing else is done to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cellplane.drivers.base import ContainerInfo
from cellplane.wire.agent_plain import CellAssignment

__all__ = [
    "BACKOFF_CAP_S",
    "BACKOFF_START_S",
    "GENERATION_LABEL",
    "Action",
    "Memory",
    "backoff",
    "is_ended",
    "observed_state",
    "parse_time",
    "reconcile",
]

BACKOFF_START_S = 0.5
BACKOFF_CAP_S = 30.0
GENERATION_LABEL = "cellplane.generation"  # the same as agent.spec's (this module is pure)
# A container that ran at least this long before exiting resets the backoff.
STABLE_S = 10.0


@dataclass(frozen=True)
class Action:
    kind: str  # CREATE | START | RESTART | LIMIT | STOP | REMOVE | REMOVE_ORPHAN | END
    cell_id: str
    container_id: str | None = None
    reason: str = ""


@dataclass
class Memory:
    """What the agent remembers between passes (lost on restart, which is safe)."""

    seen_container: set[str] = field(default_factory=set)  # cells we have seen a container for
    last_running: dict[str, bool] = field(default_factory=dict)
    # Consecutive passes that saw the container stopped: a forced removal kills the container
    # first, so one sighting of an exit just before it vanished proves nothing.
    exited_passes: dict[str, int] = field(default_factory=dict)
    last_exit: dict[str, int | None] = field(default_factory=dict)  # exit code when last exited
    # Cells that ended (their container vanished and the policy keeps them down), with the
    # restart request that was current then: only a newer one brings them back.
    ended: dict[str, str | None] = field(default_factory=dict)
    next_restart_at: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # consecutive quick failures
    # After an action failed: not before this time, and how many failed in a row.
    retry_at: dict[str, float] = field(default_factory=dict)
    action_failures: dict[str, int] = field(default_factory=dict)
    # Running containers whose CPU and memory limits are not known to be set (cell -> container
    # id): adopted ones (an agent that died between a start and its limits) and those whose
    # limits failed and could not be stopped. They get a LIMIT action.
    unlimited: dict[str, str] = field(default_factory=dict)

    def action_failed(self, cell_id: str, now: float) -> float:
        n = self.action_failures.get(cell_id, 0)
        self.action_failures[cell_id] = n + 1
        self.retry_at[cell_id] = now + backoff(n)
        return self.retry_at[cell_id]

    def action_succeeded(self, cell_id: str) -> None:
        self.action_failures.pop(cell_id, None)
        self.retry_at.pop(cell_id, None)

    def forget(self, cell_id: str) -> None:
        """Everything about a cell that is gone from this host (removed for good)."""
        self.seen_container.discard(cell_id)
        for remembered in (
            self.last_running,
            self.exited_passes,
            self.last_exit,
            self.ended,
            self.next_restart_at,
            self.failures,
            self.retry_at,
            self.action_failures,
            self.unlimited,
        ):
            remembered.pop(cell_id, None)


def backoff(failures: int) -> float:
    return float(min(BACKOFF_CAP_S, BACKOFF_START_S * (2 ** max(0, failures))))


def parse_time(value: str | None) -> float | None:
    """Engine RFC 3339 timestamps (nanoseconds, 'Z') to unix seconds; None when unknown."""
    if not value or value.startswith("0001-01-01"):
        return None
    v = value.replace("Z", "+00:00")
    # Python parses at most microseconds: trim the fraction to 6 digits.
    if "." in v:
        head, _, rest = v.partition(".")
        frac = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        tz = rest[len(frac) :]
        v = f"{head}.{frac[:6]}{tz}"
    try:
        return datetime.fromisoformat(v).timestamp()
    except ValueError:
        return None


def _wants_restart(cell: CellAssignment, info: ContainerInfo) -> bool:
    policy = cell.restart.policy
    if policy == "always":
        return True
    if policy == "on-failure" and (info.exit_code or 0) != 0:
        limit = cell.restart.max_retries
        return limit is None or cell.restarts < limit
    return False


def is_ended(cell: CellAssignment, memory: Memory) -> bool:
    """Whether the cell ended for good and no start request came after (see the module rules).

    This agent's memory decides for cells it ended itself; after an agent restart the server's
    `ended_at` (set from the END report) does, compared with the cell's last restart request.
    """
    requested = cell.restart_requested_at
    if cell.cell_id in memory.ended:
        return memory.ended[cell.cell_id] == requested
    ended_at = parse_time(cell.ended_at)
    if ended_at is None:
        return False
    asked = parse_time(requested)
    return asked is None or asked <= ended_at


def _on_vanish(cell: CellAssignment, memory: Memory) -> Action:
    """What a cell's restart policy makes of a container removed behind our back."""
    cell_id = cell.cell_id
    policy = cell.restart.policy
    # Seen stopped on two passes: it had exited by itself (a forced removal kills first, and a
    # listing caught in between shows the kill once).
    had_exited = memory.exited_passes.get(cell_id, 0) >= 2
    end = Action("END", cell_id, None, "exited" if had_exited else "removed")
    recreate = Action("CREATE", cell_id, None, "recreated")
    if policy == "always":
        return recreate
    if policy == "on-failure":
        if had_exited and memory.last_exit.get(cell_id) == 0:
            return end  # it had finished successfully: nothing to retry
        limit = cell.restart.max_retries
        if limit is not None and cell.restarts >= limit:
            return end
        return recreate
    return end


def is_stale(cell: CellAssignment, info: ContainerInfo) -> bool:
    """Whether `info` was created for an older generation of `cell` (no label: generation 1)."""
    raw = info.labels.get(GENERATION_LABEL, "1")
    try:
        return int(raw) < cell.generation
    except ValueError:
        return True


def observed_state(cell: CellAssignment, info: ContainerInfo | None) -> str:
    desired = cell.desired_state
    if info is None:
        return {
            "RUNNING": "CREATING",
            "CREATED": "CREATING",
            "STOPPED": "STOPPED",
            "DELETED": "DELETING",
        }[desired]
    if info.running:
        if info.state == "paused" and desired in ("RUNNING", "CREATED"):
            return "PAUSED"  # frozen (`docker pause`): it runs on once thawed
        return {
            "RUNNING": "RUNNING",
            "CREATED": "RUNNING",  # started while this assignment was read
            "STOPPED": "STOPPING",
            "DELETED": "DELETING",
        }[desired]
    if desired == "DELETED":
        return "DELETING"
    if info.state == "created":
        return {"STOPPED": "STOPPED", "CREATED": "CREATED"}.get(desired, "STARTING")
    if desired == "STOPPED":
        return "STOPPED"
    return "EXITED"


def reconcile(
    desired: dict[str, CellAssignment],
    observed: dict[str, ContainerInfo],
    orphans: list[ContainerInfo],
    memory: Memory,
    now: float,
    *,
    full_sync: bool,
    busy: frozenset[str] = frozenset(),
) -> list[Action]:
    """Actions that move the host toward `desired`. Cells in `busy` have an action in flight."""
    actions: list[Action] = []
    for cell_id, cell in desired.items():
        if cell_id in busy or memory.retry_at.get(cell_id, 0.0) > now:
            continue
        info = observed.get(cell_id)
        want = cell.desired_state
        if info is not None and is_stale(cell, info):
            # Fencing: it ran here for an assignment that has ended; never adopt it.
            memory.seen_container.discard(cell_id)
            memory.unlimited.pop(cell_id, None)
            actions.append(
                Action("REMOVE_ORPHAN", cell_id, info.id, f"stale generation of {cell_id}")
            )
            continue
        if info is not None:
            if info.running and cell_id not in memory.seen_container:
                memory.unlimited[cell_id] = info.id  # adopted: its limits are not known
            memory.seen_container.add(cell_id)
        if want == "DELETED":
            actions.append(Action("REMOVE", cell_id, info.id if info else None, "cell deleted"))
            continue
        if info is None:
            if want not in ("RUNNING", "CREATED") or is_ended(cell, memory):
                continue
            if cell.pending_volumes:
                continue  # never without its mounts (the runner reports what it waits for)
            if cell_id in memory.ended:
                # Started again after it ended: a new run, not a recreation.
                memory.ended.pop(cell_id, None)
                memory.seen_container.discard(cell_id)
                memory.exited_passes.pop(cell_id, None)
            if cell_id in memory.seen_container:
                actions.append(_on_vanish(cell, memory))
            else:
                actions.append(Action("CREATE", cell_id, None, "created"))
            continue
        memory.ended.pop(cell_id, None)
        memory.last_running[cell_id] = info.running
        memory.exited_passes[cell_id] = (
            0 if info.running else memory.exited_passes.get(cell_id, 0) + 1
        )
        if not info.running:
            memory.last_exit[cell_id] = info.exit_code
        if want == "STOPPED":
            if info.running:
                actions.append(Action("STOP", cell_id, info.id, "stop requested"))
            continue
        if want == "CREATED":
            continue  # made and waiting for its start (`docker create`): left as it is
        # want RUNNING
        requested = parse_time(cell.restart_requested_at)
        started = parse_time(info.started_at)
        # An unknown start time is never taken for an old one: adopting a container must not
        # restart it (the runner inspects containers whose start time it needs).
        if requested is not None and started is not None and started < requested:
            actions.append(Action("RESTART", cell_id, info.id, "restart requested"))
            continue
        if info.running:
            memory.next_restart_at.pop(cell_id, None)
            if memory.unlimited.get(cell_id) == info.id:
                actions.append(Action("LIMIT", cell_id, info.id, "limits not confirmed"))
            continue
        if info.state == "created":
            actions.append(Action("START", cell_id, info.id, "start"))
            continue
        # exited while it should run: the restart policy decides
        if not _wants_restart(cell, info):
            continue
        at = memory.next_restart_at.get(cell_id)
        if at is None:
            finished = parse_time(info.finished_at)
            ran = (finished - started) if (finished and started) else 0.0
            if ran >= STABLE_S:
                memory.failures[cell_id] = 0
            at = now + backoff(memory.failures.get(cell_id, 0))
            memory.next_restart_at[cell_id] = at
        if now >= at:
            memory.next_restart_at.pop(cell_id, None)
            memory.failures[cell_id] = memory.failures.get(cell_id, 0) + 1
            actions.append(
                Action("START", cell_id, info.id, f"restarted after exit code {info.exit_code}")
            )
    if full_sync:
        for info in orphans:
            cid = info.labels.get("cellplane.cell", "")
            if cid not in desired and cid not in busy:
                actions.append(Action("REMOVE_ORPHAN", cid, info.id, "no cell claims it"))
    return actions
