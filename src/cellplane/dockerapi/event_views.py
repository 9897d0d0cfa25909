"""Docker events from what Cellplane records: a cell's tasks (create, start, restart, stop,
delete, and how a run ended) and its last exit, as Docker's event objects; `since`/`until` and
the `filters` of `GET /events`. Pure: no I/O, no state.

Tasks outlive their cells, so a removed container's events are still there; its name and image
are known only while the cell exists (or when the caller remembered them).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from cellplane.dockerapi.mapping import Refused
from cellplane.dockerapi.views import decode_filters, docker_id

__all__ = [
    "Event",
    "cell_events",
    "event_matches",
    "parse_event_filters",
    "parse_event_time",
    "resource_event",
    "to_ns",
]

#: One event: (time in ns, Docker's event object).
Event = tuple[int, dict[str, Any]]
_FILTERS = {"type", "container", "event", "label", "volume", "network", "image"}
_TYPES = {"container", "volume", "network", "image", "daemon", "plugin", "service", "node"}
_SAME_EXIT_NS = 5_000_000_000
_PREFIXED = {"health_status", "exec_create", "exec_start"}
_EXITED = re.compile(r"exited with code (-?\d+)")


def parse_event_time(raw: str | None, what: str) -> datetime | None:
    """`since`/`until` as Docker clients send them: Unix seconds (`1700000000.123456789`) or
    RFC 3339."""
    if raw is None or raw == "":
        return None
    if re.fullmatch(r"\d{1,12}(\.\d{1,9})?", raw):
        secs, _, frac = raw.partition(".")
        ns = int(secs) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))
        return datetime.fromtimestamp(ns / 1e9, UTC)
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Refused(
            400, f"invalid value for {what!r}: {raw!r} (Unix seconds or RFC 3339)"
        ) from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_event_filters(raw: str | None) -> dict[str, list[str]]:
    out = decode_filters(raw, _FILTERS, " for events")
    bad = [v for v in out.get("type", []) if v not in _TYPES]
    if bad:
        raise Refused(400, f"invalid filter 'type={bad[0]}'")
    return out


def to_ns(iso: str | None) -> int | None:
    if not iso:
        return None
    t = datetime.fromisoformat(iso)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def _container(ns: int, action: str, cell_id: str, info: dict[str, Any], **extra: str) -> Event:
    cid = docker_id(cell_id)
    attrs = {str(k): str(v) for k, v in (info.get("labels") or {}).items()}
    attrs.update({"image": info.get("image") or "", "name": info.get("name") or "", **extra})
    return ns, {
        "status": action,
        "id": cid,
        "from": attrs["image"],
        "Type": "container",
        "Action": action,
        "Actor": {"ID": cid, "Attributes": attrs},
        "scope": "local",
        "time": ns // 1_000_000_000,
        "timeNano": ns,
    }


def _step(task: dict[str, Any], name: str) -> dict[str, Any] | None:
    for st in task.get("steps") or []:
        if st.get("name") == name:
            return dict(st)
    return None


def _done(task: dict[str, Any], name: str) -> int | None:
    st = _step(task, name)
    if st is None or st.get("state") != "COMPLETED":
        return None
    return to_ns(st.get("finished_at"))


def _exit_of(task: dict[str, Any]) -> tuple[int, int] | None:
    """(when, code) if the task ended with its cell's run (`exited with code N` on a step,
    the running one mostly)."""
    for st in reversed(task.get("steps") or []):
        for text in (st.get("message"), st.get("error")):
            m = _EXITED.search(str(text or ""))
            at = to_ns(st.get("finished_at"))
            if m and at is not None:
                return at, int(m.group(1))
    return None


def cell_events(
    tasks: list[dict[str, Any]],
    cells: dict[str, dict[str, Any]],
    remembered: dict[str, Any],
    health: list[dict[str, Any]] | None = None,
) -> list[Event]:
    """Container events of a project's cell tasks (`docker_resources.cell_tasks`), of its
    cells' last exits (`docker_resources.cells_named`) and of their new health statuses
    (`docker_resources.health_events`: `health_status: healthy`...); names and images from the
    cells, else from `remembered` (cell id -> the same fields). Time ordered, each event once."""
    found: dict[tuple[str, str, int], Event] = {}

    def add(ns: int | None, action: str, cell_id: str, **extra: str) -> None:
        if ns is None:
            return
        info = cells.get(cell_id) or remembered.get(cell_id) or {}
        found.setdefault((cell_id, action, ns), _container(ns, action, cell_id, info, **extra))

    for t in tasks:
        cell_id, kind = t["cell_id"], t["kind"]
        if kind == "CREATE_CELL":
            add(to_ns(t["created_at"]), "create", cell_id)
        if kind in ("CREATE_CELL", "START_CELL", "RESTART_CELL"):
            add(_done(t, "START"), "start", cell_id)
            if kind == "RESTART_CELL":
                add(_done(t, "START"), "restart", cell_id)
        if kind == "STOP_CELL":
            at = _done(t, "STOP")
            code = (cells.get(cell_id) or {}).get("exit_code")
            add(at, "die", cell_id, **({"exitCode": str(code)} if code is not None else {}))
            add(at, "stop", cell_id)
        if kind == "DELETE_CELL":
            add(_done(t, "DELETE"), "destroy", cell_id)
        ended = _exit_of(t)
        if ended is not None:
            add(ended[0], "die", cell_id, exitCode=str(ended[1]))
    for h in health or []:
        add(to_ns(h["at"]), f"health_status: {h['status']}", h["cell_id"])
    dies: dict[str, list[int]] = {}
    for cell_id, action, at in found:
        if action == "die":
            dies.setdefault(cell_id, []).append(at)
    # A cell's last exit: of the cell, else as remembered before it was removed.
    for cell_id, info in {**remembered, **cells}.items():
        at = to_ns(info.get("ended_at"))
        # The same exit, seen by a task as the agent timed it: the cell's time is the server's.
        if at is not None and not any(abs(at - d) < _SAME_EXIT_NS for d in dies.get(cell_id, [])):
            code = info.get("exit_code")
            add(at, "die", cell_id, **({"exitCode": str(code)} if code is not None else {}))
    return sorted(found.values(), key=lambda e: e[0])


def resource_event(ns: int, kind: str, action: str, actor: str, attrs: dict[str, str]) -> Event:
    """A volume or network event (`actor`: the volume's name, the network's Docker id)."""
    return ns, {
        "Type": kind,
        "Action": action,
        "Actor": {"ID": actor, "Attributes": dict(attrs)},
        "scope": "local",
        "time": ns // 1_000_000_000,
        "timeNano": ns,
    }


def _event_is(action: str, wanted: str) -> bool:
    """dockerd's rule: `health_status` (`exec_create`, `exec_start`) also finds the actions
    that go on after a colon (`health_status: healthy`); other names must be the action."""
    return action == wanted or (wanted in _PREFIXED and action.startswith(wanted + ":"))


def event_matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    kind, attrs = event["Type"], event["Actor"]["Attributes"]
    actor = event["Actor"]["ID"]
    if "type" in filters and kind not in filters["type"]:
        return False
    if "event" in filters and not any(_event_is(event["Action"], f) for f in filters["event"]):
        return False
    for key in ("container", "volume", "network", "image"):
        if key not in filters:
            continue
        if key == "image":
            if kind != "container" or attrs.get("image") not in filters["image"]:
                return False
            continue
        if kind != key:
            return False
        name = attrs.get("name") or (actor if kind == "volume" else "")
        if not any(f == name or (len(f) >= 1 and actor.startswith(f)) for f in filters[key]):
            return False
    for item in filters.get("label", []):
        k, sep, v = item.partition("=")
        if k not in attrs or (sep and attrs[k] != v):
            return False
    return True
