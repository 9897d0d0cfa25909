"""The sandbox runtime in the agent's own engine, without an engine: its configuration, the
runsc wrapper, the create bodies of a sandboxed container, the agent's spec and probe."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from cellplane.agent import isolation
from cellplane.agent.spec import container_spec
from cellplane.drivers import errors
from cellplane.drivers.base import ContainerSpec
from cellplane.drivers.engine import PodmanService, containers_conf, runsc_wrapper
from cellplane.drivers.fake import FakeDriver
from cellplane.drivers.podman import PodmanDriver
from cellplane.drivers.podman_bodies import compat_create_body, libpod_create_body


def _cell(**over: Any) -> dict[str, Any]:
    return {
        "cell_id": "cel-1",
        "name": "web",
        "project_id": "prj-1",
        "network": "cp-prj-1",
        "image": {"id": "img-1", "kind": "archive"},
        "cpu": 0.5,
        "memory_mb": 64,
        **over,
    }


def test_the_agents_containers_conf_names_the_wrapper_as_runsc(tmp_path: Path) -> None:
    conf = containers_conf(tmp_path, tmp_path / "n", sandbox_runtime=tmp_path / "runsc-runtime")
    assert "[engine.runtimes]" in conf
    assert f'runsc = ["{tmp_path}/runsc-runtime"]' in conf
    assert 'runtime = "runc"' in conf  # the default stays runc
    assert "[engine.runtimes]" not in containers_conf(tmp_path, tmp_path / "n")


def test_the_wrapper_passes_platform_and_state_and_hides_proc_sys_net_for_start(
    tmp_path: Path,
) -> None:
    fake = tmp_path / "fake-runsc"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    script = tmp_path / "wrapper"
    script.write_text(runsc_wrapper(str(fake), "ptrace", tmp_path / "state dir"))
    script.chmod(0o755)
    done = subprocess.run([str(script), "delete", "--force", "abc"], capture_output=True, text=True)
    assert done.stdout.split() == [
        "--platform=ptrace",
        f"--root={tmp_path}/state",
        "dir",
        "delete",
        "--force",
        "abc",
    ]
    # podman's `exec -t` asks runsc for a flag it does not know: dropped (the terminal is in
    # the process description); elsewhere arguments pass unchanged.
    done = subprocess.run(
        [str(script), "--log", "/l", "exec", "--tty", "--process", "/p.json", "abc"],
        capture_output=True,
        text=True,
    )
    assert done.stdout.split()[3:] == ["--log", "/l", "exec", "--process", "/p.json", "abc"]
    done = subprocess.run([str(script), "create", "-t", "x"], capture_output=True, text=True)
    assert done.stdout.split()[3:] == ["create", "-t", "x"]
    text = script.read_text()
    assert "unshare --mount" in text and "/proc/sys/net" in text


def test_the_sandbox_creator_shares_the_storage_with_its_own_socket(tmp_path: Path) -> None:
    main = PodmanService(tmp_path / "engine", runsc="/usr/bin/runsc")
    creator = main.sandbox_service()
    assert creator.root == main.root and creator.network_dir == main.network_dir
    assert creator.socket_path != main.socket_path and creator.pid_path != main.pid_path
    command = creator.command()
    assert command[command.index("--runtime") + 1] == "runsc"
    assert "--runtime" not in main.command()
    with pytest.raises(ValueError, match="no sandbox runtime"):
        PodmanService(tmp_path / "other").sandbox_service()


def test_a_sandboxed_container_gets_its_runtime_at_creation_and_its_cpu_limit_after() -> None:
    spec = container_spec(_cell(isolation="sandbox"), "hst-1", "busybox")
    assert spec.runtime == "runsc"
    host = compat_create_body(spec)["HostConfig"]
    assert host["Runtime"] == "runsc" and host["Memory"] == 64 * 1024 * 1024
    # A quota during gVisor's boot slows its start: the quota comes after (apply_limits).
    assert "CpuQuota" not in host and "CpuPeriod" not in host
    rootfs = container_spec(
        _cell(isolation="sandbox", image={"id": "i", "kind": "host"}, command=["sleep", "9"]),
        "hst-1",
        None,
    )
    limits = libpod_create_body(rootfs)["resource_limits"]
    assert "cpu" not in limits and limits["memory"] == {"limit": 64 * 1024 * 1024}
    # A standard container of half a core: no runtime named, the CPU quota at create (from 0.5
    # core it does not slow runc's start; `podman_bodies.quota_at_create`).
    plain = compat_create_body(container_spec(_cell(), "hst-1", "busybox"))["HostConfig"]
    assert "Runtime" not in plain and plain["CpuQuota"] == 50_000


def test_an_engine_without_a_sandbox_refuses_a_sandboxed_container() -> None:
    driver = PodmanDriver("unix:///nonexistent/podman.sock")
    spec = ContainerSpec(name="cp-x", image="busybox", runtime="runsc")
    with pytest.raises(errors.PermanentDriverError, match="offers no runsc runtime"):
        driver.create(spec)


def test_the_probe_without_runsc_or_when_the_sandbox_fails() -> None:
    classes, how = isolation.probe(FakeDriver(), None, "ptrace")
    assert classes == ["standard"] and "runsc is not installed" in how
    driver = FakeDriver()
    driver.fail_next("create", errors.PermanentDriverError("runtime runsc failed: oops"))
    classes, how = isolation.probe(driver, "/bin/true", "ptrace")
    assert classes == ["standard"]
    assert "not offered" in how and "oops" in how and "platform ptrace" in how


def test_the_probe_offers_the_sandbox_when_its_container_exits_0() -> None:
    class Exits(FakeDriver):
        def start(self, container_id: str) -> None:
            super().start(container_id)
            self.mark_exited(container_id, 0)

    driver = Exits()
    classes, how = isolation.probe(driver, "/bin/true", "ptrace")
    assert classes == ["standard", "sandbox"], how
    assert how.startswith("sandbox: ") and "platform ptrace" in how
    assert driver.list({}) == []  # the probe's container is gone
