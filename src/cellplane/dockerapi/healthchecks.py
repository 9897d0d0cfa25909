"""Docker's healthchecks as a cell's `healthcheck`, and the cell's `health` as Docker shows it.

Pure: no I/O. A docker create's `Config.Healthcheck` (`--health-cmd`, `--health-interval`,
`--health-timeout`, `--health-retries`, `--health-start-period`; Compose's `healthcheck:`) is the
cell's check, which its host's agent runs (`agent.health`); `inspect` reports it back in
`Config.Healthcheck` and its outcome in `State.Health`, `docker ps` in its STATUS column
("Up 3 minutes (healthy)") and in the `health` filter.

The image's HEALTHCHECK is the container's check unless the create says otherwise, merged as
dockerd merges them (`merged`): no `Healthcheck` in the create takes the image's; one without a
test takes the image's test, and each of its durations and retries left 0 the image's;
`--no-healthcheck` (test NONE) runs none. What differs from dockerd: `--health-start-interval` is
refused, and a check runs at most every 100 ms.
"""

from __future__ import annotations

from typing import Any

from cellplane.dockerapi.refusal import Refused

__all__ = [
    "HEALTH_FILTERS",
    "config_healthcheck",
    "health_of",
    "healthcheck_fields",
    "merged",
    "ps_suffix",
    "status_of",
]

#: The values of `docker ps --filter health=`.
HEALTH_FILTERS = frozenset({"starting", "healthy", "unhealthy", "none"})
_NS = 1_000_000_000
# dockerd's defaults for a field given as 0.
_DEFAULTS = {"Interval": 30.0, "Timeout": 30.0, "StartPeriod": 0.0}
_OPTIONS = {
    "Interval": ("--health-interval", "interval_s"),
    "Timeout": ("--health-timeout", "timeout_s"),
    "StartPeriod": ("--health-start-period", "start_period_s"),
}
_MIN_S = 0.1
_MAX_S = 86400.0


def healthcheck_fields(raw: Any) -> dict[str, Any] | None:
    """The cell's `healthcheck` for a create body's `Config.Healthcheck` (None: no check, also
    for `--no-healthcheck` and for an empty test, which in dockerd means the image's)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise Refused(400, "Healthcheck must be a JSON object")
    test = raw.get("Test") or []
    if not isinstance(test, list) or not all(isinstance(t, str) for t in test):
        raise Refused(400, "Healthcheck.Test must be a list of strings")
    if not test or test == ["NONE"]:
        return None
    kind, args = test[0], test[1:]
    if kind == "CMD-SHELL":
        if len(args) != 1 or not args[0]:
            raise Refused(400, "--health-cmd: CMD-SHELL takes one command string")
        fields: dict[str, Any] = {"command": args, "shell": True}
    elif kind == "CMD":
        if not args or not args[0]:
            raise Refused(400, "--health-cmd: CMD needs a program to run")
        fields = {"command": args, "shell": False}
    else:
        raise Refused(400, f"Healthcheck.Test: unknown type {kind!r} (CMD, CMD-SHELL or NONE)")
    if raw.get("StartInterval"):
        raise Refused(400, "--health-start-interval is not supported on this endpoint yet")
    for key, (option, field) in _OPTIONS.items():
        fields[field] = _seconds(raw.get(key), option, _DEFAULTS[key], key == "StartPeriod")
    retries = raw.get("Retries") or 0
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 1000:
        raise Refused(400, "--health-retries: a whole number from 0 (the default, 3) to 1000")
    fields["retries"] = retries or 3
    return fields


def merged(given: Any, image: Any) -> Any:
    """The create's `Healthcheck` completed by the image's (dockerd's merge of a container's
    config with its image's); `given` as it is when the image has none or it is not an object
    (`healthcheck_fields` judges it)."""
    if not isinstance(image, dict):
        return given
    if given is None:
        return dict(image)
    if not isinstance(given, dict):
        return given
    out = dict(given)
    if not out.get("Test"):
        out["Test"] = image.get("Test")
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
        if not out.get(key) and image.get(key):
            out[key] = image[key]
    return out


def _seconds(value: Any, option: str, default: float, zero_ok: bool) -> float:
    if value is None or value == 0:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Refused(400, f"{option}: a duration in nanoseconds, not {value!r}")
    seconds = value / _NS
    if not (_MIN_S <= seconds <= _MAX_S or (zero_ok and seconds <= _MAX_S)):
        raise Refused(400, f"{option} {seconds:g}s: must be between 100ms and 24h on this endpoint")
    return seconds


def config_healthcheck(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """The cell's check as `Config.Healthcheck` (durations in nanoseconds)."""
    if not check:
        return None
    kind = "CMD-SHELL" if check.get("shell") else "CMD"
    return {
        "Test": [kind, *check["command"]],
        "Interval": round(check["interval_s"] * _NS),
        "Timeout": round(check["timeout_s"] * _NS),
        "StartPeriod": round(check["start_period_s"] * _NS),
        "Retries": check["retries"],
    }


def health_of(cell: dict[str, Any], running: bool) -> dict[str, Any] | None:
    """`State.Health`: what the agent reported; `starting` for a running cell it has not yet
    reported on; None for a cell without a check (or one that never ran with it)."""
    if not cell.get("healthcheck"):
        return None
    health = cell.get("health")
    if not health:
        return {"Status": "starting", "FailingStreak": 0, "Log": []} if running else None
    return {
        "Status": health["status"],
        "FailingStreak": health.get("failing_streak", 0),
        "Log": [
            {
                "Start": p["start"],
                "End": p["end"],
                "ExitCode": p["exit_code"],
                "Output": p.get("output", ""),
            }
            for p in health.get("log") or []
        ],
    }


def status_of(cell: dict[str, Any]) -> str:
    """The cell's health for `--filter health=`: starting | healthy | unhealthy | none."""
    if not cell.get("healthcheck"):
        return "none"
    return str((cell.get("health") or {}).get("status") or "starting")


def ps_suffix(cell: dict[str, Any]) -> str:
    """What `docker ps` adds to a running container's STATUS: " (healthy)", " (unhealthy)",
    " (health: starting)", or nothing."""
    status = status_of(cell)
    if status == "none":
        return ""
    return " (health: starting)" if status == "starting" else f" ({status})"
