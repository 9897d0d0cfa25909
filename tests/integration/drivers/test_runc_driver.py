"""`RuncDriver` on real runc, with the session's podman service as its image and volume store.

Each test uses unique container names; the module's driver directory is removed at the end,
after every container in it is gone (no mount, no runc state, no cgroup is left).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cellplane.drivers import errors
from cellplane.drivers.base import ContainerSpec, MountSpec
from cellplane.drivers.podman import PodmanDriver
from cellplane.drivers.runc import RuncDriver
from cellplane.drivers.runc_rootfs import is_mounted
from cellplane.testing.cgroups import CgroupLimits, cgroup_limits

from .conftest import IMAGE, Engine

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def runc(engine: Engine) -> Iterator[RuncDriver]:
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    directory = Path(tempfile.mkdtemp(prefix="cpr-", dir="/tmp"))
    driver = RuncDriver(engine.driver, directory)
    try:
        yield driver
    finally:
        for info in driver.list({}):
            driver.remove(info.id, force=True)
        driver.close()
        for volume in engine.driver.list_volumes(engine.labels):
            engine.driver.remove_volume(volume)
        shutil.rmtree(directory, ignore_errors=True)


def run(engine: Engine, runc: RuncDriver, stem: str, command: list[str], **kw: object) -> str:
    cid = runc.create(engine.spec(stem, command, **kw))
    runc.start(cid)
    return cid


def test_lifecycle_logs_and_exec(engine: Engine, runc: RuncDriver) -> None:
    cid = run(engine, runc, "life", ["sh", "-c", "echo hello; echo oops >&2; exec sleep 600"])
    info = runc.inspect(cid)
    assert info.running and info.state == "running" and info.image == IMAGE
    assert runc.inspect(info.name).id == cid
    assert [i.id for i in runc.list(engine.labels) if i.id == cid] == [cid]
    assert engine.wait_for(lambda: b"oops" in b"".join(runc.logs(cid)))
    assert b"".join(runc.logs(cid)) == b"hello\noops\n"
    assert b"".join(runc.logs(cid, tail=1)) == b"oops\n"
    framed = b"".join(runc.docker_logs(cid))
    assert (
        framed == b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n\x01\x00\x00\x00\x00\x00\x00\x05oops\n"
    )
    ok = runc.exec(cid, ["sh", "-c", "echo $HOSTNAME; id -u; cat /etc/hostname"])
    assert ok.exit_code == 0
    assert ok.output.split() == [info.name.encode(), b"0", info.name.encode()]
    assert runc.exec(cid, ["sh", "-c", "exit 3"]).exit_code == 3
    missing = runc.exec(cid, ["no-such-command"])
    assert missing.exit_code == 127 and b"no-such-command" in missing.output
    with pytest.raises(errors.NameConflict):
        runc.create(ContainerSpec(name=info.name, image=IMAGE, command=["true"]))
    with pytest.raises(errors.ContainerNotFound):
        runc.inspect("cp-no-such-container")
    with pytest.raises(errors.PermanentDriverError, match="interactive"):
        runc.exec_open(cid, ["sh"])


def test_limits_are_in_the_cgroup(engine: Engine, runc: RuncDriver) -> None:
    cid = run(engine, runc, "limits", ["sleep", "600"], memory_mb=64, pids_limit=50)
    pid = runc._record(cid).pid
    started = cgroup_limits(pid)
    assert started.memory_bytes == 64 * MIB
    assert started.cpu_quota_us is None  # started without a CFS quota
    runc.apply_limits(cid, 0.5, 32)
    assert cgroup_limits(pid) == CgroupLimits(50_000, 100_000, 32 * MIB)
    seen = runc.exec(cid, ["cat", "/sys/fs/cgroup/pids/pids.max"])
    assert seen.output.strip() == b"50"


def test_stop_kill_and_exit_codes(engine: Engine, runc: RuncDriver) -> None:
    trapping = run(
        engine, runc, "trap", ["sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"]
    )
    runc.stop(trapping, timeout=10)
    info = runc.inspect(trapping)
    assert (info.running, info.state, info.exit_code) == (False, "exited", 7)
    assert info.finished_at is not None
    stubborn = run(engine, runc, "stubborn", ["sleep", "600"])  # PID 1 ignores SIGTERM
    runc.stop(stubborn, timeout=0.5)
    assert runc.inspect(stubborn).exit_code == 137
    killed = run(engine, runc, "killed", ["sleep", "600"])
    runc.kill(killed)
    assert runc.inspect(killed).exit_code == 137
    runc.kill(killed)  # not running: no error
    ends = run(engine, runc, "ends", ["sh", "-c", "exit 5"])
    assert engine.wait_for(lambda: runc.inspect(ends).state == "exited")
    assert runc.inspect(ends).exit_code == 5
    runc.start(ends)  # a stopped container starts again, on the same root
    assert engine.wait_for(lambda: runc.inspect(ends).state == "exited")
    assert runc.inspect(ends).exit_code == 5


def test_a_signal_reaches_the_containers_main_process(engine: Engine, runc: RuncDriver) -> None:
    script = (
        "trap 'echo got-hup' HUP; trap 'exit 9' USR1; echo ready; while true; do sleep 0.1; done"
    )
    cid = run(engine, runc, "signal", ["sh", "-c", script])
    assert engine.wait_for(lambda: b"ready" in b"".join(runc.logs(cid)))
    runc.signal(cid, int(signal.SIGHUP))
    assert engine.wait_for(lambda: b"got-hup" in b"".join(runc.logs(cid)))
    assert runc.inspect(cid).running
    runc.signal(cid, int(signal.SIGUSR1))
    assert engine.wait_for(lambda: runc.inspect(cid).state == "exited")
    assert runc.inspect(cid).exit_code == 9
    with pytest.raises(errors.PermanentDriverError, match="not running"):
        runc.signal(cid, int(signal.SIGHUP))
    with pytest.raises(errors.ContainerNotFound):
        runc.signal("cp-no-such-container", int(signal.SIGHUP))


def test_writes_stay_in_the_cell_and_volumes_are_shared(engine: Engine, runc: RuncDriver) -> None:
    volume = engine.name("vol")
    engine.driver.ensure_volume(volume, engine.labels)
    mount = MountSpec(volume, "/data")
    a = run(engine, runc, "vola", ["sleep", "600"], mounts=[mount])
    b = run(engine, runc, "volb", ["sleep", "600"], mounts=[mount])
    assert (
        runc.exec(a, ["sh", "-c", "echo shared > /data/f; echo mine > /root-file"]).exit_code == 0
    )
    assert runc.exec(b, ["cat", "/data/f"]).output == b"shared\n"
    assert runc.exec(b, ["cat", "/root-file"]).exit_code != 0
    assert (engine.driver.volume_path(volume) / "f").read_text() == "shared\n"
    with pytest.raises(errors.VolumeInUse):
        runc.remove_volume(volume)
    # One flattened copy of the image, however many cells use it.
    assert len([p for p in (runc.directory / "images").iterdir() if p.is_dir()]) == 1


def test_a_host_path_is_bind_mounted(engine: Engine, runc: RuncDriver, tmp_path: Path) -> None:
    (tmp_path / "in").write_text("from the host\n")
    rw = MountSpec("", "/host", host_path=str(tmp_path))
    ro = MountSpec("", "/ro", read_only=True, host_path=str(tmp_path))
    cid = run(engine, runc, "bind", ["sleep", "600"], mounts=[rw, ro])
    assert runc.exec(cid, ["cat", "/host/in"]).output == b"from the host\n"
    assert runc.exec(cid, ["sh", "-c", "echo from the cell > /host/out"]).exit_code == 0
    assert (tmp_path / "out").read_text() == "from the cell\n"
    assert runc.exec(cid, ["sh", "-c", "echo x > /ro/denied"]).exit_code != 0
    assert not (tmp_path / "denied").exists()
    runc.remove(cid, force=True)
    assert (tmp_path / "out").exists()  # the host's directory outlives the cell


def test_remove_leaves_no_mount_state_or_cgroup(engine: Engine, runc: RuncDriver) -> None:
    cid = run(engine, runc, "gone", ["sleep", "600"])
    pid = runc._record(cid).pid
    memory_cgroup = _memory_cgroup(pid)
    assert memory_cgroup.is_dir()
    home = runc.containers / cid
    assert is_mounted(home / "rootfs")
    runc.remove(cid)
    assert not is_mounted(home / "rootfs")
    assert not home.exists()
    assert not memory_cgroup.exists()
    listed = subprocess.run(
        ["runc", "--root", str(runc.state_root), "list", "-q"], capture_output=True, check=True
    )
    assert cid.encode() not in listed.stdout
    with pytest.raises(errors.ContainerNotFound):
        runc.inspect(cid)


def _memory_cgroup(pid: int) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    raise AssertionError("no memory cgroup")


def test_a_restarted_driver_adopts_running_cells(engine: Engine, runc: RuncDriver) -> None:
    """An agent killed with SIGKILL leaves its cells running; the next one adopts them."""
    name = engine.name("adopt")
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from cellplane.drivers.base import ContainerSpec
        from cellplane.drivers.podman import PodmanDriver
        from cellplane.drivers.runc import RuncDriver
        d = RuncDriver(PodmanDriver({engine.driver.base_url!r}), Path({str(runc.directory)!r}))
        cid = d.create(ContainerSpec(name={name!r}, image={IMAGE!r}, command=["sleep", "600"],
                                     labels={engine.labels!r}))
        d.start(cid)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    agent = subprocess.run([sys.executable, "-c", script], env=env, check=False, timeout=120)
    assert agent.returncode == -signal.SIGKILL
    adopted = RuncDriver(engine.driver, runc.directory)
    try:
        info = adopted.inspect(name)
        assert info.running, info
        assert adopted.exec(info.id, ["true"]).exit_code == 0
        # The first driver (this process, a subreaper) is the dead agent's nearest subreaper:
        # it reaps the orphan, and the exit code is known.
        adopted.kill(info.id)
        assert adopted.inspect(info.id).exit_code == 137
    finally:
        adopted.close()
    runc._adopt()  # the module's driver learns of it, to remove it at the end


def test_a_real_agent_runs_cells_with_runc_and_adopts_them_after_kill_9() -> None:
    """`cellplane agent --driver runc`: a cell through the API runs under runc (not podman),
    exec and logs work, and after the agent is killed with SIGKILL and started again the same
    container is still running and still managed (exec, then deletion)."""
    from cellplane.testing.busybox import build_busybox_archive
    from cellplane.testing.harness import Deployment

    with Deployment(log_level="warning", agent_args=["--driver", "runc"]) as d:
        archive = build_busybox_archive(d.data_dir / "images")
        with d.client() as c:
            c.upload_image("busybox", archive)
            task = c.create_cell(
                "default",
                f"r{os.getpid()}",
                "busybox",
                cpu=0.25,
                memory_mb=32,
                command=["sh", "-c", "echo started; exec sleep 600"],
            )
            assert c.wait_task(task["id"], timeout=120)["state"] == "COMPLETED"
            cell = c.get_cell(task["entity"]["id"])
            assert cell["state"] == "RUNNING"
            state = d.data_dir / "agent" / "runc" / "state"
            listed = subprocess.run(
                ["runc", "--root", str(state), "list", "-q"], capture_output=True, text=True
            )
            assert listed.stdout.split() == [cell["container_id"]]
            podman = PodmanDriver(d.engine_url)  # the image store; it holds no cell container
            try:
                assert podman.list({"cellplane.cell": cell["id"]}) == []
            finally:
                podman.close()
            ran = c.exec_cell(cell["id"], ["sh", "-c", "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us"])
            assert ran["exit_code"] == 0 and int(ran["output"]) == 25_000
            assert "started" in "".join(c.cell_logs(cell["id"]))
            # A second cell on the project network (runc_net) reaches the first by its name.
            peer_task = c.create_cell(
                "default", f"p{os.getpid()}", "busybox", command=["sleep", "600"]
            )
            assert c.wait_task(peer_task["id"], timeout=120)["state"] == "COMPLETED"
            peer = c.get_cell(peer_task["entity"]["id"])
            assert cell["address"] and peer["address"] and cell["address"] != peer["address"]
            pinged = c.exec_cell(peer["id"], ["ping", "-c", "1", "-W", "3", cell["name"]])
            assert pinged["exit_code"] == 0, pinged["output"]
            assert cell["address"] in pinged["output"]
            c.wait_task(c.delete_cell(peer["id"])["id"], timeout=120)
            d.kill_agent()
            d.start_agent()
            again = c.get_cell(cell["id"])
            assert (again["state"], again["container_id"]) == ("RUNNING", cell["container_id"])
            # The server learns the new agent's endpoint when it registers again.
            assert _eventually(lambda: c.exec_cell(cell["id"], ["true"])["exit_code"] == 0)
            deleted = c.delete_cell(cell["id"])
            assert c.wait_task(deleted["id"], timeout=120)["state"] == "COMPLETED"
            listed = subprocess.run(
                ["runc", "--root", str(state), "list", "-q"], capture_output=True, text=True
            )
            assert listed.stdout.split() == []


def _eventually(check: Callable[[], bool], timeout: float = 60.0) -> bool:
    """`check()` until it is true; an error answer (the agent not registered yet) retries."""
    from cellplane.client.errors import CellplaneError

    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except CellplaneError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
