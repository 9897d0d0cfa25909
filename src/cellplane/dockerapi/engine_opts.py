"""`--cap-drop`, `--add-host`, `--tmpfs`, `--stop-signal`, `--init`, `--group-add` and `--ulimit`
on a Docker endpoint: checked into
the cell's reserved labels (`wire.engine_options`) at create, shown back by `inspect`."""

from __future__ import annotations

import signal
from typing import Any

from cellplane.dockerapi.extras_views import kill_signal
from cellplane.dockerapi.refusal import Refused
from cellplane.wire import engine_options as eo

__all__ = ["option_labels", "option_views"]

_MAX_LABEL = 253  # a cell label's value (services.schemas.MAX_LABEL)
_OPTION = {
    eo.CAP_DROP_LABEL: "--cap-drop",
    eo.EXTRA_HOSTS_LABEL: "--add-host",
    eo.TMPFS_LABEL: "--tmpfs",
    eo.STOP_SIGNAL_LABEL: "--stop-signal",
    eo.INIT_LABEL: "--init",
    eo.GROUP_ADD_LABEL: "--group-add",
    eo.ULIMITS_LABEL: "--ulimit",
}


def option_labels(body: dict[str, Any], host: dict[str, Any]) -> dict[str, str]:
    """The labels that carry the options of a create's body; 400 naming a bad one."""
    try:
        opts = eo.EngineOptions(
            cap_drop=eo.parse_cap_drop(_entries(host.get("CapDrop"), "--cap-drop")),
            extra_hosts=eo.parse_extra_hosts(_entries(host.get("ExtraHosts"), "--add-host")),
            tmpfs=eo.parse_tmpfs(host.get("Tmpfs") or {}),
            stop_signal=_stop_signal(body.get("StopSignal")),
            init=_flag(host.get("Init"), "--init"),
            group_add=eo.parse_group_add(_entries(host.get("GroupAdd"), "--group-add")),
            ulimits=eo.parse_ulimits(_entries(host.get("Ulimits"), "--ulimit")),
        )
    except ValueError as exc:
        raise Refused(400, str(exc)) from None
    labels = eo.to_labels(opts)
    for key, value in labels.items():
        if len(value) > _MAX_LABEL:
            raise Refused(400, f"{_OPTION[key]}: too many entries for this endpoint")
    return labels


def _entries(value: object, option: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{option}: a list is expected")
    return value


def _flag(value: object, option: str) -> bool:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{option}: true or false is expected")
    return bool(value)


def _stop_signal(raw: object) -> str | None:
    """The signal `docker stop` sends first, by its name (None: SIGTERM, the default)."""
    if raw in (None, ""):
        return None
    if not isinstance(raw, str):
        raise ValueError("--stop-signal: a signal name or number is expected")
    number = kill_signal(raw)  # Docker's 400, `Invalid signal: X`
    if number == signal.SIGTERM:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal without a name of its own
        return str(number)


def option_views(labels: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What `inspect` shows of them: (HostConfig's part, Config's part)."""
    try:
        opts = eo.from_labels(labels)
    except ValueError:
        opts = eo.EngineOptions()
    host: dict[str, Any] = {
        "CapDrop": list(opts.cap_drop) or None,
        "ExtraHosts": [f"{name}:{address}" for name, address in opts.extra_hosts] or None,
    }
    if opts.tmpfs:
        host["Tmpfs"] = dict(opts.tmpfs)
    if opts.init:
        host["Init"] = True
    host["GroupAdd"] = list(opts.group_add) or None
    host["Ulimits"] = [{"Name": n, "Soft": s, "Hard": h} for n, s, h in opts.ulimits] or None
    config = {"StopSignal": opts.stop_signal} if opts.stop_signal else {}
    return host, config
