"""Spec -> engine request bodies, and engine answers -> ContainerInfo, without an engine."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from cellplane.drivers import errors
from cellplane.drivers.base import (
    DEFAULT_PIDS_LIMIT,
    DROPPED_CAPABILITIES,
    ContainerSpec,
    MountSpec,
    NetworkSpec,
    PortSpec,
)
from cellplane.drivers.podman import (
    compat_create_body,
    container_info_from_inspect,
    container_info_from_list,
    label_filters,
    libpod_create_body,
    libpod_network_body,
    libpod_update_body,
    network_fits,
    parse_load_output,
    sized_candidates,
)
from cellplane.drivers.podman_bodies import conflicting_networks, quota_at_create

MIB = 1024 * 1024


def full_spec(**overrides: Any) -> ContainerSpec:
    values: dict[str, Any] = {
        "name": "cell-1",
        "image": "busybox:latest",
        "command": ["sleep", "60"],
        "env": {"A": "1", "B": "two=2"},
        "labels": {"cellplane.cell": "c1"},
        "hostname": "web-0",
        "network": "proj-net",
        "aliases": ["web", "web-0"],
        "cpu": 1.5,
        "memory_mb": 256,
        "ports": [PortSpec(80, 8080), PortSpec(53, None, "udp")],
        "mounts": [MountSpec("data", "/data"), MountSpec("conf", "/etc/app", read_only=True)],
    }
    values.update(overrides)
    return ContainerSpec(**values)


def test_compat_body_carries_every_field() -> None:
    body = compat_create_body(full_spec())
    assert body["Image"] == "busybox:latest"
    assert body["Cmd"] == ["sleep", "60"]
    assert body["Env"] == ["A=1", "B=two=2"]
    assert body["Labels"] == {"cellplane.cell": "c1"}
    assert body["Hostname"] == "web-0"
    assert body["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    host = body["HostConfig"]
    # 1.5 cores: the quota at create (from 0.5 core it does not slow the start).
    assert (host["CpuQuota"], host["CpuPeriod"]) == (150_000, 100_000) and "NanoCpus" not in host
    assert host["Memory"] == 256 * MIB
    assert host["NetworkMode"] == "proj-net"
    assert host["DnsOptions"] == ["timeout:1", "attempts:2"]  # no minute-long lookups
    assert host["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "", "HostPort": ""}],
    }
    assert host["Mounts"] == [
        {"Type": "volume", "Source": "data", "Target": "/data", "ReadOnly": False},
        {"Type": "volume", "Source": "conf", "Target": "/etc/app", "ReadOnly": True},
    ]
    assert body["NetworkingConfig"] == {
        "EndpointsConfig": {"proj-net": {"Aliases": ["web", "web-0"]}}
    }


def test_compat_body_omits_unset_limits_and_defaults() -> None:
    spec = ContainerSpec(name="c", image="busybox", pids_limit=0)
    body = compat_create_body(spec)
    assert body["HostConfig"] == HARDENED_COMPAT  # and nothing else
    for key in ("Cmd", "Hostname", "ExposedPorts", "NetworkingConfig"):
        assert key not in body


def test_libpod_body_for_host_rootfs() -> None:
    body = libpod_create_body(full_spec(image=None, rootfs="/"))
    assert body["rootfs"] == "/"
    assert body["rootfs_overlay"] is True
    assert body["name"] == "cell-1"
    assert body["command"] == ["sleep", "60"]
    assert body["env"] == {"A": "1", "B": "two=2"}
    assert body["hostname"] == "web-0"
    # cpu: 1.5 cores at create (from 0.5 core it does not slow the start); pids: the default
    assert body["resource_limits"] == {
        "memory": {"limit": 256 * MIB},
        "cpu": {"quota": 150_000, "period": 100_000},
        "pids": {"limit": DEFAULT_PIDS_LIMIT},
    }
    assert body["netns"] == {"nsmode": "bridge"}
    assert body["Networks"] == {"proj-net": {"aliases": ["web", "web-0"]}}
    assert body["dns_option"] == ["timeout:1", "attempts:2"]
    assert body["portmappings"] == [
        {"container_port": 80, "host_port": 8080, "protocol": "tcp"},
        {"container_port": 53, "host_port": 0, "protocol": "udp"},
    ]
    assert body["volumes"] == [
        {"Name": "data", "Dest": "/data", "Options": []},
        {"Name": "conf", "Dest": "/etc/app", "Options": ["ro"]},
    ]
    assert "image" not in body


def test_body_builders_refuse_the_wrong_kind_of_spec() -> None:
    with pytest.raises(ValueError):
        compat_create_body(full_spec(image=None, rootfs="/"))
    with pytest.raises(ValueError):
        libpod_create_body(full_spec())


def test_network_body_is_isolated_bridge_with_dns() -> None:
    body = libpod_network_body(NetworkSpec("n", labels={"cellplane.project": "p"}, internal=True))
    assert body == {
        "name": "n",
        "driver": "bridge",
        "dns_enabled": True,
        "internal": True,
        "labels": {"cellplane.project": "p"},
        "options": {"isolate": "true"},
    }


def test_label_filters() -> None:
    assert label_filters({}) == {}
    assert label_filters({"b": "2", "a": "1"}) == {"label": ["a=1", "b=2"]}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image": None, "rootfs": None},
        {"rootfs": "/"},
        {"image": None, "rootfs": "/", "command": None},
        {"cpu": -1.0},
        {"memory_mb": -5},
        {"network": None},
        {"name": ""},
    ],
)
def test_invalid_specs_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        full_spec(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"container_port": 0}, {"container_port": 70000}, {"host_port": 0}, {"protocol": "icmp"}],
)
def test_invalid_ports_are_rejected(kwargs: dict[str, Any]) -> None:
    values: dict[str, Any] = {"container_port": 80, "host_port": None}
    values.update(kwargs)
    with pytest.raises(ValueError):
        PortSpec(**values)


def test_relative_mount_target_is_rejected() -> None:
    with pytest.raises(ValueError):
        MountSpec("v", "data")


# Trimmed from a real podman 4.3 compat inspect answer.
INSPECT_RUNNING: dict[str, Any] = {
    "Id": "d333b6d5",
    "Name": "/a1",
    "State": {
        "Status": "running",
        "Running": True,
        "ExitCode": 0,
        "Pid": 31337,
        "StartedAt": "2026-11-21T21:10:18.221054625Z",
        "FinishedAt": "0001-01-01T00:00:00Z",
    },
    "Config": {"Image": "localhost/busybox:latest", "Labels": {"cellplane.cell": "x"}},
    "NetworkSettings": {
        "IPAddress": "",
        "Ports": {"8080/tcp": [{"HostIp": "", "HostPort": "42195"}], "53/udp": None},
        "Networks": {"n1": {"IPAddress": "10.89.0.2"}},
    },
}


def test_info_from_inspect_running() -> None:
    info = container_info_from_inspect(INSPECT_RUNNING)
    assert info.id == "d333b6d5"
    assert info.name == "a1"
    assert info.state == "running"
    assert info.running is True
    assert info.exit_code is None
    assert info.started_at == "2026-11-21T21:10:18.221054625Z"
    assert info.finished_at is None
    assert info.address == "10.89.0.2"
    assert info.image == "localhost/busybox:latest"
    assert info.labels == {"cellplane.cell": "x"}
    assert info.ports == [PortSpec(8080, 42195, "tcp")]
    assert info.pid == 31337


def test_info_from_inspect_exited_rootfs() -> None:
    attrs = {
        "Id": "abc",
        "Name": "r1",
        "State": {
            "Status": "exited",
            "Running": False,
            "ExitCode": 137,
            "Pid": 0,
            "StartedAt": "2026-11-21T21:10:18Z",
            "FinishedAt": "2026-11-21T21:11:00Z",
        },
        "Config": {"Image": "", "Labels": None},
        "NetworkSettings": {"Networks": {"n1": {"IPAddress": ""}}, "Ports": {}},
    }
    info = container_info_from_inspect(attrs)
    assert (info.state, info.running, info.exit_code) == ("exited", False, 137)
    assert info.finished_at == "2026-11-21T21:11:00Z"
    assert info.address is None
    assert info.image is None
    assert info.labels == {}
    assert info.pid is None


def test_info_from_list_parses_exit_code_from_status() -> None:
    item = {
        "Id": "4406bb",
        "Names": ["/ex3"],
        "Image": "localhost/busybox:latest",
        "Labels": {"k": "v"},
        "State": "exited",
        "Status": "Exited (3) Less than a second ago",
        "Ports": [{"IP": "", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
        "NetworkSettings": {"Networks": {"podman": {"IPAddress": ""}}},
    }
    info = container_info_from_list(item)
    assert (info.id, info.name, info.state, info.running) == ("4406bb", "ex3", "exited", False)
    assert info.exit_code == 3
    assert info.started_at is None
    assert info.ports == [PortSpec(80, 8080)]
    running = container_info_from_list({**item, "State": "running", "Status": "Up 2 seconds"})
    assert running.running is True
    assert running.exit_code is None


def test_parse_load_output() -> None:
    assert parse_load_output([{"stream": "Loaded image: localhost/busybox:latest\n"}]) == [
        "localhost/busybox:latest"
    ]
    assert parse_load_output([{"stream": "Loaded image(s): a:1,b:2"}]) == ["a:1", "b:2"]
    assert parse_load_output([{"stream": "Loaded image ID: sha256:abc\n"}]) == ["sha256:abc"]
    assert parse_load_output([{"status": "progress"}]) == []
    with pytest.raises(errors.PermanentDriverError):
        parse_load_output([{"error": "payload does not match any of the supported formats"}])


def test_network_body_carries_the_control_planes_subnet_when_given() -> None:
    body = libpod_network_body(NetworkSpec("cp-prj-1", subnet="10.128.3.0/24"))
    assert body["subnets"] == [{"subnet": "10.128.3.0/24"}]
    assert "subnets" not in libpod_network_body(NetworkSpec("cp-prj-1"))


def test_update_body_sets_quota_and_memory() -> None:
    assert libpod_update_body(0.01, 16) == {
        "cpu": {"quota": 1_000, "period": 100_000},
        "memory": {"limit": 16 * MIB},
    }
    assert libpod_update_body(1.5, 256)["cpu"] == {"quota": 150_000, "period": 100_000}


def test_update_body_lifts_unset_limits() -> None:
    assert libpod_update_body(0, 0) == {
        "cpu": {"quota": -1, "period": 100_000},
        "memory": {"limit": -1},
    }


def test_update_body_raises_a_tiny_quota_to_the_kernel_minimum() -> None:
    assert libpod_update_body(0.001, 16)["cpu"] == {"quota": 1_000, "period": 100_000}


@pytest.mark.parametrize(("cpu", "memory_mb"), [(-0.5, 16), (1, -1)])
def test_update_body_refuses_negative_limits(cpu: float, memory_mb: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        libpod_update_body(cpu, memory_mb)


# --- networks of a given size -------------------------------------------------------------------


def test_network_spec_takes_a_subnet_or_a_size() -> None:
    assert NetworkSpec("n", prefix_length=20).prefix_length == 20
    with pytest.raises(ValueError, match="not both"):
        NetworkSpec("n", subnet="10.1.0.0/20", prefix_length=20)
    for bad in (7, 30):
        with pytest.raises(ValueError, match="prefix_length"):
            NetworkSpec("n", prefix_length=bad)


def test_an_existing_network_fits_what_is_asked() -> None:
    assert network_fits(["10.89.0.0/24"], NetworkSpec("n"))  # the engine's pick: any
    assert network_fits(["10.89.16.0/20"], NetworkSpec("n", prefix_length=20))
    assert not network_fits(["10.89.0.0/24"], NetworkSpec("n", prefix_length=20))
    assert network_fits(["10.128.0.0/24"], NetworkSpec("n", subnet="10.128.0.0/24"))
    assert not network_fits(["10.128.0.0/24"], NetworkSpec("n", subnet="10.128.0.0/23"))
    assert not network_fits([], NetworkSpec("n", prefix_length=20))


def test_sized_candidates_skip_used_subnets_and_small_pools() -> None:
    used = [ipaddress.ip_network(n) for n in ("10.89.0.0/24", "10.89.32.0/20", "fd00::/64")]
    got = sized_candidates(["10.88.0.0/22", "10.89.0.0/16"], 20, used)
    # 10.88.0.0/22 is smaller than a /20; 10.89.0.0/20 holds a used /24; 10.89.32.0/20 is used.
    assert [str(next(got)) for _ in range(2)] == ["10.89.16.0/20", "10.89.48.0/20"]
    assert len(list(sized_candidates(["10.89.0.0/16"], 20, used))) == 14


# --- hardening (docs/operations.md, "Hardening defaults") ---------------------------------------

HARDENED_COMPAT = {
    "CapDrop": ["SETFCAP", "SETPCAP", "SYS_CHROOT", "MKNOD", "AUDIT_WRITE"],
    "SecurityOpt": ["no-new-privileges"],
    "Privileged": False,
    "ReadonlyRootfs": False,
}
_HOST_NAMESPACE_KEYS = (
    "NetworkMode",
    "PidMode",
    "IpcMode",
    "UTSMode",
    "UsernsMode",
    "CgroupnsMode",
)


@pytest.mark.parametrize("spec", [full_spec(), full_spec(network=None, aliases=[])])
def test_every_compat_body_is_hardened_and_uses_no_host_namespace(spec: ContainerSpec) -> None:
    hc = compat_create_body(spec)["HostConfig"]
    assert {k: hc[k] for k in HARDENED_COMPAT} == HARDENED_COMPAT
    assert hc["PidsLimit"] == DEFAULT_PIDS_LIMIT
    for key in _HOST_NAMESPACE_KEYS:
        assert hc.get(key) != "host", key
    assert "CapAdd" not in hc and "Devices" not in hc


@pytest.mark.parametrize("rootfs", ["/", "/srv/rootfs"])
def test_every_libpod_body_is_hardened_and_uses_no_host_namespace(rootfs: str) -> None:
    body = libpod_create_body(full_spec(image=None, rootfs=rootfs))
    assert body["cap_drop"] == list(DROPPED_CAPABILITIES)
    assert body["no_new_privileges"] is True
    assert body["privileged"] is False
    assert body["read_only_filesystem"] is False
    for key in ("netns", "pidns", "ipcns", "utsns", "userns", "cgroupns"):
        assert (body.get(key) or {}).get("nsmode") != "host", key
    assert "cap_add" not in body and "devices" not in body


def test_read_only_root_and_a_cell_pids_limit_reach_both_bodies() -> None:
    compat = compat_create_body(full_spec(read_only=True, pids_limit=64))["HostConfig"]
    assert compat["ReadonlyRootfs"] is True and compat["PidsLimit"] == 64
    libpod = libpod_create_body(full_spec(image=None, rootfs="/", read_only=True, pids_limit=64))
    assert libpod["read_only_filesystem"] is True
    assert libpod["resource_limits"]["pids"] == {"limit": 64}


def test_a_negative_pids_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="pids_limit"):
        ContainerSpec(name="c", image="busybox", pids_limit=-1)


def test_conflicting_networks_are_those_on_the_same_bridge_or_an_overlapping_subnet() -> None:
    def net(name: str, subnet: str, bridge: str) -> dict[str, Any]:
        return {"name": name, "subnets": [{"subnet": subnet}], "network_interface": bridge}

    existing = [
        net("cp-prj-new", "10.9.1.0/24", "cpbr7"),  # the network itself: never a conflict
        net("cp-net-old", "10.9.8.0/24", "cpbr7"),  # a deleted network's bridge, now reused
        net("cp-net-wide", "10.9.0.0/16", "cpbr2"),  # overlaps the subnet
        net("cp-net-apart", "10.10.0.0/24", "cpbr3"),
        {"name": "podman", "subnets": [], "network_interface": "podman0"},
    ]
    spec = NetworkSpec("cp-prj-new", subnet="10.9.1.0/24", interface="cpbr7")
    assert conflicting_networks(existing, spec) == ["cp-net-old", "cp-net-wide"]
    # No bridge asked for: only the subnet counts; no subnet either: nothing conflicts.
    assert conflicting_networks(existing, NetworkSpec("x", subnet="10.9.8.0/24")) == [
        "cp-net-old",
        "cp-net-wide",
    ]
    assert conflicting_networks(existing, NetworkSpec("x", prefix_length=24)) == []


@pytest.mark.parametrize(
    ("cpu", "runtime", "quota"),
    [
        (0.0, None, None),  # no limit
        (0.01, None, None),  # small limits slow the start: set after it (apply_limits)
        (0.49, None, None),
        (0.5, None, 50_000),
        (2.0, None, 200_000),
        (2.0, "runsc", None),  # a sandbox's always after: a quota slows gVisor's boot
    ],
)
def test_the_cpu_quota_is_given_at_create_from_half_a_core(
    cpu: float, runtime: str | None, quota: int | None
) -> None:
    spec = full_spec(cpu=cpu, runtime=runtime)
    assert quota_at_create(spec) == quota
    host = compat_create_body(spec)["HostConfig"]
    assert host.get("CpuQuota") == quota
    assert host.get("CpuPeriod") == (100_000 if quota else None)
    rootfs = full_spec(cpu=cpu, runtime=runtime, image=None, rootfs="/", command=["true"])
    limits = libpod_create_body(rootfs).get("resource_limits", {})
    assert limits.get("cpu") == ({"quota": quota, "period": 100_000} if quota else None)


def test_a_paused_container_is_running_frozen_in_a_listing_and_an_inspection() -> None:
    item = {"Id": "9a", "Names": ["/pz"], "State": "paused", "Status": "Paused", "Labels": {}}
    assert (container_info_from_list(item).state, container_info_from_list(item).running) == (
        "paused",
        True,
    )
    # podman's own inspection says Running false while paused; the process is there.
    attrs = {"Id": "9a", "State": {"Status": "paused", "Running": False, "Pid": 42}}
    info = container_info_from_inspect(attrs)
    assert (info.state, info.running, info.pid, info.exit_code) == ("paused", True, 42, None)
