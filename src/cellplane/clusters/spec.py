"""Cluster specs in Serengeti's two JSON forms, normalised into one model: reading and writing.

The clusters service parses what users send (the CLI/REST camelCase form,
``nodeGroups[...]``), the catalog parses the server template form
(``groups[...]`` with Serengeti's template keys: ``instance_num``,
``instance_type``, ``cpu``, ``memory``, ``storage``, ``ha``,
``cluster_configuration``...), and both land in :class:`ClusterSpec`. The
planner only ever sees :class:`ClusterSpec`.

Serengeti's readers were lenient, and this module reads what they read:

* every key of the template form is mapped to its CLI-form field (``cpu`` ->
  ``cpuNum``, ``memory`` -> ``memCapacityMB``, ``ha`` -> ``haFlag``,
  ``cluster_configuration`` -> ``configuration``...); a template key Serengeti
  did not know is refused by name rather than ignored;
* counts and sizes accept an integer, a string of digits (``"3"``) and the
  UI's range form ``"[default,min,max]"`` (``"instanceNum": "[3,3,3]"``): the
  default is the value, and the range is kept, exported back and enforced when
  the value changes (overrides, resize). ``true``, ``3.5`` and ``"3_0"`` are
  refused;
* group names follow Serengeti's rule (letters, digits, mixed case such as
  ``dataMaster``); :func:`cell_name` maps each to the DNS label its cells are
  named with (``data-master``), deterministically; the spec keeps the name.

Keys Serengeti knows but Cellplane does not use (``vmFolderPath``,
``rpNames``, ``storage.splitPolicy``...) are kept as extra fields so that
:func:`export_spec` gives them back, and :func:`unused_fields` lists them so
the cluster can say they were not applied. Absurd sizes (:data:`MAX_INSTANCE_NUM`,
:data:`MAX_CLUSTER_NODES`, :data:`MAX_NODE_GROUPS`, nesting deeper than
:data:`~cellplane.clusters.jsonc.MAX_DEPTH`) are refused here, before any
planning.

The model itself (:class:`ClusterSpec` and its parts, :func:`strict_int`, :func:`cell_name`)
is :mod:`cellplane.clusters.spec_model`; this module holds the forms: the template form's key
map, error paths in the user's form, parsing, export and overrides.

Validation problems become :class:`~cellplane.clusters.errors.SpecError` with
one :class:`~cellplane.clusters.errors.FieldIssue` per bad field, paths written
in the form the user sent (``nodeGroups[1].instanceNum`` or
``groups[1].instance_num``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from cellplane.clusters import jsonc
from cellplane.clusters.errors import FieldIssue, SpecError
from cellplane.clusters.spec_model import (
    GROUP_RANGE_FIELDS,
    MAX_CLUSTER_NODES,
    MAX_NODE_GROUPS,
    OVERRIDABLE_FIELDS,
    ClusterSpec,
    strict_int,
)

__all__ = [
    "apply_overrides",
    "export_spec",
    "load_spec_file",
    "parse_spec",
    "unused_fields",
]

# --- the server template form ---

# Template key -> CLI key, per nesting level. Every key Serengeti's template classes
# (ClusterCreate / NodeGroupCreate, serialised by Gson) read is listed; a group-level key
# that is not is refused by name.
_TEMPLATE_CLUSTER_KEYS = {
    "groups": "nodeGroups",
    "cluster_configuration": "configuration",
    "distro_vendor": "distroVendor",
    "distro_version": "distroVersion",
    "topology_policy": "topologyPolicy",
    "external_hdfs": "externalHDFS",
    "network_names": "networkNames",
    "host_to_rack_map": "hostToRackMap",
}
_TEMPLATE_GROUP_KEYS = {
    "name": "name",
    "roles": "roles",
    "instance_num": "instanceNum",
    "instance_type": "instanceType",
    "cpu": "cpuNum",
    "cpu_num": "cpuNum",
    "memory": "memCapacityMB",
    "mem_capacity_mb": "memCapacityMB",
    "storage": "storage",
    "ha": "haFlag",
    "swap_ratio": "swapRatio",
    "placement_policies": "placementPolicies",
    "cluster_configuration": "configuration",
    "configuration": "configuration",
    "vc_clusters": "vcClusters",
    "vm_folder_path": "vmFolderPath",
    "rp_names": "rpNames",
}
_TEMPLATE_STORAGE_KEYS = {
    "size": "sizeGB",
    "size_gb": "sizeGB",
    "ds_names": "dsNames",
    "split_policy": "splitPolicy",
    "controller_type": "controllerType",
    "allocation_type": "allocType",
}
_TEMPLATE_POLICY_KEYS = {
    "instance_per_host": "instancePerHost",
    "group_associations": "groupAssociations",
    "group_racks": "groupRacks",
}

# Why a key Serengeti read is kept but not applied (shown with the cluster).
_UNUSED_REASONS = {
    "vmFolderPath": "a vSphere VM folder",
    "rpNames": "vSphere resource pools",
    "vcClusters": "vCenter clusters",
    "dsNames": "vSphere datastores",
    "splitPolicy": "how vSphere splits disks over datastores",
    "controllerType": "a virtual disk controller",
    "allocType": "virtual disk provisioning",
    "distroMap": "Hadoop tarball locations",
    "distroVendor": "the Hadoop vendor",
    "distroVersion": "the Hadoop version",
    "topologyPolicy": "Hadoop rack topology",
    "externalHDFS": "an external HDFS",
    "networkNames": "vSphere port groups",
    "hostToRackMap": "vSphere host racks",
}


def _rename(data: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    return {keys.get(k, k): v for k, v in data.items()}


def _snake_to_camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _from_template(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldIssue]]:
    issues: list[FieldIssue] = []
    out: dict[str, Any] = {}
    for key, value in data.items():
        target = _TEMPLATE_CLUSTER_KEYS.get(key, _snake_to_camel(key))
        if target in out:
            issues.append(FieldIssue(key, f"given twice (also as {target!r})"))
        out[target] = value
    groups = out.get("nodeGroups")
    if isinstance(groups, list):
        converted: list[Any] = []
        for i, group in enumerate(groups):
            if not isinstance(group, Mapping):
                converted.append(group)
                continue
            g: dict[str, Any] = {}
            for key, value in group.items():
                group_target = _TEMPLATE_GROUP_KEYS.get(key)
                if group_target is None:
                    known = ", ".join(sorted(_TEMPLATE_GROUP_KEYS))
                    issues.append(
                        FieldIssue(
                            f"groups[{i}].{key}",
                            f"not a key of Serengeti's template node groups (known: {known})",
                        )
                    )
                    continue
                if group_target in g:
                    issues.append(FieldIssue(f"groups[{i}].{key}", "given twice"))
                g[group_target] = value
            if isinstance(g.get("storage"), Mapping):
                g["storage"] = {
                    _TEMPLATE_STORAGE_KEYS.get(k, _snake_to_camel(k)): v
                    for k, v in g["storage"].items()
                }
            if isinstance(g.get("placementPolicies"), Mapping):
                g["placementPolicies"] = _rename(g["placementPolicies"], _TEMPLATE_POLICY_KEYS)
            converted.append(g)
        out["nodeGroups"] = converted
    return out, issues


def _template_path_key(key: str, depth_keys: Mapping[str, str]) -> str:
    for template_key, cli_key in depth_keys.items():
        if cli_key == key:
            return template_key
    return key


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
    if kind == "less_than_equal":
        return f"must be <= {ctx.get('le')}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
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

    out: list[FieldIssue] = []
    for e in errors:
        if shadowed(e):
            continue
        loc = tuple(e["loc"])
        message = _message(e)
        # A range-form error names its field: "instanceNum: 7 is outside ..." -> the path.
        head, sep, rest = message.partition(": ")
        if sep and e["type"] == "value_error" and head in (*GROUP_RANGE_FIELDS, "sizeGB"):
            loc, message = (*loc, head), rest
        out.append(FieldIssue(_format_loc(loc, template), message))
    return out


def _cross_check(spec: ClusterSpec, template: bool) -> list[FieldIssue]:
    groups_key = "groups" if template else "nodeGroups"
    policies_key = "placement_policies" if template else "placementPolicies"
    assoc_key = "group_associations" if template else "groupAssociations"
    issues: list[FieldIssue] = []
    seen: dict[str, int] = {}
    cells: dict[str, int] = {}
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
        else:
            label = group.cell_name
            if label in cells:
                other = spec.node_groups[cells[label]].name
                issues.append(
                    FieldIssue(
                        f"{groups_key}[{i}].name",
                        f"{group.name!r} and {other!r} ({groups_key}[{cells[label]}]) both "
                        f"name their cells {label}-<n>; rename one",
                    )
                )
            cells.setdefault(label, i)
        seen.setdefault(group.name, i)
        policies = group.placement_policies
        for j, assoc in enumerate((policies.group_associations or ()) if policies else ()):
            path = f"{groups_key}[{i}].{policies_key}.{assoc_key}[{j}].reference"
            if assoc.reference == group.name:
                issues.append(FieldIssue(path, "a node group cannot reference itself"))
            elif assoc.reference not in names:
                issues.append(FieldIssue(path, f"no node group named {assoc.reference!r}"))
    total = spec.total_nodes
    if total > MAX_CLUSTER_NODES:
        issues.append(
            FieldIssue(
                groups_key,
                f"asks for {total} nodes in all; a cluster has at most {MAX_CLUSTER_NODES}",
            )
        )
    return issues


def _too_deep(data: Any, limit: int) -> bool:
    """Whether `data` nests objects/arrays deeper than `limit` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_spec(data: Any, *, source: str | None = None) -> ClusterSpec:
    """Validate a spec in either Serengeti form and return the normalised model.

    The server template form is recognised by a top-level ``groups`` key.
    Raises SpecError listing every problem with its field path.
    """
    if not isinstance(data, Mapping):
        raise SpecError([FieldIssue("", "a cluster spec must be a JSON object")], source=source)
    if _too_deep(data, jsonc.MAX_DEPTH):
        issue = FieldIssue("", f"nested deeper than {jsonc.MAX_DEPTH} levels")
        raise SpecError([issue], source=source)
    groups = data.get("groups", data.get("nodeGroups"))
    if isinstance(groups, list) and len(groups) > MAX_NODE_GROUPS:
        key = "groups" if "groups" in data and "nodeGroups" not in data else "nodeGroups"
        issue = FieldIssue(key, f"has {len(groups)} node groups; at most {MAX_NODE_GROUPS}")
        raise SpecError([issue], source=source)
    template = "groups" in data and "nodeGroups" not in data
    key_issues: list[FieldIssue] = []
    if template:
        payload, key_issues = _from_template(data)
    else:
        payload = dict(data)
    try:
        spec = ClusterSpec.model_validate(payload)
    except ValidationError as exc:
        raise SpecError([*key_issues, *_issues(exc, template)], source=source) from None
    issues = key_issues + _cross_check(spec, template)
    if issues:
        raise SpecError(issues, source=source)
    return spec


