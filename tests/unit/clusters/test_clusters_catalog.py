"""Catalog loading: the shipped catalog, operator folders, and errors naming file and field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clusters_support import write_catalog

from cellplane.clusters import (
    CATALOG_PATH_ENV,
    Catalog,
    CatalogError,
    default_catalog_paths,
)

SHIPPED_ROLES = {
    "zookeeper",
    "etcd",
    "redis_primary",
    "redis_replica",
    "redis_sentinel",
    "mesos_master",
    "mesos_slave",
    "mesos_docker",
    "mesos_chronos",
    "mesos_marathon",
    "kubernetes_workstation",
    "kubernetes_master",
    "kubernetes_minion",
}

_ROLE = "name: {name}\ncommand: [/bin/true]\n"


def test_shipped_catalog_has_roles_distros_and_specs(catalog: Catalog) -> None:
    assert set(catalog.roles) >= SHIPPED_ROLES
    assert {"zookeeper", "etcd", "redis", "mesos", "kubernetes"} <= set(catalog.distros)
    for distro in catalog.distros.values():
        # Every role a distro ships has a definition, and its spec uses only those roles.
        assert distro.roles <= set(catalog.roles), distro.name
        spec = catalog.find_spec(distro.name)
        used = {role for group in spec.node_groups for role in group.roles}
        assert used <= distro.roles, distro.name


def test_seed_entries_are_as_serengeti_wrote_them(catalog: Catalog) -> None:
    mesos = catalog.distros["mesos"]
    assert (mesos.vendor, mesos.version) == ("MESOS", "0.21.0")
    assert mesos.packages[0].package_repos == ("https://0.0.0.0/yum/mesos.repo",)
    kube = catalog.distros["kubernetes"]
    assert kube.packages[0].tarball == "kubernetes/kubernetes-0.5.4.tar.gz"
    entry = catalog.find_spec_entry("mesos")
    assert entry.entry.type == "Basic Mesos Cluster"
    assert entry.entry.path == "Ironfan/mesos/basic/spec.json"
    assert entry.source.is_file()


def test_find_spec_by_type_and_errors(catalog: Catalog) -> None:
    assert catalog.find_spec("zookeeper", "Basic ZooKeeper Cluster") == catalog.find_spec(
        "zookeeper"
    )
    with pytest.raises(CatalogError, match="no spec of type 'Nope' for distro 'etcd'"):
        catalog.find_spec("etcd", "Nope")
    with pytest.raises(CatalogError, match="no distro named 'hadoop'"):
        catalog.find_spec("hadoop")


def test_default_paths_add_operator_folders(tmp_path: Path) -> None:
    extra = [tmp_path / "a", tmp_path / "b"]
    paths = default_catalog_paths({CATALOG_PATH_ENV: os.pathsep.join(map(str, extra))})
    assert paths[1:] == extra
    assert (paths[0] / "specs" / "map.json").is_file()
    assert default_catalog_paths({}) == paths[:1]


def test_later_folder_overrides_and_extends(tmp_path: Path, catalog: Catalog) -> None:
    extra = write_catalog(
        tmp_path / "ops",
        {
            "roles/zookeeper.yaml": _ROLE.format(name="zookeeper"),
            "roles/custom.yaml": _ROLE.format(name="custom"),
            "distros/manifest.json": [
                {
                    "name": "custom",
                    "vendor": "ACME",
                    "version": "1.2",
                    "packages": [{"roles": ["custom"], "tarball": "acme.tgz"}],
                }
            ],
            "specs/map.json": [
                {
                    "vendor": "acme",
                    "version": "^1\\.",
                    "type": "Basic",
                    "appManager": "Default",
                    "path": "acme/spec.json",
                }
            ],
            "specs/acme/spec.json": '{"nodeGroups": [{"name": "n", "roles": ["custom"],'
            ' "instanceNum": 2}]} // trailing comment',
        },
    )
    merged = Catalog.load([*default_catalog_paths(environ={}), extra])
    assert merged.roles["zookeeper"].command == ("/bin/true",)
    assert merged.roles["etcd"] == catalog.roles["etcd"]
    assert merged.find_spec("custom").group("n").instance_num == 2
    assert len(merged.specs) == len(catalog.specs) + 1


@pytest.mark.parametrize(
    ("files", "file", "field", "message"),
    [
        (
            {
                "specs/map.json": [
                    {"vendor": "a", "version": "1", "type": "t", "path": "x.json"},
                    {"vendor": "b", "version": "1", "type": "t"},
                ]
            },
            "specs/map.json",
            "[1].path",
            "required",
        ),
        (
            {"specs/map.json": [{"vendor": "a", "version": "(", "type": "t", "path": "x"}]},
            "specs/map.json",
            "[0].version",
            "not a valid regular expression",
        ),
        (
            {
                "specs/map.json": [{"vendor": "a", "version": "1", "type": "t", "path": "s.json"}],
                "specs/s.json": {"nodeGroups": [{"name": "g", "roles": ["r"], "instanceNum": -1}]},
            },
            "specs/map.json",
            "[0].path",
            "nodeGroups[0].instanceNum: must be >= 0",
        ),
        (
            {
                "distros/manifest.json": [
                    {"name": "d", "vendor": "V", "version": "1", "packages": [{"roles": ["r"]}]}
                ]
            },
            "distros/manifest.json",
            "[0].packages[0]",
            "needs tarball or package_repos",
        ),
        (
            {"distros/manifest.json": {"name": "not a list"}},
            "distros/manifest.json",
            None,
            "must be a JSON list",
        ),
        (
            {"roles/r.yaml": "name: r\ncommand: ['{{ node.name ']\n"},
            "roles/r.yaml",
            "command[0]",
            "bad template",
        ),
        (
            {"roles/r.yaml": "name: other\n"},
            "roles/r.yaml",
            "name",
            "must match the file name",
        ),
        (
            {"roles/r.yaml": "name: r\nports: {a: 1}\nreadiness: {tcp: b}\n"},
            "roles/r.yaml",
            "readiness",
            "port 'b'",
        ),
        (
            {"roles/r.yaml": "name: r\nreadiness: {tcp: 1, http: {port: 2}}\n"},
            "roles/r.yaml",
            "readiness",
            "exactly one of tcp, exec, http",
        ),
        (
            {"roles/r.yaml": "name: r\ncomand: [/bin/true]\n"},
            "roles/r.yaml",
            "comand",
            "xtra",
        ),
        (
            {"roles/r.yaml": "name: r\n  bad: [\n"},
            "roles/r.yaml",
            None,
            "invalid YAML",
        ),
    ],
)
def test_broken_entry_is_named(
    tmp_path: Path, files: dict[str, object], file: str, field: str | None, message: str
) -> None:
    root = write_catalog(tmp_path / "broken", files)
    with pytest.raises(CatalogError) as info:
        Catalog.load([root])
    error = info.value
    assert error.file == str(root / file)
    assert error.field == field
    assert message in str(error)
    assert str(error).startswith(str(root / file))


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        Catalog.load([tmp_path / "nowhere"])


def test_empty_folder_is_an_empty_catalog(tmp_path: Path) -> None:
    empty = Catalog.load([tmp_path])
    assert (empty.specs, dict(empty.distros), dict(empty.roles)) == ((), {}, {})
