"""A cluster's ``configuration``, pure: checked against its roles, merged per group.

Used by :mod:`cellplane.clusters.planner` and the clusters service: :func:`configuration_issues`
checks each section of the spec's (cluster or group) ``configuration`` against what the
cluster's roles declare they read; :func:`undeployable_reason` says why a Serengeti role that no
catalog folder defines cannot be deployed; :func:`merged_configuration` gives a group's view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cellplane.clusters.catalog import Catalog
from cellplane.clusters.errors import FieldIssue
from cellplane.clusters.roles import RoleDefinition
from cellplane.clusters.spec_model import ClusterSpec

__all__ = [
    "UNDEPLOYABLE_FAMILIES",
    "configuration_issues",
    "deep_merge",
    "merged_configuration",
    "undeployable_reason",
]


# Serengeti's Hadoop-family roles, which no catalog folder of Cellplane defines, and why.
UNDEPLOYABLE_FAMILIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("hadoop_", "hbase_", "hive", "pig", "tempfs_", "zookeeper_server", "hue"),
        "Apache Hadoop 1.x/2.x, HBase, Hive and Pig (Serengeti's Chef roles) are not packaged "
        "in Debian 12, and Serengeti installed them from vendor tarballs or yum repositories "
        "that Cellplane does not fetch",
    ),
    (
        ("mapr_",),
        "MapR is proprietary software installed from MapR's own repositories with a licence; "
        "nothing of it is on these machines",
    ),
    (
        (
            "NAMENODE",
            "SECONDARY_NAMENODE",
            "DATANODE",
            "HDFS_",
            "YARN_",
            "MAPREDUCE",
            "RESOURCEMANAGER",
            "NODEMANAGER",
            "HBASE_",
            "HIVE_",
            "ZOOKEEPER_SERVER",
        ),
        "Ambari and Cloudera Manager roles are deployed by those application managers "
        "(appManager Ambari / ClouderaManager), external servers that install HDP/CDH "
        "packages; Cellplane only has the Default application manager",
    ),
)


def undeployable_reason(role: str) -> str | None:
    """Why a Serengeti role Cellplane has no definition for cannot be deployed, if known."""
    for prefixes, reason in UNDEPLOYABLE_FAMILIES:
        if any(role.startswith(p) for p in prefixes):
            return reason
    return None


def _is_empty(value: Any) -> bool:
    """A configuration value with nothing in it (Serengeti's samples carry empty sections)."""
    if isinstance(value, Mapping):
        return all(_is_empty(v) for v in value.values())
    return False


def _section_issues(
    path: str,
    configuration: Mapping[str, Any],
    roles: Iterable[str],
    catalog: Catalog,
) -> list[FieldIssue]:
    present = list(dict.fromkeys(roles))
    readers: dict[str, list[RoleDefinition]] = {}
    for role in present:
        definition = catalog.roles.get(role)
        if definition is not None and definition.configuration is not None:
            readers.setdefault(definition.configuration.section, []).append(definition)
    undefined = [r for r in present if r not in catalog.roles]
    issues: list[FieldIssue] = []
    for section, body in configuration.items():
        where = f"{path}.{section}"
        owners = readers.get(section)
        if not owners:
            if _is_empty(body) or undefined:
                continue  # nothing to apply, or the deploy is refused for its roles anyway
            known = sorted(readers) or ["none"]
            issues.append(
                FieldIssue(
                    where,
                    "no role of this cluster reads this section (sections its roles read: "
                    f"{', '.join(known)})",
                )
            )
            continue
        names = ", ".join(d.name for d in owners)
        if not isinstance(body, Mapping):
            issues.append(FieldIssue(where, "must be an object of files"))
            continue
        files: dict[str, dict[str, Any]] = {}
        for definition in owners:
            assert definition.configuration is not None
            for file, keys in definition.configuration.files.items():
                files.setdefault(file, {}).update(keys)
        for file, values in body.items():
            if file not in files:
                issues.append(
                    FieldIssue(
                        f"{where}.{file}",
                        f"not a file Cellplane's {names} role renders from configuration "
                        f"(known: {', '.join(sorted(files))})",
                    )
                )
                continue
            if not isinstance(values, Mapping):
                issues.append(FieldIssue(f"{where}.{file}", "must be an object of settings"))
                continue
            keys = files[file]
            for key, value in values.items():
                schema = keys.get(key, keys.get("*"))
                if schema is None:
                    issues.append(
                        FieldIssue(
                            f"{where}.{file}.{key}",
                            f"not a setting Cellplane's {names} role understands "
                            f"(known: {', '.join(sorted(keys))})",
                        )
                    )
                    continue
                problem = schema.check(value)
                if problem is not None:
                    issues.append(FieldIssue(f"{where}.{file}.{key}", problem))
    return issues


def configuration_issues(spec: ClusterSpec, catalog: Catalog) -> list[FieldIssue]:
    """Every ``configuration`` value no role of the cluster can use, named by its key.

    A section read by a role (``zookeeper``, ``etcd``...) is checked key by key against the
    role's declared settings; a non-empty section no role of the cluster reads is refused.
    Sections of roles Cellplane cannot deploy (Hadoop...) are left alone: the deploy is
    refused for those roles, naming them.
    """
    all_roles = [r for g in spec.node_groups for r in g.roles]
    issues = _section_issues("configuration", spec.configuration or {}, all_roles, catalog)
    for i, group in enumerate(spec.node_groups):
        if group.configuration:
            issues.extend(
                _section_issues(
                    f"nodeGroups[{i}].configuration", group.configuration, group.roles, catalog
                )
            )
    return issues


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merged_configuration(spec: ClusterSpec, group: str) -> dict[str, Any]:
    """Cluster-level ``configuration`` with the node group's merged over it."""
    return deep_merge(spec.configuration or {}, spec.group(group).configuration or {})
