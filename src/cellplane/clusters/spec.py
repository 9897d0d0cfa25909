"""Cluster specs in Serengeti's two JSON forms, normalised into one model.

The clusters service parses what users send (the CLI/REST camelCase form,
``nodeGroups[...]``), the catalog parses the server template form
(``groups[...]`` with snake_case keys), and both land in :class:`ClusterSpec`.
The planner only ever sees :class:`ClusterSpec`. Keys Serengeti knows but
Cellplane does not use (``vmFolderPath``, ``rpNames``, ``splitPolicy``...) are
kept as extra fields so that :func:`export_spec` gives them back.

Validation problems become :class:`~cellplane.clusters.errors.SpecError` with
one :class:`~cellplane.clusters.errors.FieldIssue` per bad field, paths written
in the form the user sent (``nodeGroups[1].instanceNum`` or
``groups[1].instance_num``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from cellplane.clusters import jsonc
from cellplane.clusters.errors import FieldIssue, SpecError

__all__ = [
    "OVERRIDABLE_FIELDS",
    "ClusterSpec",
    "GroupAssociation",
    "GroupRacks",
    "NodeGroupSpec",
    "PlacementPolicies",
    "StorageSpec",
    "apply_overrides",
    "export_spec",
    "load_spec_file",
    "parse_spec",
]

# Group names become part of hostnames (<cluster>-<group>-<n>), so they must be DNS-safe.
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_STORAGE_TYPES = frozenset({"SHARED", "LOCAL", "TEMPFS"})
_ASSOCIATION_TYPES = frozenset({"STRICT", "WEAK"})
_RACK_POLICIES = frozenset({"ROUNDROBIN", "SAMERACK"})
_HA_FLAGS = frozenset({"on", "off", "ft"})

OVERRIDABLE_FIELDS = ("instanceType", "cpuNum", "memCapacityMB", "instanceNum")

_MODEL_CONFIG = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


def _upper_choice(value: str | None, allowed: frozenset[str]) -> str | None:
    if value is None:
        return None
    norm = value.strip().upper()
    if norm not in allowed:
        raise ValueError(f"must be one of {', '.join(sorted(allowed))}, not {value!r}")
    return norm


class StorageSpec(BaseModel):
    """``storage``: where a node's disk lives and how big it is."""

    model_config = _MODEL_CONFIG

    type: str | None = None
    size_gb: int | None = Field(default=None, alias="sizeGB", ge=0)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str | None) -> str | None:
        return _upper_choice(value, _STORAGE_TYPES)


class GroupAssociation(BaseModel):
    """``groupAssociations[]``: place this group's nodes next to another group's."""

    model_config = _MODEL_CONFIG

    reference: str
    type: str = "WEAK"

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        result = _upper_choice(value, _ASSOCIATION_TYPES)
        assert result is not None
        return result


class GroupRacks(BaseModel):
    """``groupRacks``: spread nodes round-robin over racks, or keep them in one rack."""

    model_config = _MODEL_CONFIG

    type: str = "ROUNDROBIN"
    racks: tuple[str, ...] | None = None

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        result = _upper_choice(value, _RACK_POLICIES)
        assert result is not None
        return result


class PlacementPolicies(BaseModel):
    """``placementPolicies`` of a node group."""

    model_config = _MODEL_CONFIG

    instance_per_host: int | None = Field(default=None, alias="instancePerHost", ge=1)
    group_associations: tuple[GroupAssociation, ...] | None = Field(
        default=None, alias="groupAssociations"
    )
    group_racks: GroupRacks | None = Field(default=None, alias="groupRacks")


