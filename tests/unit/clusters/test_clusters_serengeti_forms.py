"""Every spec form Serengeti's readers accepted, read with Serengeti's meaning; every refusal.

The spec texts are written here (and under specs/) from Serengeti's documented formats: the
CLI samples (camelCase ``nodeGroups``), the server templates (``groups`` with ``instance_type``,
``cpu``, ``memory``, ``storage``, ``ha``, ``cluster_configuration``, bare enum words), the UI's
range form ``"[default,min,max]"``, the catalog's ``specs/map`` and ``distros/manifest``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from clusters_support import FLAVORS, write_catalog
from typer.testing import CliRunner

from cellplane.clusters import (
    Catalog,
    CatalogError,
    PlanError,
    SpecError,
    apply_overrides,
    diff_for_resize,
    export_spec,
    jsonc,
    load_spec_file,
    parse_spec,
    plan_cluster,
)
from cellplane.clusters.planner import configuration_issues, missing_requirements
from cellplane.clusters.spec import MAX_INSTANCE_NUM, cell_name, strict_int, unused_fields

SPECS = Path(__file__).parent / "specs"


def _issues(data: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return [str(issue) for issue in info.value.issues]


def _group(**kw: Any) -> dict[str, Any]:
    return {"name": "g", "roles": ["basic"], "instanceNum": 1, **kw}


# --- comments, bare words, stray brace ---


def test_comments_everywhere_a_spec_is_read(tmp_path: Path) -> None:
    text = '/* head */ {"nodeGroups": [ // line\n {"name": "g", /* in */ "roles": ["basic"],'
    text += ' "instanceNum": 1} ] } // tail'
    path = tmp_path / "spec.json"
    path.write_text(text, encoding="utf-8")
    assert load_spec_file(path).group("g").instance_num == 1
    # the CLI reads --specFile with the same reader
    from cellplane.cli.clusters import _load_spec

    assert _load_spec(path)["nodeGroups"][0]["name"] == "g"


def test_bare_enum_words_and_a_trailing_stray_brace() -> None:
    data = jsonc.loads(
        '{"groups": [{"name": "g", "roles": ["basic"], "instance_num": 1,\n'
        '"instance_type": SMALL, "ha": on}]}\n}\n'
    )
    spec = parse_spec(data)
    assert spec.group("g").instance_type == "SMALL" and spec.group("g").ha_flag == "on"
    assert jsonc.loads("{a: true, b: null, c: -1.5e3, d: x.y-z}") == {
        "a": True,
        "b": None,
        "c": -1500.0,
        "d": "x.y-z",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1} {"b": 2}', "after the end of the document"),
        ('{"a": 1', "not closed"),
        ('{"a": [1}', "expected ']'"),
        ('{"a": "x', "unterminated string"),
        ('{"a": 1 /* never closed', "unterminated /* comment"),
        ("", "empty document"),
        ("[" * 100 + "]" * 100, "nested deeper than 64"),
        ('{"a": ' + "9" * 5000 + "}", "number too long"),
    ],
)
def test_jsonc_refusals_say_where(text: str, message: str) -> None:
    with pytest.raises(jsonc.JsoncError, match=message.replace("[", r"\[").replace("*", r"\*")):
        jsonc.loads(text)


def test_undecodable_bytes_and_deep_nesting_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"nodeGroups": [\n{"name": "\xff\xfe"}]}')
    with pytest.raises(SpecError, match=r"line 2 column 11: not UTF-8 text \(byte 0xff"):
        load_spec_file(bad)
    deep = tmp_path / "deep.json"
    deep.write_text('{"nodeGroups": ' + "[" * 10000 + "]" * 10000 + "}", encoding="utf-8")
    with pytest.raises(SpecError, match="nested deeper than 64 levels"):
        load_spec_file(deep)
    # a deep structure sent through the API (already decoded) is refused the same way
    nested: Any = {}
    for _ in range(200):
        nested = {"x": nested}
    assert _issues({"nodeGroups": [_group()], "configuration": nested}) == [
        "nested deeper than 64 levels"
    ]
    # a UTF-8 BOM is fine
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps({"nodeGroups": [_group()]}).encode())
    assert load_spec_file(bom).group("g").instance_num == 1


def test_cli_refuses_bad_spec_files_without_a_traceback(tmp_path: Path) -> None:
    from cellplane.cli.main import app

    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe{")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 5000 + "]" * 5000, encoding="utf-8")
    for path in (bad, deep):
        result = CliRunner().invoke(
            app, ["cluster", "create", "--name", "x", "--specFile", str(path)]
        )
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert "not UTF-8" in result.output or "nested deeper" in result.output


# --- the server template form ---


def test_template_form_maps_every_value() -> None:
    spec = load_spec_file(SPECS / "template_full.json")
    zk = spec.group("zookeeper")
    assert (zk.instance_num, zk.cpu_num, zk.mem_capacity_mb, zk.ha_flag) == (3, 2, 1024, "on")
    assert zk.instance_type == "SMALL"
    assert zk.storage is not None and (zk.storage.type, zk.storage.size_gb) == ("LOCAL", 4)
    assert zk.configuration == {"zookeeper": {"zoo.cfg": {"tickTime": "3000"}}}
    exported = export_spec(spec)
    group = exported["nodeGroups"][0]
    # exported in the CLI form only: no template keys come back as stray keys
    assert set(group) == {
        "name",
        "roles",
        "instanceNum",
        "instanceType",
        "cpuNum",
        "memCapacityMB",
        "storage",
        "haFlag",
        "configuration",
    }
    assert parse_spec(exported) == spec
    # cpu and memory are planned, not replaced by the flavor
    plan = plan_cluster(spec, _catalog(), cluster_name="t", distro=None, flavors=FLAVORS)
    node = plan.node("t-zookeeper-0")
    assert (node.resources.cpu, node.resources.memory_mb, node.resources.disk_gb) == (2, 1024, 4)
    assert [n.name for n in plan.nodes][-1] == "t-compute-master-0"


def test_template_keys_serengeti_did_not_know_are_refused_by_name() -> None:
    issues = _issues(
        {"groups": [{"name": "g", "roles": ["basic"], "instance_num": 1, "cpus": 2, "mem": 3}]}
    )
    assert [i.split(":")[0] for i in issues] == ["groups[0].cpus", "groups[0].mem"]
    assert "not a key of Serengeti's template node groups" in issues[0]
    assert _issues(
        {"groups": [{"name": "g", "roles": ["basic"], "instance_num": 1, "cpu": 1, "cpu_num": 2}]}
    ) == ["groups[0].cpu_num: given twice"]
    assert _issues(
        {"groups": [{"name": "g", "roles": ["basic"], "instance_num": 1, "memory": True}]}
    ) == ["groups[0].memory: must be an integer, not true"]


def test_swap_ratio_is_honoured_or_refused() -> None:
    assert (
        parse_spec({"groups": [{"name": "g", "roles": ["r"], "instance_num": 1, "swap_ratio": 1}]})
        .group("g")
        .swap_ratio
        == 1
    )
    issues = _issues({"nodeGroups": [_group(swapRatio=2.5)]})
    assert issues[0].startswith("nodeGroups[0].swapRatio: 2.5 cannot be honoured")


def test_vsphere_keys_are_kept_and_reported_as_not_applied() -> None:
    spec = parse_spec(
        {
            "groups": [
                {
                    "name": "g",
                    "roles": ["r"],
                    "instance_num": 1,
                    "vm_folder_path": "f",
                    "storage": {"size": 2, "ds_names": ["d"]},
                }
            ]
        }
    )
    exported = export_spec(spec)["nodeGroups"][0]
    assert exported["vmFolderPath"] == "f" and exported["storage"] == {
        "sizeGB": 2,
        "dsNames": ["d"],
    }
    notes = unused_fields(spec)
    assert notes == [
        "nodeGroups[0].vmFolderPath: Serengeti's a vSphere VM folder; kept for export, not applied",
        "nodeGroups[0].storage.dsNames: Serengeti's vSphere datastores; kept for export, not applied",
    ]


# --- range form, strict integers, bounds ---


def test_range_form_of_counts_and_sizes() -> None:
    spec = parse_spec(
        {
            "nodeGroups": [
                _group(
                    instanceNum="[3,1,5]",
                    cpuNum="[2,1,4]",
                    memCapacityMB="[512,256,1024]",
                    storage={"sizeGB": " [ 3 , 1 , 9 ] "},
                )
            ]
        }
    )
    g = spec.group("g")
    assert (g.instance_num, g.cpu_num, g.mem_capacity_mb) == (3, 2, 512)
    assert g.storage is not None and g.storage.size_gb == 3
    whole = export_spec(spec)
    exported = whole["nodeGroups"][0]
    assert exported["instanceNum"] == "[3,1,5]" and exported["storage"]["sizeGB"] == "[3,1,9]"
    assert parse_spec(whole) == spec
    # overrides and resizes stay inside the range, which is kept
    assert (
        export_spec(apply_overrides(spec, {"g": {"instanceNum": 5}}))["nodeGroups"][0][
            "instanceNum"
        ]
        == "[5,1,5]"
    )
    with pytest.raises(SpecError, match=r"overrides.g.instanceNum: 6 is outside the range \[1,5\]"):
        apply_overrides(spec, {"g": {"instanceNum": 6}})
    with pytest.raises(SpecError, match="outside the range"):
        diff_for_resize(spec, _catalog(), cluster_name="c", group="g", instance_num=9)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[6,1,5]", "instanceNum: 6 is outside the range [1,5] the spec gives"),
        ("[3,5,1]", "instanceNum: range '[3,5,1]' has min 5 above max 1"),
        ("[3,3]", "instanceNum: must be an integer or a string of digits, not '[3,3]'"),
    ],
)
def test_range_form_refusals(value: str, message: str) -> None:
    assert _issues({"nodeGroups": [_group(instanceNum=value)]}) == [f"nodeGroups[0].{message}"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), ("3", 3), (" 7 ", 7), (3.0, 3)],
)
def test_strict_integers_accept_serengeti_forms(value: Any, expected: int) -> None:
    assert (
        parse_spec({"nodeGroups": [_group(instanceNum=value)]}).group("g").instance_num == expected
    )
    assert strict_int(value) == expected


@pytest.mark.parametrize(
    "value", [True, False, "3_0", "0x3", "\uff13", "3.5", 3.5, "", [3], {"a": 1}]
)
def test_strict_integers_refuse(value: Any) -> None:
    issues = _issues({"nodeGroups": [_group(instanceNum=value)]})
    assert len(issues) == 1 and issues[0].startswith(
        "nodeGroups[0].instanceNum: must be an integer"
    )
    issues = _issues({"nodeGroups": [_group(placementPolicies={"instancePerHost": value})]})
    assert issues[0].startswith(
        "nodeGroups[0].placementPolicies.instancePerHost: must be an integer"
    )


def test_absurd_sizes_are_refused_before_planning() -> None:
    t0 = time.monotonic()
    assert _issues({"nodeGroups": [_group(instanceNum=10**9)]}) == [
        f"nodeGroups[0].instanceNum: must be <= {MAX_INSTANCE_NUM}"
    ]
    issues = _issues({"nodeGroups": [_group(name=f"g{i}", instanceNum=9000) for i in range(3)]})
    assert issues == ["nodeGroups: asks for 27000 nodes in all; a cluster has at most 10000"]
    assert _issues({"nodeGroups": [_group(name=f"g{i}") for i in range(10_001)]}) == [
        "nodeGroups: has 10001 node groups; at most 10000"
    ]
    assert _issues({"nodeGroups": [_group(cpuNum=10**6)]}) == [
        "nodeGroups[0].cpuNum: must be <= 4096"
    ]
    assert time.monotonic() - t0 < 5


def test_the_planner_takes_thousands_of_groups() -> None:
    """4,000 groups (a quadratic planner took minutes here; speed is for benchmarks, not tests:
    the suite's per-test timeout is the bound)."""
    catalog = _catalog()
    n = 4000
    spec = parse_spec(
        {"nodeGroups": [_group(name=f"g{i}", instanceType="SMALL") for i in range(n)]}
    )
    plan = plan_cluster(spec, catalog, cluster_name="big", distro=None, flavors=FLAVORS)
    assert plan.node(f"big-g{n - 1}-0") is not None
    assert len(plan.nodes) == n


# --- group names ---


@pytest.mark.parametrize(
    ("name", "cell"),
    [
        ("worker", "worker"),
        ("data-1", "data-1"),
        ("dataMaster", "data-master"),
        ("ComputeMaster", "compute-master"),
        ("HTTPServer", "http-server"),
        ("worker2Big", "worker2-big"),
        ("ZK", "zk"),
    ],
)
def test_group_names_map_to_cell_names(name: str, cell: str) -> None:
    assert cell_name(name) == cell
    spec = parse_spec({"nodeGroups": [_group(name=name)]})
    plan = plan_cluster(spec, _catalog(), cluster_name="c", distro=None, flavors=FLAVORS)
    assert plan.nodes[0].name == f"c-{cell}-0" and plan.nodes[0].group == name


def test_group_names_that_collide_as_cell_names_are_refused() -> None:
    issues = _issues({"nodeGroups": [_group(name="dataMaster"), _group(name="DataMaster")]})
    assert issues == [
        "nodeGroups[1].name: 'DataMaster' and 'dataMaster' (nodeGroups[0]) both name their cells "
        "data-master-<n>; rename one"
    ]
    assert _issues({"nodeGroups": [_group(name="dataMaster", cellName="dm")]})[0].startswith(
        "nodeGroups[0]: cellName 'dm' is not the cell name"
    )


def test_mixed_case_groups_resize_by_their_cell_names() -> None:
    spec = load_spec_file(SPECS / "cli_mixed_case.json")
    diff = diff_for_resize(
        spec,
        _catalog(),
        cluster_name="c",
        group="dataMaster",
        instance_num=3,
        existing=["c-data-master-0", "c-data-master-1"],
    )
    assert diff.add == ("c-data-master-2",)


# --- catalog files under Serengeti's names ---


def _manifest() -> list[dict[str, Any]]:
    return [
        {
            "name": "zk",
            "vendor": "ZK",
            "version": "1.0",
            "packages": [{"roles": ["zookeeper"], "package_repos": ["deb x"]}],
        }
    ]


def _map() -> list[dict[str, Any]]:
    return [{"vendor": "ZK", "version": "^1", "type": "Basic", "path": "zk/spec.json"}]


def test_catalog_files_without_extension(tmp_path: Path) -> None:
    root = write_catalog(
        tmp_path,
        {
            # Serengeti's files: a list, with comments and bare words
            "specs/map": "// the specs map\n" + json.dumps(_map()),
            "distros/manifest": "/* manifest */ " + json.dumps(_manifest()),
            "specs/zk/spec.json": '{"groups": [{"name": "zk", "roles": ["zookeeper"],'
            ' "instance_num": 3, "instance_type": SMALL}]}',
        },
    )
    catalog = Catalog.load([root])
    assert catalog.find_spec("zk").group("zk").instance_num == 3
    (tmp_path / "specs" / "map.json").write_text(json.dumps(_map()), encoding="utf-8")
    with pytest.raises(CatalogError, match=r"both specs/map and specs/map\.json exist"):
        Catalog.load([root])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe[]", "not UTF-8 text"),
        (b"[" * 3000 + b"]" * 3000, "nested deeper than 64 levels"),
        (b'[{"name": "x"}', "not closed"),
    ],
)
def test_broken_catalog_files_are_catalog_errors(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "distros").mkdir()
    (tmp_path / "distros" / "manifest").write_bytes(content)
    with pytest.raises(CatalogError, match=message) as info:
        Catalog.load([tmp_path])
    assert "distros/manifest" in str(info.value)


