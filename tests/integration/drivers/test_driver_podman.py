"""PodmanDriver against a real podman service: lifecycle, rootfs, limits, ports, networks,
volumes and errors. Containers only talk to each other and to the test over loopback."""

from __future__ import annotations

import ipaddress
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cellplane.drivers import errors
from cellplane.drivers.base import ContainerSpec, MountSpec, NetworkSpec, PortSpec
from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.cgroups import CgroupLimits, cgroup_limits

from .conftest import IMAGE, Engine

MIB = 1024 * 1024

pytestmark = pytest.mark.integration


def test_lifecycle(engine: Engine) -> None:
    driver = engine.driver
    spec = engine.spec(
        "life",
        ["sh", "-c", "echo started; echo oops >&2; exec sleep 300"],
        env={"GREETING": "hello"},
        hostname="life-host",
    )
    cid = driver.create(spec)
    created = driver.inspect(cid)
    assert (created.state, created.running, created.name) == ("created", False, spec.name)
    assert created.labels == engine.labels
    assert created.exit_code is None and created.started_at is None

    driver.start(cid)
    running = driver.inspect(spec.name)
    assert running.running and running.state == "running"
    assert running.started_at is not None and running.address is not None
    assert [i.id for i in driver.list(engine.labels) if i.name == spec.name] == [cid]

    assert engine.wait_for(lambda: b"oops" in b"".join(driver.logs(cid)))
    assert b"".join(driver.logs(cid, tail=1)) == b"oops\n"
    result = engine.exec_ok(cid, ["sh", "-c", "echo $GREETING; hostname"])
    assert result.output == b"hello\nlife-host\n"
    assert driver.exec(cid, ["sh", "-c", "exit 7"]).exit_code == 7

    driver.stop(cid, timeout=1)
    stopped = driver.inspect(cid)
    assert not stopped.running and stopped.state == "exited"
    assert stopped.exit_code is not None and stopped.finished_at is not None
    driver.stop(cid, timeout=1)  # already stopped: no error

    driver.start(cid)
    driver.kill(cid)
    assert engine.wait_for(lambda: driver.inspect(cid).exit_code == 137)
    driver.kill(cid)  # not running: no error
    listed = [i for i in driver.list(engine.labels) if i.id == cid]
    assert listed[0].exit_code == 137 and listed[0].state == "exited"

    driver.remove(cid)
    with pytest.raises(errors.ContainerNotFound):
        driver.inspect(cid)
    with pytest.raises(errors.ContainerNotFound):
        driver.remove(cid)
    with pytest.raises(errors.ContainerNotFound):
        driver.start(cid)


def test_logs_follow_ends_when_container_exits(engine: Engine) -> None:
    cid = engine.run_container(
        "follow", ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"]
    )
    assert b"".join(engine.driver.logs(cid, follow=True)) == b"1\n2\n3\n"


def test_create_errors(engine: Engine) -> None:
    driver = engine.driver
    spec = engine.spec("dup", ["sleep", "300"])
    driver.create(spec)
    with pytest.raises(errors.NameConflict):
        driver.create(spec)
    with pytest.raises(errors.ImageNotFound):
        driver.create(engine.spec("noimg", ["true"], image=f"missing-{uuid.uuid4().hex}:1"))
    with pytest.raises(errors.NetworkNotFound):
        driver.create(engine.spec("nonet", ["true"], network=f"missing-{uuid.uuid4().hex}"))


def test_unreachable_engine_is_temporary(tmp_path: Path) -> None:
    driver = PodmanDriver(f"unix://{tmp_path}/absent.sock", timeout=2)
    with pytest.raises(errors.TemporaryDriverError):
        driver.ping()
    with pytest.raises(errors.TemporaryDriverError):
        driver.list({})
    driver.close()


def test_images(engine: Engine) -> None:
    driver = engine.driver
    assert driver.has_image(IMAGE)
    assert not driver.has_image(f"missing-{uuid.uuid4().hex}")
    tag = f"t{engine.run}-extra:1"
    loaded = driver.load_image(build_busybox_archive(engine.archive.parent, tag=tag))
    assert any(name.endswith(tag) for name in loaded)
    assert driver.has_image(tag)
    driver.remove_image(tag)
    assert not driver.has_image(tag)
    assert driver.has_image(IMAGE)  # same image id, other tag untouched
    with pytest.raises(errors.ImageNotFound):
        driver.remove_image(tag)


