"""The cluster spec model: node groups, storage, placement policies, and Serengeti's integers.

:class:`ClusterSpec` is what every reader of a spec (:func:`cellplane.clusters.spec.parse_spec`,
from either of Serengeti's forms) produces and what the planner sees. Counts and sizes are read
by :func:`strict_int` (an integer, a string of digits, or the UI's range form
``"[default,min,max]"``, whose range is kept on the group); group names follow Serengeti's rule
and :func:`cell_name` maps each to the DNS label its cells are named with. The limits
(:data:`MAX_INSTANCE_NUM`, :data:`MAX_CLUSTER_NODES`, :data:`MAX_NODE_GROUPS`) are checked here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

__all__ = [
    "GROUP_RANGE_FIELDS",
    "MAX_CLUSTER_NODES",
    "MAX_INSTANCE_NUM",
    "MAX_NODE_GROUPS",
    "OVERRIDABLE_FIELDS",
    "ClusterSpec",
    "GroupAssociation",
    "GroupRacks",
    "NodeGroupSpec",
    "PlacementPolicies",
    "StorageSpec",
    "cell_name",
    "strict_int",
]

# Serengeti's naming rule (letters and digits, any case), plus '-' which Cellplane always took.
_NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_STORAGE_TYPES = frozenset({"SHARED", "LOCAL", "TEMPFS"})
_ASSOCIATION_TYPES = frozenset({"STRICT", "WEAK"})
_RACK_POLICIES = frozenset({"ROUNDROBIN", "SAMERACK"})
_HA_FLAGS = frozenset({"on", "off", "ft"})

MAX_INSTANCE_NUM = 10_000
"""Most nodes one group may ask for; a larger instanceNum is refused before planning."""
MAX_CLUSTER_NODES = 10_000
"""Most nodes a whole cluster may ask for."""
MAX_NODE_GROUPS = 10_000
"""Most node groups one spec may have."""
_MAX_CPU = 4096
_MAX_MEMORY_MB = 16 * 1024 * 1024
_MAX_SIZE_GB = 1024 * 1024

OVERRIDABLE_FIELDS = ("instanceType", "cpuNum", "memCapacityMB", "instanceNum")

_MODEL_CONFIG = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

# --- integers as Serengeti read them ---

_DIGITS = re.compile(r"[+-]?[0-9]{1,18}")
_RANGE = re.compile(r"\[\s*([0-9]{1,18})\s*,\s*([0-9]{1,18})\s*,\s*([0-9]{1,18})\s*\]")


def strict_int(value: Any) -> Any:
    """An integer field's value: an int, an integral float or a string of ASCII digits.

    ``True`` is not 1, ``"3_0"`` is not 30, non-ASCII digits are not digits; ``"3"`` is 3 (Serengeti's
    readers took quoted numbers). Anything else raises ValueError with the reason.
    """
    if isinstance(value, bool):
        raise ValueError(f"must be an integer, not {str(value).lower()}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**62:
            return int(value)
        raise ValueError(f"must be an integer, not {value!r}")
    if isinstance(value, str):
        if _DIGITS.fullmatch(value.strip()):
            return int(value.strip())
        raise ValueError(f"must be an integer or a string of digits, not {value[:40]!r}")
    if value is None:
        return value
    raise ValueError(f"must be an integer, not a {_json_type(value)}")


def _json_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return "JSON object"
    if isinstance(value, list | tuple):
        return "JSON array"
    return type(value).__name__


_Int = Annotated[int, BeforeValidator(strict_int)]


def _extract_ranges(data: Any, fields: tuple[str, ...]) -> Any:
    """Replace ``"[default,min,max]"`` values of `fields` by the default; keep the ranges."""
    if not isinstance(data, Mapping):
        return data
    out = dict(data)
    ranges: dict[str, tuple[int, int]] = {}
    for key in fields:
        value = out.get(key)
        if not isinstance(value, str):
            continue
        m = _RANGE.fullmatch(value.strip())
        if m is None:
            continue
        default, low, high = (int(g) for g in m.groups())
        if not low <= high:
            raise ValueError(f"{key}: range {value!r} has min {low} above max {high}")
        if not low <= default <= high:
            raise ValueError(f"{key}: {default} is outside the range [{low},{high}] the spec gives")
        out[key] = default
        ranges[key] = (low, high)
    if "ranges" in out:  # internal: only ever set from the range form above
        raise ValueError('ranges: not a Serengeti key; write a range as "[default,min,max]"')
    if ranges:
        out["ranges"] = ranges
    return out


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
    size_gb: _Int | None = Field(default=None, alias="sizeGB", ge=0, le=_MAX_SIZE_GB)
    ranges: dict[str, tuple[int, int]] | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _range_form(cls, data: Any) -> Any:
        return _extract_ranges(data, ("sizeGB",))

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

    instance_per_host: _Int | None = Field(default=None, alias="instancePerHost", ge=1)
    group_associations: tuple[GroupAssociation, ...] | None = Field(
        default=None, alias="groupAssociations"
    )
    group_racks: GroupRacks | None = Field(default=None, alias="groupRacks")


GROUP_RANGE_FIELDS = ("instanceNum", "cpuNum", "memCapacityMB")


def cell_name(group: str) -> str:
    """The DNS label a node group's cells are named with: ``dataMaster`` -> ``data-master``.

    Serengeti's group names are letters and digits in any case; cell and host names are
    lowercase. A lowercase name is its own cell name; otherwise a ``-`` goes where a word
    starts (``ComputeMaster`` -> ``compute-master``, ``HTTPServer`` -> ``http-server``,
    ``worker2Big`` -> ``worker2-big``) and everything is lowercased. Deterministic and
    independent of the other groups; two groups that map to the same cell name are refused.
    """
    if group == group.lower():
        return group
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", group)
    spaced = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", "-", spaced)
    return re.sub(r"-{2,}", "-", spaced).strip("-").lower()


class NodeGroupSpec(BaseModel):
    """One ``nodeGroups[]`` entry: a set of identical nodes running the same roles."""

    model_config = _MODEL_CONFIG

    name: str
    roles: tuple[str, ...] = Field(min_length=1)
    instance_num: _Int = Field(alias="instanceNum", ge=0, le=MAX_INSTANCE_NUM)
    instance_type: str | None = Field(default=None, alias="instanceType")
    cpu_num: _Int | None = Field(default=None, alias="cpuNum", ge=1, le=_MAX_CPU)
    mem_capacity_mb: _Int | None = Field(
        default=None, alias="memCapacityMB", ge=1, le=_MAX_MEMORY_MB
    )
    storage: StorageSpec | None = None
    ha_flag: str | None = Field(default=None, alias="haFlag")
    swap_ratio: float | None = Field(default=None, alias="swapRatio")
    placement_policies: PlacementPolicies | None = Field(default=None, alias="placementPolicies")
    configuration: dict[str, Any] | None = None
    # The isolation class of the group's cells (`standard`, `sandbox`); None: the tenant's minimum.
    isolation: Literal["standard", "sandbox"] | None = None
    ranges: dict[str, tuple[int, int]] | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _range_form(cls, data: Any) -> Any:
        data = _extract_ranges(data, GROUP_RANGE_FIELDS)
        if isinstance(data, dict) and "cellName" in data:
            # Exported for people to read; derived from the name, so checked and dropped.
            given, name = data.pop("cellName"), data.get("name")
            if isinstance(name, str) and given != cell_name(name):
                raise ValueError(
                    f"cellName {given!r} is not the cell name of group {name!r} "
                    f"({cell_name(name)!r}); it is derived from the name: leave it out"
                )
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.fullmatch(value):
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

    @field_validator("swap_ratio", mode="before")
    @classmethod
    def _swap(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("must be a number")
        try:
            ratio = float(value)
        except ValueError:
            raise ValueError(f"must be a number, not {value!r}") from None
        if ratio != 1:
            raise ValueError(
                f"{value!r} cannot be honoured: cells get no swap of their own, so only "
                "Serengeti's default 1 is accepted"
            )
        return ratio

    @property
    def cell_name(self) -> str:
        """The DNS label this group's cells are named with (see :func:`cell_name`)."""
        return cell_name(self.name)


class ClusterSpec(BaseModel):
    """A whole cluster spec, whatever form it was written in."""

    model_config = _MODEL_CONFIG

    name: str | None = None
    distro: str | None = None
    node_groups: tuple[NodeGroupSpec, ...] = Field(
        alias="nodeGroups", min_length=1, max_length=MAX_NODE_GROUPS
    )
    configuration: dict[str, Any] | None = None

    def group(self, name: str) -> NodeGroupSpec:
        """The node group called `name`; KeyError if there is none."""
        for group in self.node_groups:
            if group.name == name:
                return group
        raise KeyError(name)

    @property
    def total_nodes(self) -> int:
        return sum(g.instance_num for g in self.node_groups)
