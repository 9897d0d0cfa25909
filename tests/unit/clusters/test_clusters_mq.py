"""The RabbitMQ and MariaDB Galera distros: catalog entries, rendered files and settings, and the
per-cluster secret (the Erlang cookie) that the executor derives from the server's key."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from clusters_support import FLAVORS

from cellplane.clusters import Catalog
from cellplane.clusters.configuration import configuration_issues
from cellplane.clusters.deployable import distro_status
from cellplane.clusters.planner import plan_cluster, topology_from_plan
from cellplane.clusters.roles import UNSET_SECRET, RenderedRole, cluster_password, render_role
from cellplane.clusters.spec import export_spec, parse_spec
from cellplane.sealing import Sealer

SECRET = "ab" * 32


def _renders(catalog: Catalog, distro: str, secret: str = SECRET) -> dict[str, RenderedRole]:
    plan = plan_cluster(
        catalog.find_spec(distro), catalog, cluster_name="q", distro=distro, flavors=FLAVORS
    )
    topology = topology_from_plan(replace(plan, secret=secret), catalog)
    return {n.name: render_role(catalog.roles[distro], topology, n.name) for n in plan.nodes}


def test_both_distros_ship_a_three_node_spec_with_a_data_volume(catalog: Catalog) -> None:
    for distro, data in (
        ("rabbitmq", "/var/lib/cellplane/rabbitmq"),
        ("galera", "/var/lib/cellplane/galera"),
    ):
        assert distro in catalog.distros
        spec = catalog.find_spec(distro)
        assert [g.instance_num for g in spec.node_groups] == [3]
        assert catalog.roles[distro].data_dir == data
        assert not catalog.roles[distro].scale_in


def test_rabbitmq_nodes_share_the_cookie_and_join_the_seed(catalog: Catalog) -> None:
    renders = _renders(catalog, "rabbitmq")
    seed, second, third = (renders[f"q-rabbit-{i}"] for i in range(3))
    for r in (seed, second, third):
        assert r.files["/etc/cellplane/rabbitmq/cookie"] == cluster_password(
            SECRET, "erlang-cookie"
        )
        conf = r.files["/etc/rabbitmq/rabbitmq.conf"]
        assert "cluster_formation.classic_config.nodes.1 = rabbit@q-rabbit-0\n" in conf
        assert "vm_memory_high_watermark.relative = 0.4\n" in conf
        env = r.files["/etc/rabbitmq/rabbitmq-env.conf"]
        assert f"NODENAME=rabbit@{r.node}\n" in env
        ready = r.files["/etc/cellplane/rabbitmq/ready.py"]
        assert all(f'"rabbit@q-rabbit-{i}",' in ready for i in range(3))
    # Only members other than the seed wait for it (and only with an empty database).
    assert "check_running" not in seed.files["/etc/cellplane/rabbitmq/start.sh"]
    start = second.files["/etc/cellplane/rabbitmq/start.sh"]
    assert "seed=rabbit@q-rabbit-0\n" in start
    assert 'if [ ! -d "/var/lib/cellplane/rabbitmq/rabbit@q-rabbit-1" ]' in start
    assert seed.readiness is not None and seed.readiness.argv[-1].endswith("ready.py")


def test_rabbitmq_refuses_to_start_without_a_cookie(catalog: Catalog, tmp_path: Path) -> None:
    start = _renders(catalog, "rabbitmq", secret="")["q-rabbit-0"]
    # Without the executor's root secret, secret() renders the placeholder no node is given.
    assert start.files["/etc/cellplane/rabbitmq/cookie"] == UNSET_SECRET
    assert "no Erlang cookie was rendered" in start.files["/etc/cellplane/rabbitmq/start.sh"]


def test_galera_first_member_bootstraps_and_all_list_every_member(catalog: Catalog) -> None:
    renders = _renders(catalog, "galera")
    gcomm = "gcomm://q-galera-0:4567,q-galera-1:4567,q-galera-2:4567\n"
    for r in renders.values():
        cnf = r.files["/etc/cellplane/galera/my.cnf"]
        assert f"wsrep_cluster_address = {gcomm}" in cnf
        assert f"wsrep_node_address = {r.node}:4567\n" in cnf
        assert "wsrep_cluster_name = q\n" in cnf
        assert "gcache.size=128M;ist.recv_addr=" in cnf
        assert r.readiness is not None
        assert "wsrep_cluster_size=3 wsrep_ready=ON " in r.readiness.argv[-1]
    assert "--wsrep-new-cluster" in renders["q-galera-0"].files["/etc/cellplane/galera/start.sh"]
    for joiner in ("q-galera-1", "q-galera-2"):
        assert "--wsrep-new-cluster" not in renders[joiner].files["/etc/cellplane/galera/start.sh"]


def test_settings_are_rendered_and_bad_values_refused_by_name(catalog: Catalog) -> None:
    spec = parse_spec(
        {
            "nodeGroups": [{"name": "galera", "roles": ["galera"], "instanceNum": 3}],
            "configuration": {"galera": {"galera": {"max_connections": 5, "bogus": 1}}},
        }
    )
    messages = sorted(f"{i.path}: {i.message}" for i in configuration_issues(spec, catalog))
    assert len(messages) == 2, messages
    assert messages[0].startswith("configuration.galera.galera.bogus")
    assert "max_connections: must be an integer from 10 to 10000, not 5" in messages[1]
    spec = parse_spec(
        {
            "nodeGroups": [{"name": "rabbit", "roles": ["rabbitmq"], "instanceNum": 3}],
            "configuration": {
                "rabbitmq": {"rabbitmq": {"cluster_partition_handling": "pause-all"}}
            },
        }
    )
    (issue,) = configuration_issues(spec, catalog)
    assert "must be one of ignore, pause_minority, autoheal, not 'pause-all'" in issue.message


def test_the_cluster_secret_is_stable_per_key_and_purpose(tmp_path: Path) -> None:
    one = Sealer(tmp_path / "a")
    assert one.derive("cluster-secret:1") == one.derive("cluster-secret:1")
    assert one.derive("cluster-secret:1") != one.derive("cluster-secret:2")
    assert len(one.derive("x")) == 64 and int(one.derive("x"), 16) >= 0
    # Another key (another server) gives another secret for the same cluster id.
    assert Sealer(tmp_path / "b").derive("cluster-secret:1") != one.derive("cluster-secret:1")


@pytest.mark.parametrize("distro", ["rabbitmq", "galera"])
def test_the_secret_is_not_in_the_plan_repr(catalog: Catalog, distro: str) -> None:
    plan = plan_cluster(
        catalog.find_spec(distro), catalog, cluster_name="q", distro=distro, flavors=FLAVORS
    )
    assert SECRET not in repr(replace(plan, secret=SECRET))


@pytest.mark.parametrize("distro", ["rabbitmq", "galera"])
def test_each_distro_spec_exports_and_reimports_unchanged(catalog: Catalog, distro: str) -> None:
    spec = catalog.find_spec(distro)
    exported = export_spec(spec)
    assert exported["nodeGroups"][0]["roles"] == [distro]
    assert parse_spec(exported) == spec
    plan = plan_cluster(
        parse_spec(exported), catalog, cluster_name="q", distro=distro, flavors=FLAVORS
    )
    assert [n.name for n in plan.nodes] == [f"q-{spec.node_groups[0].name}-{i}" for i in range(3)]


def test_a_host_without_the_software_shows_them_not_deployable(catalog: Catalog) -> None:
    def bare(path: str) -> bool:
        return not path.startswith(("/usr/lib/rabbitmq/", "/usr/sbin/mariadbd", "/usr/lib/galera"))

    rabbit = distro_status(catalog, "rabbitmq", bare)
    assert not rabbit.deployable
    (reason,) = rabbit.reasons
    assert "needs /usr/lib/rabbitmq/bin/rabbitmq-server" in reason
    assert "apt-get install rabbitmq-server" in reason
    galera = distro_status(catalog, "galera", bare)
    assert not galera.deployable
    (reason,) = galera.reasons
    assert "/usr/sbin/mariadbd" in reason and "/usr/lib/galera/libgalera_smm.so" in reason
    assert "mariadb-server" in reason and "galera-4" in reason
