"""Compose's labels on the networks and volumes it makes, and the names it gave them, kept by the
server process.

Compose (v2 above all) finds its networks and volumes again by their `com.docker.compose.*`
labels (`project`, `network`, `volume`, ...) and by the name it asked for (`proj_front`), while a
Cellplane network or volume carries no labels and is named by a DNS label (`proj-front`). What
Compose gave at create is kept here, per project and Cellplane name, and put back into the
resource's Docker view (its `Labels` and `Name`), so Compose's own lookups (inspect by name, list
by label) find what it made. Only Compose's labels are kept; any other label is refused at
create, as before. Kept in memory: a server restart forgets them (then Compose sees the network
or volume as made outside Compose, warns, and uses it; `down` leaves such ones to `docker
network rm`/`volume rm`), as the events journal forgets removals.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Final

__all__ = ["COMPOSE_PREFIX", "decorate", "forget", "remember"]

COMPOSE_PREFIX: Final = "com.docker.compose."
_LIMIT: Final = 10_000

_lock = threading.Lock()
_kept: OrderedDict[tuple[str, str, str], tuple[str, dict[str, str]]] = OrderedDict()


def remember(project_id: str, kind: str, name: str, given: str, labels: dict[str, Any]) -> None:
    """What Compose gave a new `kind` ("network", "volume") called `name` in Cellplane: the
    name it asked for and its own labels (nothing is kept for a create without them)."""
    own = {str(k): str(v) for k, v in labels.items() if str(k).startswith(COMPOSE_PREFIX)}
    if not own and given == name:
        return
    with _lock:
        _kept[(project_id, kind, name)] = (given, own)
        _kept.move_to_end((project_id, kind, name))
        while len(_kept) > _LIMIT:
            _kept.popitem(last=False)


def forget(project_id: str, kind: str, name: str) -> None:
    with _lock:
        _kept.pop((project_id, kind, name), None)


def decorate(view: dict[str, Any], project_id: str, kind: str, name: str) -> dict[str, Any]:
    """`view` (a Docker view of the Cellplane `kind` called `name`) with the name and labels
    Compose gave it, when it made it."""
    with _lock:
        kept = _kept.get((project_id, kind, name))
    if kept is None:
        return view
    given, labels = kept
    return {**view, "Name": given, "Labels": {**(view.get("Labels") or {}), **labels}}