def test_broken_role_file_is_a_catalog_error(tmp_path: Path) -> None:
    (tmp_path / "roles").mkdir()
    (tmp_path / "roles" / "r.yaml").write_bytes(b"name: r\ndescription: \xff\n")
    with pytest.raises(CatalogError, match="not UTF-8"):
        Catalog.load([tmp_path])


# --- configuration the roles understand ---


def _zk(cluster_configuration: dict[str, Any], **group: Any) -> Any:
    return parse_spec(
        {
            "configuration": cluster_configuration,
            "nodeGroups": [
                {
                    "name": "zk",
                    "roles": ["zookeeper"],
                    "instanceNum": 3,
                    "instanceType": "SMALL",
                    **group,
                }
            ],
        }
    )


def test_configuration_values_roles_understand_are_applied_and_checked() -> None:
    catalog = _catalog()
    ok = _zk({"zookeeper": {"zoo.cfg": {"tickTime": "2500", "maxClientCnxns": 10}}})
    assert configuration_issues(ok, catalog) == []
    bad = _zk(
        {
            "zookeeper": {
                "zoo.cfg": {"tickTime": 5, "initLimit": "ten", "snapCount": 1},
                "log4j.properties": {},
            },
            "redis": {"redis.conf": {"maxmemory": "1gb"}},
        },
        configuration={"zookeeper": {"zoo.cfg": {"syncLimit": True}}},
    )
    issues = [str(i) for i in configuration_issues(bad, catalog)]
    assert issues == [
        "configuration.zookeeper.zoo.cfg.tickTime: must be an integer from 100 to 60000, not 5",
        "configuration.zookeeper.zoo.cfg.initLimit: must be an integer, not 'ten'",
        "configuration.zookeeper.zoo.cfg.snapCount: not a setting Cellplane's zookeeper role "
        "understands (known: autopurge.purgeInterval, autopurge.snapRetainCount, initLimit, "
        "maxClientCnxns, syncLimit, tickTime)",
        "configuration.zookeeper.log4j.properties: not a file Cellplane's zookeeper role renders "
        "from configuration (known: zoo.cfg)",
        "configuration.redis: no role of this cluster reads this section (sections its roles "
        "read: zookeeper)",
        "nodeGroups[0].configuration.zookeeper.zoo.cfg.syncLimit: must be an integer, not True",
    ]
    with pytest.raises(PlanError, match="tickTime: must be an integer from 100 to 60000"):
        plan_cluster(bad, catalog, cluster_name="z", distro=None, flavors=FLAVORS)


def test_hadoop_family_roles_are_named_not_deployable() -> None:
    catalog = _catalog()
    for fixture_roles, expected in (
        (["hadoop_namenode"], "Apache Hadoop"),
        (["mapr_fileserver"], "MapR is proprietary"),
        (["NAMENODE", "DATANODE"], "Ambari and Cloudera Manager"),
        (["YARN_RESOURCE_MANAGER"], "Ambari and Cloudera Manager"),
    ):
        spec = parse_spec(
            {
                "nodeGroups": [
                    {"name": "g", "roles": fixture_roles, "instanceNum": 1, "instanceType": "SMALL"}
                ],
                # their configuration sections are read, not applied: the deploy is refused
                "configuration": {"hadoop": {"core-site.xml": {"io.file.buffer.size": "4096"}}},
            }
        )
        plan = plan_cluster(spec, catalog, cluster_name="h", distro=None, flavors=FLAVORS)
        problems = missing_requirements(plan, catalog, lambda _: True)
        assert problems and all(expected in p and "not deployable" in p for p in problems)


def _catalog() -> Catalog:
    from cellplane.clusters import default_catalog_paths

    return Catalog.load(default_catalog_paths(environ={}))
