"""The Spark standalone distro: its Serengeti-form spec, the master and worker roles as rendered
for a node, the `spark` configuration section, and what `cluster distros` and the install script
say about the PyPI package it needs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from clusters_support import FLAVORS
from pydantic import ValidationError

from cellplane.clusters import (
    Catalog,
    ClusterPlan,
    DistroPackage,
    RoleDefinition,
    export_spec,
    parse_spec,
    plan_cluster,
    render_role,
    topology_from_plan,
)
from cellplane.clusters.configuration import configuration_issues
from cellplane.clusters.deployable import distro_status
from cellplane.clusters.planner import node_volume

ROOT = Path(__file__).parents[3]
SPARK = "/opt/cellplane/spark"


def _plan(catalog: Catalog, spec_data: object | None = None) -> ClusterPlan:
    spec = catalog.find_spec("spark") if spec_data is None else parse_spec(spec_data)
    return plan_cluster(spec, catalog, cluster_name="sp", distro="spark", flavors=FLAVORS)


def test_the_catalog_spec_is_a_master_and_two_workers(catalog: Catalog) -> None:
    entry = catalog.find_spec_entry("spark")
    assert entry.entry.type == "Spark Standalone Cluster"
    plan = _plan(catalog)
    assert [(n.name, n.roles) for n in plan.nodes] == [
        ("sp-master-0", ("spark_master",)),
        ("sp-worker-0", ("spark_worker",)),
        ("sp-worker-1", ("spark_worker",)),
    ]
    # The master starts first: workers wait for it.
    assert [list(w) for w in plan.waves] == [["sp-master-0"], ["sp-worker-0", "sp-worker-1"]]
    spec = catalog.find_spec("spark")
    assert parse_spec(json.loads(json.dumps(export_spec(spec)))) == spec


def test_master_and_worker_commands_and_readiness(catalog: Catalog) -> None:
    plan = _plan(catalog)
    topology = topology_from_plan(plan, catalog)
    master = render_role(catalog.roles["spark_master"], topology, "sp-master-0")
    assert master.command == [
        f"{SPARK}/pyspark/bin/spark-class",
        "org.apache.spark.deploy.master.Master",
        "--host",
        "sp-master-0",
        "--port",
        "7077",
        "--webui-port",
        "8080",
    ]
    assert master.env["SPARK_DAEMON_MEMORY"] == "256m"
    assert master.env["SPARK_MASTER_OPTS"] == "-Dspark.worker.timeout=15"
    assert master.readiness is not None and master.readiness.kind == "exec"
    assert "http://127.0.0.1:8080/json/" in master.readiness.argv[-1]

    worker = render_role(catalog.roles["spark_worker"], topology, "sp-worker-1")
    assert worker.command[1] == "org.apache.spark.deploy.worker.Worker"
    assert worker.command[-1] == "spark://sp-master-0:7077"
    args = dict(zip(worker.command[2:-1:2], worker.command[3:-1:2], strict=True))
    assert args == {
        "--host": "sp-worker-1",
        "--port": "7078",
        "--webui-port": "8081",
        "--cores": "1",
        "--memory": "512m",
        "--work-dir": "/var/lib/cellplane/spark",
    }
    # Ready only when the master lists this very worker ALIVE.
    assert worker.readiness is not None
    probe = worker.readiness.argv[-1]
    assert "http://sp-master-0:8080/json/" in probe and "== 'sp-worker-1'" in probe
    assert "'ALIVE'" in probe
    compile(probe, "probe", "exec")
    compile(master.readiness.argv[-1], "probe", "exec")

    volumes = {n.name: node_volume(n, catalog) for n in plan.nodes}
    assert volumes["sp-master-0"] is None  # the master keeps no state (no recovery mode)
    worker_volume = volumes["sp-worker-0"]
    assert worker_volume is not None and worker_volume.path == "/var/lib/cellplane/spark"


def _spec(configuration: dict[str, object]) -> dict[str, object]:
    return {
        "nodeGroups": [
            {"name": "master", "roles": ["spark_master"], "instanceNum": 1},
            {"name": "worker", "roles": ["spark_worker"], "instanceNum": 2},
        ],
        "configuration": {"spark": {"spark-env.sh": configuration}},
    }


def test_spark_settings_are_rendered_and_checked(catalog: Catalog) -> None:
    data = _spec({"SPARK_WORKER_MEMORY": "1024", "SPARK_WORKER_CORES": 2})
    spec = parse_spec(data)
    assert configuration_issues(spec, catalog) == []
    plan = _plan(catalog, data)
    worker = render_role(
        catalog.roles["spark_worker"], topology_from_plan(plan, catalog), "sp-worker-0"
    )
    assert worker.command[worker.command.index("--memory") + 1] == "1024m"
    assert worker.command[worker.command.index("--cores") + 1] == "2"

    issues = configuration_issues(
        parse_spec(_spec({"SPARK_WORKER_MEMORY": "1g", "SPARK_EXECUTOR_CORES": 1})), catalog
    )
    where = {i.path: i.message for i in issues}
    assert where["configuration.spark.spark-env.sh.SPARK_WORKER_MEMORY"] == (
        "must be an integer, not '1g'"
    )
    assert "not a setting" in where["configuration.spark.spark-env.sh.SPARK_EXECUTOR_CORES"]
    (issue,) = configuration_issues(parse_spec(_spec({"SPARK_WORKER_MEMORY": 100})), catalog)
    assert issue.message == "must be an integer from 512 to 1048576, not 100"


def test_without_spark_the_distro_says_how_to_install_it(catalog: Catalog) -> None:
    status = distro_status(catalog, "spark", lambda path: not path.startswith(SPARK))
    assert not status.deployable
    assert len(status.reasons) == 2
    master = status.reasons[0]
    assert master.startswith(f"role spark_master needs {SPARK}/pyspark/bin/spark-class, ")
    assert f"pip install --target {SPARK} pyspark==4.3.0" in master
    assert "apt-get install openjdk-17-jre-headless" in master and "make up" in master
    assert distro_status(catalog, "spark", lambda path: True).deployable


def test_role_urls_name_a_declared_port_and_a_scheme(catalog: Catalog) -> None:
    assert catalog.roles["spark_master"].urls == {"master": "spark", "ui": "http"}
    base = {"name": "x", "ports": {"ui": 8080}}
    assert RoleDefinition.model_validate({**base, "urls": {"ui": "http"}}).urls == {"ui": "http"}
    with pytest.raises(ValidationError, match="urls names port 'api', which is not in ports"):
        RoleDefinition.model_validate({**base, "urls": {"api": "http"}})
    with pytest.raises(ValidationError, match="'ht tp' is not a URL scheme"):
        RoleDefinition.model_validate({**base, "urls": {"ui": "ht tp"}})


def test_a_python_package_needs_its_target_folder() -> None:
    with pytest.raises(ValidationError, match="python_packages and python_target go together"):
        DistroPackage.model_validate(
            {"roles": ["spark_master"], "package_repos": ["x"], "python_packages": ["pyspark"]}
        )
    with pytest.raises(ValidationError, match="must be an absolute folder"):
        DistroPackage.model_validate(
            {
                "roles": ["spark_master"],
                "package_repos": ["x"],
                "python_packages": ["pyspark"],
                "python_target": "opt/spark",
            }
        )


def test_the_install_script_installs_pyspark_outside_the_venv() -> None:
    script = str(ROOT / "scripts" / "install-system.sh")

    def listed(*args: str) -> list[str]:
        r = subprocess.run([script, *args, "--list"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert f"pip:{SPARK}:pyspark==4.3.0" in listed()
    assert "openjdk-17-jre-headless" in listed()
    assert not [p for p in listed("--minimal") if p.startswith("pip:")]