class NodeGroupSpec(BaseModel):
    """One ``nodeGroups[]`` entry: a set of identical nodes running the same roles."""

    model_config = _MODEL_CONFIG

    name: str
    roles: tuple[str, ...] = Field(min_length=1)
    instance_num: int = Field(alias="instanceNum", ge=0)
    instance_type: str | None = Field(default=None, alias="instanceType")
    cpu_num: int | None = Field(default=None, alias="cpuNum", ge=1)
    mem_capacity_mb: int | None = Field(default=None, alias="memCapacityMB", ge=1)
    storage: StorageSpec | None = None
    ha_flag: str | None = Field(default=None, alias="haFlag")
    placement_policies: PlacementPolicies | None = Field(default=None, alias="placementPolicies")
    configuration: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError("must be 1-63 letters, digits or '-', not starting or ending with '-'")
        return value

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists a role twice")
        if any(not role.strip() for role in value):
            raise ValueError("role names must not be empty")
        return value

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str | None) -> str | None:
        return None if value is None else value.strip().upper()

    @field_validator("ha_flag")
    @classmethod
    def _ha(cls, value: str | None) -> str | None:
        if value is None:
            return None
        norm = value.strip().lower()
        if norm not in _HA_FLAGS:
            raise ValueError(f"must be one of on, off, ft, not {value!r}")
        return norm


class ClusterSpec(BaseModel):
    """A whole cluster spec, whatever form it was written in."""

    model_config = _MODEL_CONFIG

    name: str | None = None
    distro: str | None = None
    node_groups: tuple[NodeGroupSpec, ...] = Field(alias="nodeGroups", min_length=1)
    configuration: dict[str, Any] | None = None

    def group(self, name: str) -> NodeGroupSpec:
        """The node group called `name`; KeyError if there is none."""
        for group in self.node_groups:
            if group.name == name:
                return group
        raise KeyError(name)


# Server template form (snake_case) -> CLI form (camelCase), per nesting level.
_TEMPLATE_CLUSTER_KEYS = {"groups": "nodeGroups"}
_TEMPLATE_GROUP_KEYS = {
    "instance_num": "instanceNum",
    "instance_type": "instanceType",
    "cpu_num": "cpuNum",
    "mem_capacity_mb": "memCapacityMB",
    "ha": "haFlag",
    "placement_policies": "placementPolicies",
}
_TEMPLATE_STORAGE_KEYS = {"size_gb": "sizeGB"}
_TEMPLATE_POLICY_KEYS = {
    "instance_per_host": "instancePerHost",
    "group_associations": "groupAssociations",
    "group_racks": "groupRacks",
}


def _rename(data: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    return {keys.get(k, k): v for k, v in data.items()}


def _from_template(data: Mapping[str, Any]) -> dict[str, Any]:
    out = _rename(data, _TEMPLATE_CLUSTER_KEYS)
    groups = out.get("nodeGroups")
    if isinstance(groups, list):
        converted: list[Any] = []
        for group in groups:
            if isinstance(group, Mapping):
                g = _rename(group, _TEMPLATE_GROUP_KEYS)
                if isinstance(g.get("storage"), Mapping):
                    g["storage"] = _rename(g["storage"], _TEMPLATE_STORAGE_KEYS)
                if isinstance(g.get("placementPolicies"), Mapping):
                    g["placementPolicies"] = _rename(g["placementPolicies"], _TEMPLATE_POLICY_KEYS)
                converted.append(g)
            else:
                converted.append(group)
        out["nodeGroups"] = converted
    return out


def _template_path_key(key: str, depth_keys: Mapping[str, str]) -> str:
    reverse = {v: k for k, v in depth_keys.items()}
    return reverse.get(key, key)


def _format_loc(loc: tuple[int | str, ...], template: bool) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        key = item
        if template:
            if i == 0:
                key = _template_path_key(key, _TEMPLATE_CLUSTER_KEYS)
            elif i == 2 and loc[0] == "nodeGroups":
                key = _template_path_key(key, _TEMPLATE_GROUP_KEYS)
            elif i == 3 and loc[2] == "storage":
                key = _template_path_key(key, _TEMPLATE_STORAGE_KEYS)
            elif i == 3 and loc[2] == "placementPolicies":
                key = _template_path_key(key, _TEMPLATE_POLICY_KEYS)
        parts.append(f".{key}" if parts else key)
    return "".join(parts)


def _message(err: ErrorDetails) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "missing":
        return "is required"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][:1].lower() + err["msg"][1:]


