"""The postgres-ha distro: Patroni's config per node over the etcd members, its passwords (one per
cluster, derived from the server's key, never in the command or the env), its readiness probe
and the settings it accepts."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from clusters_support import FLAVORS

from cellplane.clusters import Catalog, Member, PlanError, Topology, plan_cluster, render_role
from cellplane.clusters.configuration import configuration_issues
from cellplane.clusters.planner import topology_from_plan
from cellplane.clusters.roles import UNSET_SECRET, RoleError, cluster_password
from cellplane.clusters.spec import parse_spec
from cellplane.sealing import Sealer

CONFIG = "/etc/cellplane/patroni/patroni.yml"

ROOT = "f" * 64


def _members(group: str, count: int) -> tuple[Member, ...]:
    return tuple(
        Member(f"pg-{group}-{i}", f"pg-{group}-{i}", i + 1, i, group) for i in range(count)
    )


def _topology(catalog: Catalog, secret: str = ROOT, **kw: Any) -> Topology:
    members = {"etcd": _members("etcd", 3), "patroni": _members("postgres", 3)}
    ports = {role: catalog.roles[role].ports for role in members}
    return Topology("pg", members, ports, secret=secret, **kw)


def _config(catalog: Catalog, node: str, topology: Topology | None = None) -> Any:
    rendered = render_role(catalog.roles["patroni"], topology or _topology(catalog), node)
    return yaml.safe_load(rendered.files[CONFIG])


def test_each_node_gets_its_own_patroni_config_over_the_etcd_members(catalog: Catalog) -> None:
    configs = [_config(catalog, f"pg-postgres-{i}") for i in range(3)]
    first = configs[0]
    assert first["scope"] == "pg" and first["name"] == "pg-postgres-0"
    assert first["etcd3"] == {"hosts": ["pg-etcd-0:2379", "pg-etcd-1:2379", "pg-etcd-2:2379"]}
    assert first["restapi"]["connect_address"] == "pg-postgres-0:8008"
    pg = first["postgresql"]
    assert pg["connect_address"] == "pg-postgres-0:5432"
    assert pg["bin_dir"] == "/usr/lib/postgresql/15/bin"
    # PGDATA is inside the role's data_dir: the node's data volume.
    assert pg["data_dir"].startswith(catalog.roles["patroni"].data_dir + "/")
    dcs = first["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 5, 5)
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]  # Patroni's rule
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["parameters"]["wal_log_hints"] == "on"  # pg_rewind needs it
    assert [c["name"] for c in configs] == ["pg-postgres-0", "pg-postgres-1", "pg-postgres-2"]
    # Same cluster, same passwords on every node.
    assert len({c["postgresql"]["authentication"]["replication"]["password"] for c in configs}) == 1


def test_passwords_are_per_cluster_and_never_in_the_command_or_env(catalog: Catalog) -> None:
    auth = _config(catalog, "pg-postgres-1")["postgresql"]["authentication"]
    replication, superuser = auth["replication"]["password"], auth["superuser"]["password"]
    assert replication == cluster_password(ROOT, "replication")
    assert superuser == cluster_password(ROOT, "superuser")
    assert replication != superuser and len(replication) == 32
    other = _config(catalog, "pg-postgres-1", _topology(catalog, secret="e" * 64))
    assert other["postgresql"]["authentication"]["replication"]["password"] != replication
    rendered = render_role(catalog.roles["patroni"], _topology(catalog), "pg-postgres-1")
    visible = " ".join([*rendered.command, *rendered.env.values(), *(rendered.readiness.argv)])  # type: ignore[union-attr]
    assert replication not in visible and superuser not in visible
    # The root secret is not part of the topology's repr (logs, tracebacks).
    assert ROOT not in repr(_topology(catalog))


def test_without_a_root_secret_the_password_is_a_placeholder(catalog: Catalog) -> None:
    # A create's render check runs before the executor derives the secret.
    auth = _config(catalog, "pg-postgres-0", _topology(catalog, secret=""))["postgresql"]
    assert auth["authentication"]["replication"]["password"] == UNSET_SECRET
    with pytest.raises(RoleError, match="non-empty name"):
        cluster_password(ROOT, "")


def test_the_server_key_derives_a_stable_secret_per_label(tmp_path: Path) -> None:
    sealer = Sealer(tmp_path / "a")
    one = sealer.derive("cluster/p1/pg")
    assert one == Sealer(tmp_path / "a").derive("cluster/p1/pg")  # same key file: same secret
    assert one != sealer.derive("cluster/p1/pg2") and one != sealer.derive("cluster/p2/pg")
    assert Sealer(tmp_path / "b").derive("cluster/p1/pg") != one  # another key
    assert len(one) == 64 and int(one, 16) >= 0


def _serve(answers: dict[str, Any]) -> tuple[http.server.HTTPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answers[self.path]).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.mark.parametrize(
    ("me", "roles", "ready"),
    [
        ({"role": "master", "state": "running"}, ["leader", "replica", "replica"], True),
        ({"role": "master", "state": "starting"}, ["leader", "replica"], False),
        ({"role": "master", "state": "running"}, ["replica", "replica"], False),
        ({"role": "master", "state": "running"}, ["leader", "leader"], False),
        # A replica whose WAL receiver is not streaming (no server on the socket here).
        ({"role": "replica", "state": "running"}, ["leader", "replica"], False),
    ],
)
def test_readiness_probe_asks_patroni_for_one_leader_and_this_node_serving(
    catalog: Catalog, me: dict[str, str], roles: list[str], ready: bool, tmp_path: Path
) -> None:
    rendered = render_role(catalog.roles["patroni"], _topology(catalog), "pg-postgres-2")
    check = rendered.readiness
    assert check is not None and check.kind == "exec"
    assert check.argv[:2] == ("/usr/bin/python3", "-c")
    assert "pg_stat_wal_receiver" in check.argv[2]
    members = [{"name": f"m{i}", "role": r} for i, r in enumerate(roles)]
    server, port = _serve({"/patroni": me, "/cluster": {"members": members}})
    try:
        code = check.argv[2].replace("127.0.0.1:8008", f"127.0.0.1:{port}")
        # psql finds no server in an empty socket directory: not streaming.
        code = code.replace('"/tmp"', repr(str(tmp_path)))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert (r.returncode == 0) is ready, r.stdout + r.stderr


def test_the_shipped_spec_plans_etcd_before_patroni(catalog: Catalog) -> None:
    spec = catalog.find_spec("postgres-ha")
    plan = plan_cluster(spec, catalog, cluster_name="pg", distro="postgres-ha", flavors=FLAVORS)
    assert [n.name for n in plan.nodes if "patroni" in n.roles] == [
        "pg-postgres-0",
        "pg-postgres-1",
        "pg-postgres-2",
    ]
    etcd_wave = next(i for i, w in enumerate(plan.waves) if "pg-etcd-0" in w)
    pg_wave = next(i for i, w in enumerate(plan.waves) if "pg-postgres-0" in w)
    assert etcd_wave < pg_wave
    # The plan's secret reaches the templates; the default plan has none.
    assert topology_from_plan(plan, catalog).secret == ""


def _spec(configuration: dict[str, Any]) -> Any:
    groups = [
        {"name": "etcd", "roles": ["etcd"], "instanceNum": 3},
        {"name": "postgres", "roles": ["patroni"], "instanceNum": 3},
    ]
    return parse_spec({"nodeGroups": groups, "configuration": configuration})


def test_patroni_settings_are_checked_by_name(catalog: Catalog) -> None:
    good = _spec({"patroni": {"patroni": {"ttl": 30}, "postgresql": {"max_connections": "50"}}})
    assert configuration_issues(good, catalog) == []
    config = _config_of(good, catalog)
    assert config["bootstrap"]["dcs"]["ttl"] == 30
    assert config["bootstrap"]["dcs"]["postgresql"]["parameters"]["max_connections"] == 50
    bad = _spec({"patroni": {"patroni": {"ttl": 5}, "postgresql": {"fsync": "off"}}})
    issues = [str(i) for i in configuration_issues(bad, catalog)]
    assert (
        issues[0] == "configuration.patroni.patroni.ttl: must be an integer from 20 to 300, not 5"
    )
    assert issues[1].startswith("configuration.patroni.postgresql.fsync: not a setting"), issues
    with pytest.raises(PlanError, match="ttl: must be an integer from 20 to 300"):
        plan_cluster(bad, catalog, cluster_name="pg", distro="postgres-ha", flavors=FLAVORS)


def _config_of(spec: Any, catalog: Catalog) -> Any:
    plan = plan_cluster(spec, catalog, cluster_name="pg", distro="postgres-ha", flavors=FLAVORS)
    topo = topology_from_plan(plan, catalog)
    return _config(catalog, "pg-postgres-0", topo)


@pytest.mark.skipif(not os.path.exists("/usr/bin/patroni"), reason="needs Debian's patroni")
def test_patroni_itself_accepts_the_rendered_config(catalog: Catalog, tmp_path: Path) -> None:
    # Patroni resolves the etcd hosts and refuses 127.0.0.1 as a connect address.
    members = {
        role: tuple(Member(m.name, "127.0.0.2", m.id, m.index, m.group) for m in ms)
        for role, ms in _topology(catalog).members.items()
    }
    topo = Topology("pg", members, _topology(catalog).ports, secret=ROOT)
    rendered = render_role(catalog.roles["patroni"], topo, "pg-postgres-0")
    path = tmp_path / "patroni.yml"
    path.write_text(rendered.files[CONFIG])
    r = subprocess.run(
        ["/usr/bin/patroni", "--validate-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # No etcd runs and the data directory does not exist here; everything else must be valid.
    problems = [
        line
        for line in (r.stdout + r.stderr).splitlines()
        if line.strip() and "data_dir" not in line and "127.0.0.2:2379 is not reachable" not in line
    ]
    assert problems == [], r.stdout + r.stderr
