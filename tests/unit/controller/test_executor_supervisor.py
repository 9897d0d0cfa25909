"""Unit tests of the pure executor pieces: node bundles, role scripts, probes, steps, topology."""

from __future__ import annotations

import base64
import io
import subprocess
import tarfile
from datetime import UTC, datetime

import pytest

from cellplane.clusters import Catalog, plan_cluster, render_role, topology_from_plan
from cellplane.clusters.roles import RenderedReadiness, RenderedRole
from cellplane.clusters.spec import parse_spec
from cellplane.controller.clusters import (
    NodeFailure,
    failure_message,
    filtered_topology,
    set_step,
)
from cellplane.controller.clusters.supervisor import (
    SUPERVISOR,
    bundle_files,
    node_env,
    node_files,
    probe_command,
    role_script,
    stop_waves,
    tail_command,
    write_files_command,
)
from cellplane.scheduler import Resources
from cellplane.state.models import Task

FLAVORS = {"SMALL": Resources(0.5, 512, 1), "MEDIUM": Resources(1.0, 1024, 2)}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _untar(blob: str) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(blob)), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def _zk_renders(catalog: Catalog, n: int = 3) -> tuple[list[RenderedRole], object]:
    spec = parse_spec({"nodeGroups": [{"name": "zk", "roles": ["zookeeper"], "instanceNum": n}]})
    plan = plan_cluster(spec, catalog, cluster_name="zk", distro="zookeeper", flavors=FLAVORS)
    topo = topology_from_plan(plan, catalog)
    return [render_role(catalog.roles["zookeeper"], topo, "zk-zk-1")], topo


def test_bundle_is_deterministic_and_round_trips() -> None:
    files = {"/etc/a/b.conf": "x=1\n", "/var/lib/c/myid": "2\n"}
    assert bundle_files(files) == bundle_files(dict(reversed(list(files.items()))))
    assert _untar(bundle_files(files)) == {"etc/a/b.conf": "x=1\n", "var/lib/c/myid": "2\n"}


def test_bundle_refuses_relative_paths() -> None:
    with pytest.raises(ValueError, match="not absolute"):
        bundle_files({"etc/x": ""})


def test_node_env_carries_config_and_role_scripts(catalog: Catalog) -> None:
    renders, _ = _zk_renders(catalog)
    env = node_env(renders, generation=1)
    assert env["CP_ROLES"] == "zookeeper" and env["CP_GENERATION"] == "1"
    files = _untar(env["CP_FILES"])
    assert "server.2=zk-zk-1:2888:3888" in files["etc/cellplane/zookeeper/zoo.cfg"]
    assert files["var/lib/cellplane/zookeeper/myid"].strip() == "2"
    assert (
        files["etc/cellplane/roles/zookeeper.sh"].splitlines()[-1].startswith("exec /usr/bin/java")
    )
    assert set(node_files(renders)) == {f"/{k}" for k in files}


def test_role_script_quotes_arguments_and_env() -> None:
    r = RenderedRole("r", "n", {}, ["printf", "%s|%s\\n", "a b", "$HOME;`x`"], {"K": "v w"}, None)
    out = subprocess.run(
        ["bash", "-c", role_script(r)], capture_output=True, text=True, check=True
    ).stdout
    assert out == "a b|$HOME;`x`\n"
    r2 = RenderedRole("r", "n", {}, ["sh", "-c", 'printf %s "$K"'], {"K": "v w"}, None)
    out = subprocess.run(["bash", "-c", role_script(r2)], capture_output=True, text=True).stdout
    assert out == "v w"


def test_supervisor_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", "-c", SUPERVISOR], check=True)


def test_write_files_command_is_valid_bash(catalog: Catalog) -> None:
    renders, _ = _zk_renders(catalog)
    cmd = write_files_command(renders, 7)
    assert cmd[:2] == ["/bin/bash", "-c"]
    subprocess.run(["bash", "-n", "-c", cmd[2]], check=True)
    assert "/etc/cellplane/generation" in cmd[2]


def test_probe_commands() -> None:
    tcp = probe_command(RenderedReadiness("tcp", 5, 1, port=2181))
    assert tcp == ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/2181"]
    http = probe_command(RenderedReadiness("http", 5, 1, port=2379, path="/health"))
    assert "GET /health HTTP/1.0" in http[2] and "/dev/tcp/127.0.0.1/2379" in http[2]
    subprocess.run(["bash", "-n", "-c", http[2]], check=True)
    assert probe_command(RenderedReadiness("exec", 5, 1, argv=("true",))) == ["true"]
    assert tail_command("zookeeper") == ["tail", "-n", "30", "/var/log/cellplane/zookeeper.log"]


def test_stop_waves_reverse_the_start_order() -> None:
    assert stop_waves([("a", "b"), ("c",)]) == [["c"], ["a", "b"]]


def _task(*names: str) -> Task:
    return Task(
        id="tsk-1",
        kind="CREATE_CLUSTER",
        state="QUEUED",
        entity_kind="cluster",
        entity_id="clu-1",
        steps=[
            {"name": n, "state": "QUEUED", "started_at": None, "finished_at": None, "error": None}
            for n in names
        ],
        progress=0,
        created_at=NOW,
    )


def test_set_step_touches_one_step_only() -> None:
    task = _task("a:x", "b:x", "c:x")
    assert set_step(task, "c:x", "COMPLETED", NOW)
    assert [s["state"] for s in task.steps] == ["QUEUED", "QUEUED", "COMPLETED"]
    assert task.state == "STARTED" and task.progress == 33
    assert not set_step(task, "c:x", "COMPLETED", NOW)
    assert set_step(task, "a:x", "ERROR", NOW, error="boom")
    assert task.steps[0]["error"] == "boom"


def test_failure_message_names_node_role_and_log() -> None:
    msg = failure_message("zk-zk-0", "zookeeper", "not ready after 60 s", "line1\nline2\n")
    assert msg.startswith("node zk-zk-0 role zookeeper: not ready after 60 s")
    assert msg.endswith("line1\nline2")
    assert str(NodeFailure("n", None, "gone")) == "node n: gone"


def test_filtered_topology_for_a_joining_member(catalog: Catalog) -> None:
    spec = parse_spec({"nodeGroups": [{"name": "etcd", "roles": ["etcd"], "instanceNum": 5}]})
    plan = plan_cluster(spec, catalog, cluster_name="et", distro="etcd", flavors=FLAVORS)
    full = topology_from_plan(plan, catalog)
    present = {"et-etcd-0", "et-etcd-1", "et-etcd-2", "et-etcd-3"}
    topo = filtered_topology(full, present, "existing")
    r = render_role(catalog.roles["etcd"], topo, "et-etcd-3")
    initial = next(a for a in r.command if a.startswith("--initial-cluster="))
    assert initial.count("=http://") == 4 and "et-etcd-4" not in initial
    assert "--initial-cluster-state=existing" in r.command
    assert r.join is not None and "et-etcd-3" not in r.join[1] and "et-etcd-4" not in r.join[1]