def _issues(exc: ValidationError, template: bool) -> list[FieldIssue]:
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]

    def shadowed(err: ErrorDetails) -> bool:
        # pydantic also reports a list as too short when its items failed; the
        # item errors are the real ones.
        loc = tuple(err["loc"])
        return err["type"] == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in locs
        )

    return [
        FieldIssue(_format_loc(tuple(e["loc"]), template), _message(e))
        for e in errors
        if not shadowed(e)
    ]


def _cross_check(spec: ClusterSpec, template: bool) -> list[FieldIssue]:
    groups_key = "groups" if template else "nodeGroups"
    policies_key = "placement_policies" if template else "placementPolicies"
    assoc_key = "group_associations" if template else "groupAssociations"
    issues: list[FieldIssue] = []
    seen: dict[str, int] = {}
    names = {g.name for g in spec.node_groups}
    for i, group in enumerate(spec.node_groups):
        if group.name in seen:
            issues.append(
                FieldIssue(
                    f"{groups_key}[{i}].name",
                    f"duplicate node group name {group.name!r} "
                    f"(also {groups_key}[{seen[group.name]}])",
                )
            )
        seen.setdefault(group.name, i)
        policies = group.placement_policies
        for j, assoc in enumerate((policies.group_associations or ()) if policies else ()):
            path = f"{groups_key}[{i}].{policies_key}.{assoc_key}[{j}].reference"
            if assoc.reference == group.name:
                issues.append(FieldIssue(path, "a node group cannot reference itself"))
            elif assoc.reference not in names:
                issues.append(FieldIssue(path, f"no node group named {assoc.reference!r}"))
    return issues


def parse_spec(data: Any, *, source: str | None = None) -> ClusterSpec:
    """Validate a spec in either Serengeti form and return the normalised model.

    The server template form is recognised by a top-level ``groups`` key.
    Raises SpecError listing every problem with its field path.
    """
    if not isinstance(data, Mapping):
        raise SpecError([FieldIssue("", "a cluster spec must be a JSON object")], source=source)
    template = "groups" in data and "nodeGroups" not in data
    payload = _from_template(data) if template else dict(data)
    try:
        spec = ClusterSpec.model_validate(payload)
    except ValidationError as exc:
        raise SpecError(_issues(exc, template), source=source) from None
    issues = _cross_check(spec, template)
    if issues:
        raise SpecError(issues, source=source)
    return spec


def load_spec_file(path: Path) -> ClusterSpec:
    """Read a spec file (JSON, ``//`` comments allowed) and parse it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        issue = FieldIssue("", f"cannot read: {exc.strerror}")
        raise SpecError([issue], source=str(path)) from None
    try:
        data = jsonc.loads(text)
    except json.JSONDecodeError as exc:
        issue = FieldIssue("", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
        raise SpecError([issue], source=str(path)) from None
    return parse_spec(data, source=str(path))


def export_spec(spec: ClusterSpec) -> dict[str, Any]:
    """The spec in Serengeti's CLI camelCase form; ``parse_spec(export_spec(s)) == s``."""
    result: dict[str, Any] = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return result


def apply_overrides(spec: ClusterSpec, overrides: Mapping[str, Mapping[str, Any]]) -> ClusterSpec:
    """Return `spec` with per-group fields replaced, e.g. ``{"worker": {"instanceNum": 5}}``.

    Only :data:`OVERRIDABLE_FIELDS` may be overridden; the result is validated
    again, so a bad value is reported at its ``nodeGroups[i]`` path.
    """
    data = export_spec(spec)
    index = {g["name"]: i for i, g in enumerate(data["nodeGroups"])}
    issues: list[FieldIssue] = []
    for group, fields in overrides.items():
        if group not in index:
            issues.append(FieldIssue(f"overrides.{group}", f"no node group named {group!r}"))
            continue
        for key, value in fields.items():
            if key not in OVERRIDABLE_FIELDS:
                issues.append(
                    FieldIssue(
                        f"overrides.{group}.{key}",
                        f"cannot be overridden (allowed: {', '.join(OVERRIDABLE_FIELDS)})",
                    )
                )
                continue
            data["nodeGroups"][index[group]][key] = value
    if issues:
        raise SpecError(issues)
    return parse_spec(data)