def load_spec_file(path: Path) -> ClusterSpec:
    """Read a spec file (Serengeti's lenient JSON: see :mod:`cellplane.clusters.jsonc`)."""
    try:
        data = jsonc.load_file(path)
    except jsonc.JsoncError as exc:
        raise SpecError([FieldIssue("", str(exc))], source=str(path)) from None
    return parse_spec(data, source=str(path))


def _range_text(value: int, bounds: tuple[int, int]) -> str:
    return f"[{value},{bounds[0]},{bounds[1]}]"


def export_spec(spec: ClusterSpec) -> dict[str, Any]:
    """The spec in Serengeti's CLI camelCase form; ``parse_spec(export_spec(s)) == s``.

    Range-form values go back as ``"[value,min,max]"``; a group whose cells are named
    differently from the group (``dataMaster`` -> ``data-master``) says so in ``cellName``.
    """
    result: dict[str, Any] = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    for group, out in zip(spec.node_groups, result["nodeGroups"], strict=True):
        for key, bounds in (group.ranges or {}).items():
            out[key] = _range_text(out[key], bounds)
        storage = group.storage
        if storage is not None and storage.ranges:
            for key, bounds in storage.ranges.items():
                out["storage"][key] = _range_text(out["storage"][key], bounds)
        if group.cell_name != group.name:
            out["cellName"] = group.cell_name
    return result


