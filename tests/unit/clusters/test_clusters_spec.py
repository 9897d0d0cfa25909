"""Serengeti spec parsing: the published samples, both forms, round trips, error paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clusters_support import bde_fixture_files
from hypothesis import given, settings
from hypothesis import strategies as st

from cellplane.clusters import (
    ClusterSpec,
    SpecError,
    apply_overrides,
    export_spec,
    jsonc,
    load_spec_file,
    parse_spec,
)

FIXTURES = bde_fixture_files()


def test_fixture_folder_has_the_published_samples() -> None:
    names = {p.name for p in FIXTURES}
    assert {"mesos_cluster.json", "kubernetes_cluster.json", "basic_cluster.json"} <= names
    assert len(FIXTURES) >= 7


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_published_sample_parses_unchanged(path: Path) -> None:
    raw = jsonc.loads(path.read_text(encoding="utf-8"))
    spec = load_spec_file(path)
    groups = raw.get("nodeGroups", raw.get("groups"))
    assert [g.name for g in spec.node_groups] == [g["name"] for g in groups]
    assert [g.roles for g in spec.node_groups] == [tuple(g["roles"]) for g in groups]
    counts = [g.get("instanceNum", g.get("instance_num")) for g in groups]
    assert [g.instance_num for g in spec.node_groups] == counts


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_export_round_trips(path: Path) -> None:
    spec = load_spec_file(path)
    exported = export_spec(spec)
    assert "nodeGroups" in exported
    assert parse_spec(json.loads(json.dumps(exported))) == spec


def test_template_form_equals_cli_form() -> None:
    template = load_spec_file(next(p for p in FIXTURES if p.name.startswith("mesos-default")))
    group = template.group("master")
    assert group.instance_type == "MEDIUM"
    assert group.ha_flag == "on"
    camel = parse_spec(export_spec(template))
    assert camel == template
    assert export_spec(template)["nodeGroups"][1]["instanceNum"] == group.instance_num


def test_sample_details_are_kept() -> None:
    by_name = {p.name: load_spec_file(p) for p in FIXTURES}
    rack = by_name["data_compute_separation_with_rack_policy_cluster.json"]
    d1 = rack.group("d1").placement_policies
    assert d1 is not None and d1.instance_per_host == 1
    assert d1.group_racks is not None and d1.group_racks.type == "ROUNDROBIN"
    c1 = rack.group("c1").placement_policies
    assert c1 is not None and c1.group_associations is not None
    assert (c1.group_associations[0].reference, c1.group_associations[0].type) == ("d1", "STRICT")
    kube = by_name["kubernetes_cluster.json"]
    assert kube.configuration is not None
    env = kube.configuration["kubernetes"]["env"]
    # "//" inside a string is data, not a comment.
    assert env["GOVC_URL"] == "https://<user:password>@<vCenter_Server_IP>/sdk"
    assert "INSTANCE_RESOURCE_POOL" in env
    mesos = by_name["mesos_cluster.json"]
    storage = mesos.group("zookeeper").storage
    assert storage is not None and storage.type == "SHARED" and storage.size_gb == 2


def test_unknown_serengeti_keys_are_kept_and_exported() -> None:
    data = {
        "name": "hadoop",
        "distroMap": {"hadoopUrl": "http://x/hadoop.tar.gz"},
        "nodeGroups": [
            {
                "name": "data",
                "roles": ["hadoop_datanode"],
                "instanceNum": 3,
                "vmFolderPath": "SERENGETI-vApp/hadoop/data",
                "storage": {"type": "local", "sizeGB": 50, "splitPolicy": "EVEN_SPLIT"},
            }
        ],
    }
    spec = parse_spec(data)
    exported = export_spec(spec)
    assert exported["distroMap"] == data["distroMap"]
    assert exported["nodeGroups"][0]["vmFolderPath"] == "SERENGETI-vApp/hadoop/data"
    assert exported["nodeGroups"][0]["storage"]["splitPolicy"] == "EVEN_SPLIT"
    assert exported["nodeGroups"][0]["storage"]["type"] == "LOCAL"
    assert parse_spec(exported) == spec


def _issues(data: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return [str(issue) for issue in info.value.issues]


def test_error_paths_in_cli_form() -> None:
    issues = _issues(
        {
            "nodeGroups": [
                {"name": "ok", "roles": ["basic"], "instanceNum": 1},
                {"name": "bad", "roles": ["basic"], "instanceNum": -1, "haFlag": "maybe"},
                {"name": "x", "roles": [], "instanceNum": 1, "storage": {"type": "tape"}},
            ]
        }
    )
    assert "nodeGroups[1].instanceNum: must be >= 0" in issues
    assert any(i.startswith("nodeGroups[1].haFlag: must be one of") for i in issues)
    assert "nodeGroups[2].roles: must have at least 1 item(s)" in issues
    assert any(i.startswith("nodeGroups[2].storage.type: must be one of") for i in issues)
    assert len(issues) == 4


def test_error_paths_in_template_form_use_its_keys() -> None:
    issues = _issues({"groups": [{"name": "g", "roles": ["basic"], "instance_num": -2}]})
    assert issues == ["groups[0].instance_num: must be >= 0"]


def test_missing_and_cross_field_errors() -> None:
    assert _issues({"nodeGroups": [{"name": "g", "roles": ["basic"]}]}) == [
        "nodeGroups[0].instanceNum: is required"
    ]
    issues = _issues(
        {
            "nodeGroups": [
                {"name": "a", "roles": ["r"], "instanceNum": 1},
                {
                    "name": "a",
                    "roles": ["r"],
                    "instanceNum": 1,
                    "placementPolicies": {"groupAssociations": [{"reference": "zz"}]},
                },
            ]
        }
    )
    assert issues[0] == "nodeGroups[1].name: duplicate node group name 'a' (also nodeGroups[0])"
    assert issues[1].startswith("nodeGroups[1].placementPolicies.groupAssociations[0].reference")
    assert _issues({"nodeGroups": [{"name": "bad_name", "roles": ["r"], "instanceNum": 1}]})[
        0
    ].startswith("nodeGroups[0].name:")
    assert _issues([1, 2]) == ["a cluster spec must be a JSON object"]


def test_bad_json_file_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text('{\n  // fine\n  "nodeGroups": [\n}\n', encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec_file(path)
    assert str(path) in str(info.value)
    assert "line 4" in str(info.value)


def test_jsonc_strips_only_comments() -> None:
    text = '{"a": "x//y", /* block\n comment */ "b": "/*no*/", "c": 1 // tail\n}'
    assert jsonc.loads(text) == {"a": "x//y", "b": "/*no*/", "c": 1}
    assert jsonc.strip_comments('"q\\"//"//c').rstrip() == '"q\\"//"'


def test_apply_overrides_changes_only_named_fields() -> None:
    spec = load_spec_file(next(p for p in FIXTURES if p.name == "mesos_cluster.json"))
    new = apply_overrides(spec, {"slave": {"instanceNum": 5, "instanceType": "large"}})
    assert new.group("slave").instance_num == 5
    assert new.group("slave").instance_type == "LARGE"
    assert new.group("master") == spec.group("master")
    assert spec.group("slave").instance_num == 3


def test_apply_overrides_errors() -> None:
    spec = load_spec_file(next(p for p in FIXTURES if p.name == "mesos_cluster.json"))
    with pytest.raises(SpecError) as info:
        apply_overrides(spec, {"nope": {"instanceNum": 1}, "slave": {"roles": ["x"]}})
    assert [i.path for i in info.value.issues] == ["overrides.nope", "overrides.slave.roles"]
    with pytest.raises(SpecError) as info:
        apply_overrides(spec, {"slave": {"cpuNum": 0}})
    assert [str(i) for i in info.value.issues] == ["nodeGroups[2].cpuNum: must be >= 1"]


_names = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
_groups = st.fixed_dictionaries(
    {
        "name": _names,
        "roles": st.lists(_names, min_size=1, max_size=3, unique=True),
        "instanceNum": st.integers(0, 50),
    },
    optional={
        "instanceType": st.sampled_from(["SMALL", "medium", "LARGE"]),
        "cpuNum": st.integers(1, 64),
        "memCapacityMB": st.integers(1, 1 << 20),
        "haFlag": st.sampled_from(["on", "OFF", "ft"]),
        "storage": st.fixed_dictionaries(
            {"type": st.sampled_from(["shared", "LOCAL"]), "sizeGB": st.integers(0, 999)}
        ),
        "placementPolicies": st.fixed_dictionaries(
            {"instancePerHost": st.integers(1, 4)},
            optional={"groupRacks": st.fixed_dictionaries({"type": st.just("SAMERACK")})},
        ),
        "configuration": st.dictionaries(_names, st.integers() | st.text(max_size=5), max_size=2),
        "vmFolderPath": st.text(max_size=10),
    },
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_groups, min_size=1, max_size=4, unique_by=lambda g: g["name"]))
def test_round_trip_property(groups: list[dict[str, Any]]) -> None:
    spec = parse_spec({"nodeGroups": groups, "someFutureKey": [1, 2]})
    exported = export_spec(spec)
    again = parse_spec(json.loads(json.dumps(exported)))
    assert again == spec
    assert export_spec(again) == exported
    assert isinstance(again, ClusterSpec)