def test_host_rootfs_sees_host_files_and_writes_stay_inside(engine: Engine) -> None:
    host_version = Path("/etc/debian_version").read_text()
    probe = f"/etc/cellplane-probe-{uuid.uuid4().hex}"
    spec = ContainerSpec(
        name=engine.name("rootfs"),
        rootfs="/",
        command=["sleep", "300"],
        labels=dict(engine.labels),
        memory_mb=48,
    )
    cid = engine.driver.create(spec)
    engine.driver.start(cid)
    info = engine.driver.inspect(cid)
    assert info.running and info.image is None
    assert engine.exec_ok(cid, ["cat", "/etc/debian_version"]).output.decode() == host_version
    engine.exec_ok(cid, ["sh", "-c", f"echo inside > {probe}"])
    assert engine.exec_ok(cid, ["cat", probe]).output == b"inside\n"
    assert not Path(probe).exists()
    limit = engine.exec_ok(cid, ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
    assert int(limit.output) == 48 * 1024 * 1024


def _limits(engine: Engine, cid: str) -> CgroupLimits:
    pid = int(engine.driver._api.inspect_container(cid)["State"]["Pid"])
    return cgroup_limits(pid)


def test_memory_at_create_a_small_cpu_limit_after_start(engine: Engine) -> None:
    cid = engine.run_container("limits", ["sleep", "300"], memory_mb=64, cpu=0.2)
    started = _limits(engine, cid)
    assert started.memory_bytes == 64 * MIB
    assert started.cpu_quota_us is None  # the start ran without a CFS quota
    engine.driver.apply_limits(cid, 0.2, 64)
    limited = _limits(engine, cid)
    assert limited.cpu == pytest.approx(0.2) and limited.memory_bytes == 64 * MIB
    # What the container itself sees (cgroup v1 here: its own cgroup mounted at the root).
    quota = engine.exec_ok(
        cid, ["cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"]
    )
    quota_us, period_us = (int(x) for x in quota.output.split())
    assert quota_us / period_us == pytest.approx(0.2)


def test_a_limit_of_half_a_core_or_more_is_there_from_the_start(engine: Engine) -> None:
    """From 0.5 core the quota does not slow the start (`podman_bodies.quota_at_create`): the
    container is created with it, and the first `apply_limits` of the same limits changes
    nothing (no engine call); another limit is applied as ever."""
    cid = engine.run_container("limits-at-create", ["sleep", "300"], memory_mb=64, cpu=0.5)
    assert _limits(engine, cid) == CgroupLimits(50_000, 100_000, 64 * MIB)
    engine.driver.apply_limits(cid, 0.5, 64)
    assert _limits(engine, cid) == CgroupLimits(50_000, 100_000, 64 * MIB)
    engine.driver.apply_limits(cid, 0.75, 64)
    assert _limits(engine, cid) == CgroupLimits(75_000, 100_000, 64 * MIB)
    engine.driver.stop(cid, timeout=0)
    engine.driver.start(cid)  # a later start: the quota it was created with
    assert _limits(engine, cid) == CgroupLimits(50_000, 100_000, 64 * MIB)


def test_apply_limits_changes_and_lifts_them_until_the_next_start(engine: Engine) -> None:
    cid = engine.run_container("relimit", ["sleep", "300"])
    engine.driver.apply_limits(cid, 0.01, 16)
    assert _limits(engine, cid) == CgroupLimits(1_000, 100_000, 16 * MIB)
    engine.driver.apply_limits(cid, 0.001, 24)  # under the kernel's 1 ms: raised to it
    assert _limits(engine, cid) == CgroupLimits(1_000, 100_000, 24 * MIB)
    engine.driver.apply_limits(cid, 0, 0)
    assert _limits(engine, cid) == CgroupLimits(None, 100_000, None)
    engine.driver.apply_limits(cid, 0.25, 32)
    engine.driver.stop(cid, timeout=0)
    engine.driver.start(cid)
    assert _limits(engine, cid).cpu_quota_us is None  # a start runs without: set them again


def test_apply_limits_errors(engine: Engine) -> None:
    with pytest.raises(errors.ContainerNotFound):
        engine.driver.apply_limits(f"t{engine.run}-missing", 0.5, 64)
    cid = engine.driver.create(engine.spec("notrunning", ["sleep", "300"]))
    with pytest.raises(errors.PermanentDriverError):
        engine.driver.apply_limits(cid, 0.5, -1)


def test_a_full_network_raises_addresses_exhausted(engine: Engine) -> None:
    # A /29 holds six addresses, the gateway takes one: five containers, then none.
    name = engine.name("tiny")
    engine.driver.ensure_network(NetworkSpec(name, subnet="10.251.7.0/29", labels=engine.labels))
    for k in range(5):
        engine.run_container(f"fill{k}", ["sleep", "300"], network=name)
    cid = engine.driver.create(engine.spec("over", ["sleep", "300"], network=name))
    with pytest.raises(errors.AddressesExhausted, match="failed to find free IP"):
        engine.driver.start(cid)


def _http_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        conn.sendall(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while chunk := conn.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("rootfs", [False, True], ids=["image", "host-rootfs"])
def test_published_port_reaches_the_container(engine: Engine, rootfs: bool) -> None:
    token = uuid.uuid4().hex
    # Full busybox paths: the host rootfs has its own sh and no httpd applet links.
    serve = (
        f"mkdir -p /tmp/www && echo {token} > /tmp/www/index.html"
        " && exec /bin/busybox httpd -f -p 8080 -h /tmp/www"
    )
    command = ["/bin/busybox", "sh", "-c", serve]
    kwargs: dict[str, object] = {"ports": [PortSpec(8080, None)]}
    if rootfs:
        kwargs.update(image=None, rootfs="/")
    cid = engine.run_container("port", command, **kwargs)
    (port,) = engine.driver.inspect(cid).ports
    assert port.container_port == 8080 and port.host_port is not None

    def served() -> bool:
        try:
            return token.encode() in _http_get(port.host_port or 0)
        except OSError:
            return False

    assert engine.wait_for(served), b"".join(engine.driver.logs(cid))


def test_same_network_reaches_peer_by_alias(engine: Engine) -> None:
    network = engine.network("net")
    engine.run_container("db", ["sleep", "300"], network=network, aliases=["db", "primary"])
    client = engine.run_container("client", ["sleep", "300"], network=network)

    def reaches(name: str) -> bool:
        return engine.driver.exec(client, ["ping", "-c", "1", "-W", "1", name]).exit_code == 0

    assert engine.wait_for(lambda: reaches("db"))
    assert reaches("primary")


def test_different_networks_are_isolated(engine: Engine) -> None:
    net_a, net_b = engine.network("a"), engine.network("b")
    a1 = engine.run_container("a1", ["sleep", "300"], network=net_a)
    a2 = engine.run_container("a2", ["sleep", "300"], network=net_a)
    b1 = engine.run_container("b1", ["sleep", "300"], network=net_b)
    ip_a2, ip_b1 = engine.driver.inspect(a2).address, engine.driver.inspect(b1).address
    assert ip_a2 and ip_b1

    def ping(src: str, ip: str) -> int:
        return engine.driver.exec(src, ["ping", "-c", "1", "-W", "1", ip]).exit_code

    # Positive control first, so a failing negative means isolation, not a broken setup.
    assert ping(a1, ip_a2) == 0
    assert ping(a1, ip_b1) != 0
    assert ping(b1, ip_a2) != 0
    tcp = engine.driver.exec(a1, ["sh", "-c", f"echo x | nc -w 1 {ip_b1} 22"])
    assert tcp.exit_code != 0


def test_network_and_volume_housekeeping(engine: Engine) -> None:
    driver = engine.driver
    network = engine.network("house")
    driver.ensure_network(NetworkSpec(network, labels=engine.labels))  # idempotent
    assert network in driver.list_networks(engine.labels)
    driver.remove_network(network)
    driver.remove_network(network)  # idempotent
    assert network not in driver.list_networks(engine.labels)
    # The engine refuses to remove a network a container is on: the agent's collection of
    # unused networks (`Preparer.collect_networks`) relies on it for a cell being removed.
    used = engine.network("used")
    box = engine.run_container("on-used", ["sleep", "300"], network=used)
    with pytest.raises(errors.DriverError):
        driver.remove_network(used)
    assert used in driver.list_networks(engine.labels)
    driver.remove(box, force=True)

    volume = engine.name("vol")
    driver.ensure_volume(volume, engine.labels)
    driver.ensure_volume(volume, engine.labels)
    assert volume in driver.list_volumes(engine.labels)
    driver.remove_volume(volume)
    driver.remove_volume(volume)
    assert volume not in driver.list_volumes(engine.labels)


def test_volume_outlives_its_container(engine: Engine) -> None:
    driver = engine.driver
    volume = engine.name("data")
    driver.ensure_volume(volume, engine.labels)
    token = uuid.uuid4().hex
    writer = engine.run_container("writer", ["sleep", "300"], mounts=[MountSpec(volume, "/data")])
    engine.exec_ok(writer, ["sh", "-c", f"echo {token} > /data/token"])
    with pytest.raises(errors.VolumeInUse):
        driver.remove_volume(volume)
    driver.remove(writer, force=True)

    reader = engine.run_container(
        "reader", ["sleep", "300"], mounts=[MountSpec(volume, "/data", read_only=True)]
    )
    assert engine.exec_ok(reader, ["cat", "/data/token"]).output == f"{token}\n".encode()
    assert driver.exec(reader, ["touch", "/data/other"]).exit_code != 0
    driver.remove(reader, force=True)
    driver.remove_volume(volume)


def test_parallel_creates_share_one_driver(engine: Engine) -> None:
    names = [engine.name(f"par{i}") for i in range(8)]

    def create_and_start(name: str) -> str:
        container_id = engine.driver.create(
            ContainerSpec(name=name, image=IMAGE, command=["sleep", "300"], labels=engine.labels)
        )
        engine.driver.start(container_id)
        return container_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(create_and_start, names))
    assert len(set(ids)) == 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        infos = list(pool.map(engine.driver.inspect, ids))
    assert [i.name for i in infos] == names
    assert all(i.running for i in infos)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(engine.driver.remove, ids))
    remaining = {i.id for i in engine.driver.list(engine.labels)}
    assert remaining.isdisjoint(ids)


