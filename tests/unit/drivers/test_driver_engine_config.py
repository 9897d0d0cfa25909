"""PodmanService's generated configuration and command line, without starting podman."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cellplane.drivers.engine import PodmanService, containers_conf, storage_conf


def test_containers_conf_is_valid_toml_with_the_settings_this_host_needs(tmp_path: Path) -> None:
    conf = tomllib.loads(containers_conf(tmp_path / "tmp", tmp_path / "net"))
    assert conf["containers"]["default_ulimits"] == ["nofile=1024:1024", "nproc=4096:4096"]
    assert conf["containers"]["log_driver"] == "k8s-file"
    engine = conf["engine"]
    assert engine["runtime"] == "runc"
    assert engine["cgroup_manager"] == "cgroupfs"
    assert engine["events_logger"] == "file"
    assert engine["tmp_dir"] == str(tmp_path / "tmp")
    assert engine["image_copy_tmp_dir"] == str(tmp_path / "tmp")
    assert conf["network"] == {
        "network_backend": "netavark",
        "network_config_dir": str(tmp_path / "net"),
    }


def test_subnet_pool_is_optional(tmp_path: Path) -> None:
    plain = tomllib.loads(containers_conf(tmp_path, tmp_path))
    assert "default_subnet_pools" not in plain["network"]
    pooled = tomllib.loads(containers_conf(tmp_path, tmp_path, subnet_pool="10.123.0.0/16"))
    assert pooled["network"]["default_subnet_pools"] == [{"base": "10.123.0.0/16", "size": 24}]


def test_conf_quotes_awkward_paths() -> None:
    conf = tomllib.loads(containers_conf(Path('/tmp/a "b"\\c'), Path("/n")))
    assert conf["engine"]["tmp_dir"] == '/tmp/a "b"\\c'


def test_storage_conf(tmp_path: Path) -> None:
    conf = tomllib.loads(storage_conf(tmp_path / "root", tmp_path / "run"))
    assert conf["storage"] == {
        "driver": "overlay",
        "graphroot": str(tmp_path / "root"),
        "runroot": str(tmp_path / "run"),
    }


def test_everything_lives_under_the_data_dir(tmp_path: Path) -> None:
    service = PodmanService(tmp_path / "agent")
    cmd = service.command()
    assert cmd[-1] == f"unix://{tmp_path}/agent/podman.sock" == service.socket_url
    assert cmd[cmd.index("--root") + 1].startswith(str(tmp_path))
    assert cmd[cmd.index("--runroot") + 1].startswith(str(tmp_path))
    assert cmd[cmd.index("--network-config-dir") + 1].startswith(str(tmp_path))
    assert "--time=0" in cmd
    env = service.environment()
    for key in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "TMPDIR", "XDG_RUNTIME_DIR"):
        assert env[key].startswith(str(tmp_path)), key
    assert service.pid is None


def test_stop_without_start_is_a_no_op(tmp_path: Path) -> None:
    PodmanService(tmp_path).stop()


def test_too_long_socket_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="socket path"):
        PodmanService(tmp_path / ("x" * 120))
