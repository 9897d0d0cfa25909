"""Role rendering for a 3-node topology: zoo.cfg, etcd flags, redis and sentinel configs."""

from __future__ import annotations

import pytest

from cellplane.clusters import (
    Catalog,
    Member,
    RoleDefinition,
    RoleError,
    Topology,
    missing_binaries,
    render_role,
)


def _members(role_group: str, count: int, cluster: str = "demo") -> tuple[Member, ...]:
    return tuple(
        Member(
            name=f"{cluster}-{role_group}-{i}",
            address=f"10.0.0.{10 + i}",
            id=i + 1,
            index=i,
            group=role_group,
        )
        for i in range(count)
    )


def _topology(catalog: Catalog, members: dict[str, tuple[Member, ...]], **kw: object) -> Topology:
    ports = {role: catalog.roles[role].ports for role in members}
    return Topology(cluster_name="demo", members=members, ports=ports, **kw)  # type: ignore[arg-type]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_zookeeper_config_for_three_nodes(catalog: Catalog) -> None:
    role = catalog.roles["zookeeper"]
    topo = _topology(catalog, {"zookeeper": _members("zk", 3)})
    rendered = render_role(role, topo, "demo-zk-1")
    assert _lines(rendered.files["/etc/cellplane/zookeeper/zoo.cfg"]) == [
        "tickTime=2000",
        "initLimit=10",
        "syncLimit=5",
        "dataDir=/var/lib/cellplane/zookeeper",
        "clientPort=2181",
        "maxClientCnxns=60",
        "autopurge.snapRetainCount=3",
        "autopurge.purgeInterval=0",
        "admin.enableServer=false",
        "4lw.commands.whitelist=srvr,ruok,mntr",
        "quorumListenOnAllIPs=true",
        "server.1=10.0.0.10:2888:3888",
        "server.2=10.0.0.11:2888:3888",
        "server.3=10.0.0.12:2888:3888",
    ]
    # myid lives in dataDir and matches this node's server.N line.
    assert rendered.files["/var/lib/cellplane/zookeeper/myid"] == "2\n"
    assert [
        render_role(role, topo, f"demo-zk-{i}").files["/var/lib/cellplane/zookeeper/myid"]
        for i in range(3)
    ] == ["1\n", "2\n", "3\n"]
    assert "log4j.appender.CONSOLE.Target=System.out" in _lines(
        rendered.files["/etc/cellplane/zookeeper/log4j.properties"]
    )
    command = rendered.command
    assert command[0] == "/usr/bin/java"
    classpath = command[command.index("-cp") + 1].split(":")
    assert classpath[0] == "/etc/cellplane/zookeeper"
    # Every jar on the classpath is one the role requires, so a missing one is caught early.
    assert set(classpath[1:]) <= set(role.requires.binaries)
    assert command[-2:] == [
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        "/etc/cellplane/zookeeper/zoo.cfg",
    ]
    assert rendered.readiness is not None and rendered.readiness.kind == "exec"
    assert "/dev/tcp/127.0.0.1/2181" in rendered.readiness.argv[-1]
    assert "srvr" in rendered.readiness.argv[-1]


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)


def test_etcd_flags_for_three_nodes(catalog: Catalog) -> None:
    role = catalog.roles["etcd"]
    topo = _topology(catalog, {"etcd": _members("etcd", 3)})
    rendered = render_role(role, topo, "demo-etcd-0")
    assert rendered.command[0] == "/usr/bin/etcd"
    assert _flags(rendered.command) == {
        "name": "demo-etcd-0",
        "data-dir": "/var/lib/cellplane/etcd",
        "listen-peer-urls": "http://0.0.0.0:2380",
        "listen-client-urls": "http://0.0.0.0:2379",
        "initial-advertise-peer-urls": "http://10.0.0.10:2380",
        "advertise-client-urls": "http://10.0.0.10:2379",
        "initial-cluster": "demo-etcd-0=http://10.0.0.10:2380,"
        "demo-etcd-1=http://10.0.0.11:2380,demo-etcd-2=http://10.0.0.12:2380",
        "initial-cluster-state": "new",
        "initial-cluster-token": "demo",
        "heartbeat-interval": "100",
        "election-timeout": "1000",
        "snapshot-count": "100000",
        "logger": "zap",
        "log-outputs": "stdout",
    }
    assert rendered.readiness is not None
    assert (rendered.readiness.kind, rendered.readiness.port, rendered.readiness.path) == (
        "http",
        2379,
        "/health",
    )


def test_etcd_join_of_a_fourth_member(catalog: Catalog) -> None:
    role = catalog.roles["etcd"]
    topo = _topology(catalog, {"etcd": _members("etcd", 4)}, state="existing")
    rendered = render_role(role, topo, "demo-etcd-3")
    assert _flags(rendered.command)["initial-cluster-state"] == "existing"
    assert rendered.join == [
        "/usr/bin/etcdctl",
        "--endpoints=http://10.0.0.10:2379,http://10.0.0.11:2379,http://10.0.0.12:2379",
        "member",
        "add",
        "demo-etcd-3",
        "--peer-urls=http://10.0.0.13:2380",
    ]


