"""The portal's forms, read into the API's request models (pure: no I/O).

A form field maps to one field of the request body (`CellCreate`, `QuotaLimits`); the errors,
whether the form's own (not a number, a malformed line) or the model's (pydantic) or the
service's (`ValidationFailed` with field paths such as ``ports.0.container_port``), come back
keyed by the form field they belong to, so the page shows each next to its input.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from cellplane.errors import FieldError
from cellplane.services.quotas import QuotaLimits
from cellplane.services.schemas import CellCreate

__all__ = ["CELL_FIELDS", "FormErrors", "cell_body", "field_of", "quota_body"]

#: Form fields of the cell wizard, in page order.
CELL_FIELDS = (
    "name",
    "image",
    "flavor",
    "cpu",
    "memory_mb",
    "command",
    "env",
    "ports",
    "volumes",
    "restart",
    "max_retries",
)
_BODY_TO_FORM = {"restart": "restart", "labels": "name", "entrypoint": "command"}

FormErrors = dict[str, list[str]]


class _Errors:
    def __init__(self) -> None:
        self.by_field: FormErrors = {}

    def add(self, field: str, message: str) -> None:
        self.by_field.setdefault(field, []).append(message)


def field_of(path: str, known: tuple[str, ...] = CELL_FIELDS) -> str:
    """The form field of a body path: ``ports.0.container_port`` -> ``ports``,
    ``restart.max_retries`` -> ``max_retries``; unknown paths go to the form as a whole ("")."""
    parts = path.split(".")
    if parts[0] == "restart" and len(parts) > 1 and parts[1] == "max_retries":
        return "max_retries"
    head = _BODY_TO_FORM.get(parts[0], parts[0])
    return head if head in known else ""


def errors_of(errors: list[FieldError], known: tuple[str, ...] = CELL_FIELDS) -> FormErrors:
    out = _Errors()
    for e in errors:
        out.add(field_of(e.field, known), e.message)
    return out.by_field


def _pydantic(exc: ValidationError, known: tuple[str, ...]) -> FormErrors:
    out = _Errors()
    for err in exc.errors():
        path = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        out.add(field_of(path, known), msg)
    return out.by_field


def _number(raw: str, field: str, errors: _Errors, kind: type[int] | type[float]) -> Any:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        errors.add(field, "must be a whole number" if kind is int else "must be a number")
        return None


def _lines(raw: str) -> list[tuple[int, str]]:
    return [(i, line.strip()) for i, line in enumerate(raw.splitlines(), 1) if line.strip()]


def _env(raw: str, errors: _Errors) -> dict[str, str]:
    env: dict[str, str] = {}
    for n, line in _lines(raw):
        key, sep, value = line.partition("=")
        if not sep or not key:
            errors.add("env", f"line {n}: {line!r} is not KEY=value")
        else:
            env[key] = value
    return env


def _ports(raw: str, errors: _Errors) -> list[dict[str, Any]]:
    """Lines of ``[host:]container[/tcp|udp]``."""
    ports: list[dict[str, Any]] = []
    for n, line in _lines(raw):
        spec, _, proto = line.partition("/")
        host, sep, container = spec.rpartition(":")
        try:
            port: dict[str, Any] = {"container_port": int(container)}
            if sep:
                port["host_port"] = int(host)
        except ValueError:
            errors.add("ports", f"line {n}: {line!r} is not [host:]container[/tcp|udp]")
            continue
        if proto:
            port["protocol"] = proto
        ports.append(port)
    return ports


def _volumes(raw: str, errors: _Errors) -> list[dict[str, Any]]:
    """Lines of ``volume:/path[:ro]``."""
    mounts: list[dict[str, Any]] = []
    for n, line in _lines(raw):
        parts = line.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            errors.add("volumes", f"line {n}: {line!r} is not volume:/path[:ro]")
            continue
        mounts.append({"volume": parts[0], "path": parts[1], "read_only": parts[2:] == ["ro"]})
    return mounts


def cell_body(form: Mapping[str, str]) -> tuple[CellCreate | None, FormErrors]:
    """The `CellCreate` of the wizard's form, or the errors by form field."""
    errors = _Errors()
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "image": form.get("image", "").strip(),
    }
    if flavor := form.get("flavor", "").strip():
        body["flavor"] = flavor
    cpu = _number(form.get("cpu", ""), "cpu", errors, float)
    if cpu is not None:
        body["cpu"] = cpu
    memory = _number(form.get("memory_mb", ""), "memory_mb", errors, int)
    if memory is not None:
        body["memory_mb"] = memory
    if command := form.get("command", "").strip():
        try:
            body["command"] = shlex.split(command)
        except ValueError as exc:
            errors.add("command", f"cannot split into arguments: {exc}")
    body["env"] = _env(form.get("env", ""), errors)
    body["ports"] = _ports(form.get("ports", ""), errors)
    body["volumes"] = _volumes(form.get("volumes", ""), errors)
    restart: dict[str, Any] = {"policy": form.get("restart", "never") or "never"}
    retries = _number(form.get("max_retries", ""), "max_retries", errors, int)
    if retries is not None:
        restart["max_retries"] = retries
    body["restart"] = restart
    if errors.by_field:
        return None, errors.by_field
    try:
        return CellCreate.model_validate(body), {}
    except ValidationError as exc:
        return None, _pydantic(exc, CELL_FIELDS)


QUOTA_FIELDS = ("cpu", "memory_mb", "disk_gb", "cells", "volumes_gb")


def quota_body(form: Mapping[str, str]) -> tuple[QuotaLimits | None, FormErrors]:
    """The `QuotaLimits` of the quota form (an empty field: no limit)."""
    errors = _Errors()
    limits: dict[str, Any] = {}
    for f in QUOTA_FIELDS:
        limits[f] = _number(form.get(f, ""), f, errors, float if f == "cpu" else int)
    if errors.by_field:
        return None, errors.by_field
    try:
        return QuotaLimits.model_validate(limits), {}
    except ValidationError as exc:
        return None, _pydantic(exc, QUOTA_FIELDS)