def unused_fields(spec: ClusterSpec) -> list[str]:
    """Keys the spec carries that Cellplane keeps (for export) but does not apply, explained."""

    def note(path: str, key: str) -> str:
        why = _UNUSED_REASONS.get(key)
        what = f"Serengeti's {why}" if why else "not a setting Cellplane knows"
        return f"{path}: {what}; kept for export, not applied"

    notes = [note(k, k) for k in (spec.model_extra or {})]
    for i, group in enumerate(spec.node_groups):
        notes.extend(note(f"nodeGroups[{i}].{k}", k) for k in (group.model_extra or {}))
        if group.storage is not None:
            notes.extend(
                note(f"nodeGroups[{i}].storage.{k}", k) for k in (group.storage.model_extra or {})
            )
    return notes


def apply_overrides(spec: ClusterSpec, overrides: Mapping[str, Mapping[str, Any]]) -> ClusterSpec:
    """Return `spec` with per-group fields replaced, e.g. ``{"worker": {"instanceNum": 5}}``.

    Only :data:`OVERRIDABLE_FIELDS` may be overridden; the result is validated
    again, so a bad value (or one outside the group's range form) is reported at its
    ``nodeGroups[i]`` path.
    """
    data = export_spec(spec)
    index = {g["name"]: i for i, g in enumerate(data["nodeGroups"])}
    issues: list[FieldIssue] = []
    for group, fields in overrides.items():
        if group not in index:
            issues.append(FieldIssue(f"overrides.{group}", f"no node group named {group!r}"))
            continue
        ranges = spec.node_groups[index[group]].ranges or {}
        for key, value in fields.items():
            if key not in OVERRIDABLE_FIELDS:
                issues.append(
                    FieldIssue(
                        f"overrides.{group}.{key}",
                        f"cannot be overridden (allowed: {', '.join(OVERRIDABLE_FIELDS)})",
                    )
                )
                continue
            if key in ranges:
                try:
                    number = strict_int(value)
                except ValueError as exc:
                    issues.append(FieldIssue(f"overrides.{group}.{key}", str(exc)))
                    continue
                low, high = ranges[key]
                if not low <= number <= high:
                    issues.append(
                        FieldIssue(
                            f"overrides.{group}.{key}",
                            f"{number} is outside the range [{low},{high}] the spec gives",
                        )
                    )
                    continue
                value = _range_text(number, ranges[key])
            data["nodeGroups"][index[group]][key] = value
    if issues:
        raise SpecError(issues)
    return parse_spec(data)