def _redis_topology(catalog: Catalog) -> Topology:
    by_name = {
        "redis_primary": _members("primary", 1),
        "redis_replica": _members("replica", 2),
        "redis_sentinel": _members("sentinel", 3),
    }
    # Hostnames are node names: use them as addresses, as the executor does by default.
    named = {
        role: tuple(Member(m.name, m.name, m.id, m.index, m.group) for m in members)
        for role, members in by_name.items()
    }
    return _topology(catalog, named)


def test_redis_primary_and_replica(catalog: Catalog) -> None:
    topo = _redis_topology(catalog)
    primary = render_role(catalog.roles["redis_primary"], topo, "demo-primary-0")
    replica = render_role(catalog.roles["redis_replica"], topo, "demo-replica-1")
    primary_lines = _lines(primary.files["/etc/cellplane/redis/redis.conf"])
    replica_lines = _lines(replica.files["/etc/cellplane/redis/redis.conf"])
    common = [
        "bind 0.0.0.0",
        "port 6379",
        "protected-mode no",
        "daemonize no",
        "supervised no",
        'logfile ""',
        "dir /var/lib/redis",
        "appendonly yes",
    ]
    assert primary_lines == [*common, "replica-announce-ip demo-primary-0"]
    assert replica_lines == [
        *common,
        "replica-announce-ip demo-replica-1",
        "replicaof demo-primary-0 6379",
        "replica-read-only yes",
    ]
    assert not any(line.startswith("replicaof") for line in primary_lines)
    assert primary.command == ["/usr/bin/redis-server", "/etc/cellplane/redis/redis.conf"]
    assert replica.readiness is not None
    assert "master_link_status:up" in replica.readiness.argv[-1]


def test_redis_sentinel(catalog: Catalog) -> None:
    topo = _redis_topology(catalog)
    rendered = render_role(catalog.roles["redis_sentinel"], topo, "demo-sentinel-2")
    path = "/etc/cellplane/redis-sentinel/sentinel.conf"
    lines = _lines(rendered.files[path])
    assert lines == [
        "port 26379",
        "bind 0.0.0.0",
        "protected-mode no",
        "daemonize no",
        'logfile ""',
        "dir /tmp",
        "sentinel resolve-hostnames yes",
        "sentinel announce-hostnames yes",
        "sentinel monitor demo demo-primary-0 6379 2",
        "sentinel down-after-milliseconds demo 5000",
        "sentinel failover-timeout demo 10000",
        "sentinel parallel-syncs demo 1",
    ]
    # Sentinel rewrites the file it was started with.
    assert rendered.command == ["/usr/bin/redis-sentinel", path]


def test_strict_undefined_and_membership_errors(catalog: Catalog) -> None:
    topo = _topology(catalog, {"zookeeper": _members("zk", 3)})
    with pytest.raises(RoleError, match="not a member of role 'zookeeper'"):
        render_role(catalog.roles["zookeeper"], topo, "demo-zk-9")
    typo = RoleDefinition(name="zookeeper", command=("{{ node.nmae }}",))
    with pytest.raises(RoleError, match=r"command\[0\].*nmae"):
        render_role(typo, topo, "demo-zk-0")
    needs_etcd = RoleDefinition(name="zookeeper", env={"E": "{{ roles.etcd.ports.client }}"})
    with pytest.raises(RoleError, match=r"env\.E"):
        render_role(needs_etcd, topo, "demo-zk-0")


def test_env_and_tcp_readiness_render(catalog: Catalog) -> None:
    members = {
        "kubernetes_master": _members("master", 1),
        "kubernetes_workstation": _members("workstation", 1),
        "kubernetes_minion": _members("minion", 2),
    }
    topo = _topology(catalog, members)
    station = render_role(catalog.roles["kubernetes_workstation"], topo, "demo-workstation-0")
    assert station.env["KUBERNETES_MASTER"] == "http://10.0.0.10:8080"
    minion = render_role(catalog.roles["kubernetes_minion"], topo, "demo-minion-1")
    assert minion.readiness is not None
    assert (minion.readiness.kind, minion.readiness.port) == ("tcp", 10250)
    assert "-hostname_override=demo-minion-1" in minion.command[-1]


def test_missing_binaries_for_mesos_on_debian(catalog: Catalog) -> None:
    # What a Debian 12 host with the zookeeper and redis packages has.
    debian = {
        "/usr/bin/java",
        "/usr/share/java/zookeeper.jar",
        "/usr/share/java/slf4j-log4j12.jar",
        "/usr/share/java/log4j-1.2.jar",
        "/bin/bash",
        "/bin/sh",
        "/bin/sleep",
        "/usr/bin/redis-server",
        "/usr/bin/redis-cli",
    }
    assert missing_binaries(catalog.roles["zookeeper"], debian.__contains__) == []
    assert missing_binaries(catalog.roles["mesos_master"], debian.__contains__) == [
        "/usr/sbin/mesos-master"
    ]
    for role in ("mesos_slave", "mesos_marathon", "mesos_chronos", "mesos_docker"):
        missing = missing_binaries(catalog.roles[role], debian.__contains__)
        assert missing == list(catalog.roles[role].requires.binaries), role
    etcd_missing = missing_binaries(catalog.roles["etcd"], debian.__contains__)
    assert etcd_missing == ["/usr/bin/etcd", "/usr/bin/etcdctl"]
