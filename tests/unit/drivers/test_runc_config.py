"""`cellplane.drivers.runc_config`: the OCI `config.json` of a runc cell (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from cellplane.drivers.base import DROPPED_CAPABILITIES, ContainerSpec
from cellplane.drivers.runc_config import (
    BundlePaths,
    UserIds,
    bundle_config,
    process_args,
    process_env,
    resolve_user,
)

PASSWD = "root:x:0:0:root:/root:/bin/sh\nweb:x:101:102:web:/srv:/bin/sh\nbroken:x:zz:1::/:\n"
GROUP = "root:x:0:\nweb:x:102:\nwww-data:x:33:web,other\nadm:x:4:web\n"
IMAGE: dict[str, Any] = {
    "Entrypoint": ["/entry.sh"],
    "Cmd": ["serve", "--port", "80"],
    "Env": ["PATH=/opt/bin:/bin", "LANG=C.UTF-8", "noequals"],
    "WorkingDir": "/srv",
    "User": "web",
}
PATHS = BundlePaths(
    rootfs="/data/c/rootfs",
    hosts="/data/c/hosts",
    resolv_conf="/data/c/resolv.conf",
    hostname_file="/data/c/hostname",
    cgroups_path="cellplane-runc/abc",
    volumes=[("/vol/data", "/var/lib/data", False), ("/vol/conf", "/etc/app", True)],
    netns="/run/netns/cp-abc",
)


def spec(**kwargs: Any) -> ContainerSpec:
    values: dict[str, Any] = {"name": "cp-cell-1", "image": "busybox:latest"}
    values.update(kwargs)
    return ContainerSpec(**values)


def test_user_by_name_takes_its_group_and_its_supplementary_groups() -> None:
    assert resolve_user("web", PASSWD, GROUP) == UserIds(101, 102, (4, 33))


def test_user_forms() -> None:
    assert resolve_user("", PASSWD, GROUP) == UserIds(0, 0)
    assert resolve_user("1000", PASSWD, GROUP) == UserIds(1000, 0)
    assert resolve_user("101", PASSWD, GROUP) == UserIds(101, 102, (4, 33))
    assert resolve_user("web:www-data", PASSWD, GROUP) == UserIds(101, 33)
    assert resolve_user("5:7", "", "") == UserIds(5, 7)


def test_unknown_user_or_group_is_named() -> None:
    with pytest.raises(ValueError, match=r"'nobody'.*passwd"):
        resolve_user("nobody", PASSWD, GROUP)
    with pytest.raises(ValueError, match=r"'staff'.*group"):
        resolve_user("web:staff", PASSWD, GROUP)
    with pytest.raises(ValueError, match="'broken'"):
        resolve_user("broken", PASSWD, GROUP)


def test_args_follow_docker_rules() -> None:
    assert process_args(spec(), IMAGE) == ["/entry.sh", "serve", "--port", "80"]
    assert process_args(spec(command=["sh"]), IMAGE) == ["/entry.sh", "sh"]
    # A spec's own entrypoint drops the image's Cmd.
    assert process_args(spec(entrypoint=["/bin/app"]), IMAGE) == ["/bin/app"]
    assert process_args(spec(entrypoint=[], command=["true"]), IMAGE) == ["true"]
    with pytest.raises(ValueError, match="no command"):
        process_args(spec(), {})


def test_env_image_then_spec_and_hostname() -> None:
    env = process_env(spec(env={"LANG": "fr_FR", "X": "1"}), IMAGE, "h1")
    assert env == ["PATH=/opt/bin:/bin", "LANG=fr_FR", "HOSTNAME=h1", "X=1"]
    assert process_env(spec(), {}, "h")[0].startswith("PATH=/usr/local/sbin")


def test_config_process_and_hardening() -> None:
    config = bundle_config(spec(), IMAGE, UserIds(0, 0), PATHS)
    process = config["process"]
    assert config["ociVersion"].startswith("1.0")
    assert process["terminal"] is False
    assert process["noNewPrivileges"] is True
    assert process["cwd"] == "/srv"
    assert process["user"] == {"uid": 0, "gid": 0}
    caps = process["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"]
    for dropped in DROPPED_CAPABILITIES:
        assert f"CAP_{dropped}" not in caps["bounding"]
    assert "CAP_CHOWN" in caps["bounding"] and "CAP_SYS_ADMIN" not in caps["bounding"]
    assert "CAP_NET_RAW" in caps["bounding"]  # ping on a project network, as podman cells
    assert config["linux"]["sysctl"] == {"net.ipv4.ping_group_range": "0 0"}
    assert config["root"] == {"path": "/data/c/rootfs", "readonly": False}
    assert config["hostname"] == "cp-cell-1"
    assert "/proc/kcore" in config["linux"]["maskedPaths"]
    assert {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024} in process["rlimits"]


def test_non_root_user_keeps_only_the_bounding_set() -> None:
    config = bundle_config(spec(), IMAGE, UserIds(101, 102, (4,)), PATHS)
    process = config["process"]
    assert process["user"] == {"uid": 101, "gid": 102, "additionalGids": [4]}
    assert process["capabilities"]["effective"] == []
    assert process["capabilities"]["bounding"]


def test_config_mounts_namespaces_and_resources() -> None:
    config = bundle_config(
        spec(memory_mb=64, pids_limit=100, read_only=True, labels={"k": "v"}, hostname="web-1"),
        IMAGE,
        UserIds(),
        PATHS,
    )
    mounts = {m["destination"]: m for m in config["mounts"]}
    for target in ("/proc", "/dev", "/sys", "/dev/pts", "/dev/shm", "/etc/hosts"):
        assert target in mounts
    assert mounts["/etc/resolv.conf"]["source"] == "/data/c/resolv.conf"
    assert mounts["/var/lib/data"]["options"] == ["rbind", "rw"]
    assert mounts["/etc/app"]["options"] == ["rbind", "ro"]
    linux = config["linux"]
    assert {"type": "network", "path": "/run/netns/cp-abc"} in linux["namespaces"]
    assert {n["type"] for n in linux["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    assert linux["cgroupsPath"] == "cellplane-runc/abc"
    assert linux["resources"]["memory"]["limit"] == 64 * 1024 * 1024
    assert linux["resources"]["pids"] == {"limit": 100}
    assert "cpu" not in linux["resources"]  # the quota comes after start (apply_limits)
    assert linux["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert config["root"]["readonly"] is True
    assert mounts["/tmp"]["type"] == mounts["/run"]["type"] == "tmpfs"
    assert config["hostname"] == "web-1"
    assert config["annotations"] == {"cellplane.label.k": "v"}


def test_without_a_netns_a_new_one_is_made() -> None:
    paths = BundlePaths("/r", "/h", "/rc", "/hn", "cellplane-runc/x")
    config = bundle_config(spec(pids_limit=0), IMAGE, UserIds(), paths)
    assert {"type": "network"} in config["linux"]["namespaces"]
    assert "pids" not in config["linux"]["resources"]
    assert "memory" not in config["linux"]["resources"]
    assert "/tmp" not in {m["destination"] for m in config["mounts"]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tty": True}, "TTY"),
        ({"stdin": True}, "stdin"),
        ({"runtime": "runsc"}, "runsc"),
        ({"workdir": "relative"}, "absolute"),
        ({"cap_drop": ("CAP_NET_RAW",), "stop_signal": "SIGINT"}, "--cap-drop, --stop-signal"),
        ({"extra_hosts": (("db", "10.0.0.1"),), "tmpfs": (("/t", ""),)}, "--add-host, --tmpfs"),
        ({"init": True, "group_add": ("audio",)}, "--init, --group-add"),
        ({"ulimits": (("core", 0, 0),)}, "--ulimit not supported"),
    ],
)
def test_refused_specs_name_the_problem(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bundle_config(spec(**kwargs), IMAGE, UserIds(), PATHS)