def test_followed_logs_outlive_the_request_timeout(engine: Engine) -> None:
    driver = PodmanDriver(engine.service.socket_url, timeout=1)
    try:
        cid = driver.create(engine.spec("slowlog", ["sh", "-c", "echo a; sleep 2.5; echo b"]))
        driver.start(cid)
        assert b"".join(driver.logs(cid, follow=True)) == b"a\nb\n"
    finally:
        driver.close()


def test_a_network_of_a_given_size_is_carved_from_the_pools(engine: Engine) -> None:
    name = engine.name("sized")
    engine.driver.ensure_network(NetworkSpec(name, labels=engine.labels, prefix_length=22))
    (subnet,) = engine.driver._network_subnets(name) or []
    net = ipaddress.ip_network(subnet)
    assert net.prefixlen == 22
    assert any(net.subnet_of(ipaddress.ip_network(p)) for p in engine.driver.subnet_pools)
    cid = engine.run_container("sized", ["sleep", "300"], network=name)
    address = engine.driver.inspect(cid).address
    assert address is not None and ipaddress.ip_address(address) in net
    # Asked for another size while a container uses it: adopted as it is.
    engine.driver.ensure_network(NetworkSpec(name, labels=engine.labels, prefix_length=21))
    assert engine.driver._network_subnets(name) == [subnet]
    # Unused: made again, of the size asked for.
    engine.driver.remove(cid)
    engine.driver.ensure_network(NetworkSpec(name, labels=engine.labels, prefix_length=21))
    (again,) = engine.driver._network_subnets(name) or []
    assert ipaddress.ip_network(again).prefixlen == 21
    # A second network of that size never overlaps the first.
    other = engine.name("sized2")
    engine.driver.ensure_network(NetworkSpec(other, labels=engine.labels, prefix_length=21))
    (second,) = engine.driver._network_subnets(other) or []
    assert not ipaddress.ip_network(second).overlaps(ipaddress.ip_network(again))
