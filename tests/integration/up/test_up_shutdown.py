"""`cellplane up`, Ctrl-C, `rm -rf DATA_DIR`: the engine leaves nothing mounted under the data dir.

A real `cellplane up` (server, agent, the agent's podman engine) on a fresh data directory and a
free port, with its CLI configuration in the test's directory; a cell runs; SIGINT, as Ctrl-C
sends it. The running container's rootfs, its /dev/shm and the storage's own overlay bind mount
were mounted under the data directory; after `up` exits none is, so the directory can be
removed. The cell itself keeps running (its container is adopted by the next `up`); the test
removes it through the engine afterwards, and its directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellplane.client import CellplaneError, Client
from cellplane.drivers.engine import PodmanService
from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.harness import free_port


def mounts_under(directory: Path) -> list[str]:
    """Mount points under `directory`, from /proc/self/mountinfo (field 5, octal-escaped)."""
    prefix = f"{directory}/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix) or point == str(directory):
            points.append(point)
    return points


def wait_for(check: object, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()  # type: ignore[operator]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {value!r}")
        time.sleep(0.3)


def _end_processes_of(directory: Path) -> None:
    """SIGTERM, then SIGKILL, what `up` left running on `directory` (its server and agent run
    in sessions of their own), found by their command lines; containers (conmon) are left to
    their engine."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if str(directory).encode() in cmdline and b"cellplane" in cmdline:
                pids.append(int(proc.name))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Short: the engine's socket path must fit in 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="cp-up-", dir="/tmp"))
    yield path
    _end_processes_of(path)
    engine_dir = path / "data" / "agent" / "engine"
    if engine_dir.exists():  # the test failed before its own cleanup: remove what it left
        engine = PodmanService(engine_dir)
        with contextlib.suppress(Exception):
            driver = PodmanDriver(engine.start())
            for info in driver.list({}):
                driver.remove(info.id, force=True)
            for net in driver.list_networks({}):
                if net not in ("podman", "bridge"):
                    driver.remove_network(net)
        engine.shutdown()
    shutil.rmtree(path, ignore_errors=True)


def _ready_hosts(client: Client) -> list[str]:
    """READY hosts; none while the server is not listening yet (`up` saves the configuration
    before it starts the server)."""
    try:
        return [h["id"] for h in client.iter_hosts() if h["state"] == "READY"]
    except CellplaneError:
        return []


@pytest.mark.integration
def test_ctrl_c_of_up_leaves_no_mount_and_the_data_dir_can_be_removed(data_dir: Path) -> None:
    port = free_port()
    state = data_dir / "data"
    log = (data_dir / "up.log").open("wb")
    env = {**os.environ, "CELLPLANE_CONFIG": str(data_dir / "config.json")}
    env.pop("CELLPLANE_SERVER", None)
    env.pop("CELLPLANE_TOKEN", None)
    up = subprocess.Popen(
        [sys.executable, "-m", "cellplane", "up", "--data-dir", str(state), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        config_file = data_dir / "config.json"
        wait_for(config_file.exists, 60, "the CLI configuration")
        conf = json.loads(config_file.read_text())
        assert conf["server"] == f"https://127.0.0.1:{port}", conf
        client = Client(conf["server"], conf["token"], verify=conf["ca_cert"])
        wait_for(lambda: _ready_hosts(client), 90, "a READY host")
        task = client.create_cell(
            "default", "stays", "host", cpu=0.05, memory_mb=32, command=["sleep", "600"]
        )
        cell_id = task["entity"]["id"]
        wait_for(lambda: client.get_cell(cell_id)["state"] == "RUNNING", 90, "RUNNING")
        client.close()
        engine_dir = state / "agent" / "engine"
        before = mounts_under(state)
        assert any("/overlay-containers/" in p for p in before), before  # the cell's mounts

        up.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert up.wait(timeout=90) == 0
    finally:
        if up.poll() is None:  # failed on the way: stop it as Ctrl-C would, then for sure
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        log.close()
    assert mounts_under(state) == [], (data_dir / "up.log").read_text(errors="replace")[-3000:]

    # The cell runs on (adopted on the next start): remove it through its engine, which mounts
    # again what it needs, then shut the engine down the agent's way and remove the directory.
    engine = PodmanService(engine_dir)
    driver = PodmanDriver(engine.start())
    running = [c for c in driver.list({"cellplane.cell": cell_id}) if c.running]
    assert running, "the cell stopped with the agent"
    for info in driver.list({}):
        driver.remove(info.id, force=True)
    for net in driver.list_networks({}):
        if net not in ("podman", "bridge"):  # the default network (both names) stays
            driver.remove_network(net)
    engine.shutdown()
    assert mounts_under(state) == []
    shutil.rmtree(state)  # no ignore_errors: a mount left would fail it (EBUSY)
    assert not state.exists()
