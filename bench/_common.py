"""Shared helpers of the Cellplane benchmarks (bench/cell_start.py, burst.py, footprint.py).

Each benchmark starts a real deployment (`cellplane.testing.harness.Deployment`: server and agent
as separate processes, with the agent's own podman engine), uploads a tiny busybox image, measures,
prints ONE JSON object on stdout and cleans everything up. Progress goes to stderr.

The bare-engine baselines talk to the very same podman engine (the agent's, at `Deployment.engine_url`)
with the `docker` SDK's low-level client, sending the same create body the agent's driver sends
(image, command, labels, hostname, memory limit, a bridge network with an alias), then a start,
then the CPU quota and memory limit through libpod's update, as the agent does (`Baseline.limits`
picks another way). `EngineCpu` measures the engine's own CPU cost per container.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BASELINE_LABEL",
    "Baseline",
    "EngineCpu",
    "deployment",
    "emit",
    "log",
    "percentile",
    "proc_tree",
    "rss_kb",
    "summary_ms",
    "user_client",
]

BASELINE_LABEL = "cellplane.bench"
IMAGE_NAME = "busybox"
IMAGE_REF = "busybox:latest"

_T0 = time.monotonic()


def log(msg: str) -> None:
    """Progress line on stderr, with seconds since the script started."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def emit(doc: dict[str, Any]) -> None:
    """The one JSON object a benchmark prints on stdout."""
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); p99 of 50 samples is the largest but none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "p50": round(statistics.median(ms), 1),
        "p99": round(percentile(ms, 99), 1),
        "mean": round(statistics.fmean(ms), 1),
        "min": round(min(ms), 1),
        "max": round(max(ms), 1),
    }


# --- deployment ---------------------------------------------------------------------------------


@contextlib.contextmanager
def deployment(*, log_level: str = "warning", agent_args: list[str] | None = None) -> Iterator[Any]:
    """A started Deployment with the busybox image uploaded; closed (everything removed) on exit."""
    from cellplane.testing.busybox import build_busybox_archive
    from cellplane.testing.harness import Deployment

    d = Deployment(log_level=log_level, agent_args=agent_args)
    try:
        log(f"starting server + agent in {d.data_dir}")
        d.start()
        archive = build_busybox_archive(d.data_dir / "bench-images")
        with d.client() as c:
            c.upload_image(IMAGE_NAME, archive)
        d.busybox_archive = archive  # type: ignore[attr-defined]
        log(f"deployment ready: server pid {d.server_proc.pid}, agent pid {d.agent_proc.pid}")
        yield d
    finally:
        log("closing deployment (removes containers, networks, engine, files)")
        t = time.monotonic()
        d.close()
        log(f"closed in {time.monotonic() - t:.1f}s")


_LOGIN_LOCK = threading.Lock()


def user_client(d: Any, timeout: float = 60.0) -> Any:
    """An SDK client logged in as a user does it: `cellplane login` with the `admin` user's
    first password (a password grant at the tenant's token endpoint, a stored session), then
    `Client(credentials=...)` on that session, which renews the access token when it expires.

    Unlike `d.client()` (the bootstrap personal token), this exercises what a real session
    costs the server: password hashing, signed access tokens and their validation."""
    import os

    from cellplane.client import Client, config, credentials

    cfg = d.data_dir / "bench-cli" / "config.json"
    with _LOGIN_LOCK:
        if not cfg.exists():  # one login per deployment; every client shares the session
            _cli_login(d, cfg)
    saved = os.environ.get("CELLPLANE_CONFIG")
    os.environ["CELLPLANE_CONFIG"] = str(cfg)
    try:
        conf = config.load_config()
    finally:
        if saved is None:
            os.environ.pop("CELLPLANE_CONFIG", None)
        else:
            os.environ["CELLPLANE_CONFIG"] = saved
    provider = credentials.credentials_of(conf)
    if provider is None:
        raise RuntimeError(f"cellplane login stored no session in {cfg}")
    return Client(d.url, None, credentials=provider, timeout=timeout, verify=d.verify)


def _cli_login(d: Any, cfg: Path) -> None:
    import os
    import subprocess

    cfg.parent.mkdir(mode=0o700, exist_ok=True)
    password = (d.data_dir / "server" / "admin-password").read_text().strip()
    env = {**os.environ, "CELLPLANE_CONFIG": str(cfg)}
    env.pop("CELLPLANE_TOKEN", None)
    login = ["login", "--server", d.url, "--username", "admin", "--password-stdin"]
    subprocess.run(
        [sys.executable, "-m", "cellplane", *login],
        input=password.encode(),
        env=env,
        check=True,
        capture_output=True,
    )


# --- bare engine baseline -----------------------------------------------------------------------


@dataclass
class Baseline:
    """create+start containers directly on the deployment's engine, as the agent's driver does.

    `networks` bridge networks are created; with `prefix_length` they are carved as the agent's
    driver carves a project network of that size, else they get the engine's default /24.
    `create_start(name, k)` attaches the container to network `k`. `limits` says how the CPU and
    memory limits are applied: "after-start" as the agent does it (memory at create, no CPU
    quota, both set by libpod's update right after the start: three round trips), "at-create"
    (NanoCpus and Memory in the create body: the way before, two round trips) or "none".
    """

    engine_url: str
    archive: Path
    cpu: float = 0.25
    memory_mb: int = 64
    command: tuple[str, ...] = ("sleep", "3600")
    pool_size: int = 16
    networks: int = 1
    prefix: str = "cp-bench-net"
    limits: str = "after-start"
    prefix_length: int | None = None

    def __post_init__(self) -> None:
        import docker

        from cellplane.drivers.base import NetworkSpec
        from cellplane.drivers.podman import PodmanDriver

        if self.limits not in ("after-start", "at-create", "none"):
            raise ValueError(f"limits must be after-start, at-create or none: {self.limits!r}")
        self.client = docker.DockerClient(
            base_url=self.engine_url, version="1.41", timeout=120, max_pool_size=self.pool_size
        )
        self.api = self.client.api
        with self.archive.open("rb") as f:
            self.client.images.load(f.read())
        self.network_names = [f"{self.prefix}{k}" for k in range(self.networks)]
        driver = PodmanDriver(self.engine_url)
        try:
            for net in self.network_names:
                with contextlib.suppress(Exception):
                    self.api.remove_network(net)
                driver.ensure_network(
                    NetworkSpec(net, labels={BASELINE_LABEL: "1"}, prefix_length=self.prefix_length)
                )
        finally:
            driver.close()
        self._lock = threading.Lock()
        self.created: list[str] = []

    def create_start(self, name: str, k: int = 0) -> str:
        """One timed unit: create + start (+ libpod update with limits "after-start")."""
        from cellplane.drivers.podman import LIBPOD_PREFIX, libpod_update_body

        api = self.api
        net = self.network_names[k % self.networks]
        host_config = api.create_host_config(
            nano_cpus=round(self.cpu * 1e9) if self.limits == "at-create" else None,
            mem_limit=self.memory_mb * 1024 * 1024 if self.limits != "none" else None,
            network_mode=net,
        )
        networking = api.create_networking_config({net: api.create_endpoint_config(aliases=[name])})
        cid: str = api.create_container(
            IMAGE_REF,
            command=list(self.command),
            name=name,
            hostname=name,
            labels={BASELINE_LABEL: "1"},
            host_config=host_config,
            networking_config=networking,
        )["Id"]
        api.start(cid)
        if self.limits == "after-start":
            url = f"{api.base_url}{LIBPOD_PREFIX}/containers/{cid}/update"
            api.post(url, json=libpod_update_body(self.cpu, self.memory_mb)).raise_for_status()
        with self._lock:
            self.created.append(cid)
        return cid

    def is_running(self, cid: str) -> bool:
        return bool(self.api.inspect_container(cid)["State"]["Running"])

    def remove(self, cid: str) -> None:
        with contextlib.suppress(Exception):
            self.api.remove_container(cid, force=True)
        with self._lock, contextlib.suppress(ValueError):
            self.created.remove(cid)

    def remove_all(self, parallel: int = 8, networks: bool = True) -> None:
        ids = [c["Id"] for c in self.api.containers(all=True, filters={"label": BASELINE_LABEL})]
        parallel_map(self.remove, ids, parallel)
        if networks:
            for net in self.network_names:
                with contextlib.suppress(Exception):
                    self.api.remove_network(net)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.remove_all()
        self.client.close()


class RuncBaseline:
    """The bare runtime for `--driver runc`: `runc run --detach` of a bundle prepared beforehand
    (overlay root mounted, config.json written, by a `RuncDriver` of the bench's own, untimed),
    then the same limits written to its cgroup; the timed unit is those two steps only."""

    def __init__(
        self,
        engine_url: str,
        archive: Path,
        cpu: float,
        memory_mb: int,
        command: tuple[str, ...],
    ):
        import tempfile

        from cellplane.drivers.podman import PodmanDriver
        from cellplane.drivers.runc import RuncDriver

        self.directory = Path(tempfile.mkdtemp(prefix="cpb-runc-", dir="/tmp"))
        self.driver = RuncDriver(PodmanDriver(engine_url), self.directory)
        self.driver.load_image(archive)  # IMAGE_REF, as the podman baseline has it
        self.cpu, self.memory_mb, self.command = cpu, memory_mb, list(command)

    def prepare(self, name: str) -> str:
        from cellplane.drivers.base import ContainerSpec

        spec = ContainerSpec(
            name=name,
            image=IMAGE_REF,
            command=self.command,
            memory_mb=self.memory_mb,
            labels={BASELINE_LABEL: "1"},
        )
        return self.driver.create(spec)

    def run(self, cid: str) -> None:
        """The timed unit: runc runs the prepared bundle, the CPU limit is written."""
        import subprocess

        from cellplane.drivers import sandbox_limits

        home = self.driver.containers / cid
        with (home / "log").open("ab") as log:
            subprocess.run(
                [
                    self.driver.runc,
                    "--root",
                    str(self.driver.state_root),
                    "run",
                    "--detach",
                    "--bundle",
                    str(home),
                    "--pid-file",
                    str(home / "pid"),
                    cid,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                check=True,
            )
        pid = int((home / "pid").read_text())
        sandbox_limits.apply(pid, self.cpu, self.memory_mb)

    def remove(self, cid: str) -> None:
        self.driver.remove(cid)

    def close(self) -> None:
        from cellplane.drivers.runc_state import become_subreaper

        def rm(cid: str) -> None:
            with contextlib.suppress(Exception):
                self.driver.remove(cid)

        parallel_map(rm, [info.id for info in self.driver.list({})], 8)
        self.driver.close()
        # The deployment's cells must not become this process's (unreaped) children when its
        # agent stops: only the agent is their reaper.
        become_subreaper(False)
        self.driver.podman.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def engine_remove_all(d: Any, parallel: int = 8, label: str = "cellplane.cell") -> int:
    """Stop the agent, then force-remove every container carrying `label` on its engine.

    The agent must be stopped first, or it would recreate the cells' containers. It stops its
    podman service when it exits, so the service is started again (containers live on under
    conmon); `Deployment.close()` later adopts it and destroys it.
    """
    import docker

    from cellplane.drivers.engine import PodmanService

    d.stop_agent()
    engine_url = PodmanService(d.engine_dir).start()
    client = docker.DockerClient(base_url=engine_url, version="1.41", timeout=120, max_pool_size=16)
    try:
        ids = [c["Id"] for c in client.api.containers(all=True, filters={"label": label})]

        def rm(cid: str) -> None:
            with contextlib.suppress(Exception):
                client.api.remove_container(cid, force=True)

        parallel_map(rm, ids, parallel)
        return len(ids)
    finally:
        client.close()


def parallel_map(fn: Callable[[Any], Any], items: Iterable[Any], parallel: int) -> list[Any]:
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(fn, items))


# --- processes and memory -----------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out.extend(
                    int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
                )
    return out


def proc_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p))
    return seen


def proc_name(pid: int) -> str:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = "?"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cmdline = " ".join(a.decode(errors="replace") for a in cmd if a)[:120]
    except OSError:
        cmdline = "?"
    return f"{os.path.basename(exe)}: {cmdline}"


def is_python(pid: int) -> bool:
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False
    return exe.startswith("python")


def rss_kb(pid: int) -> int:
    """VmRSS of one process in kB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def status_field(pid: int, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds consumed so far by one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is fields[0]; utime and stime are stat fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def engine_pid(d: Any) -> int | None:
    """The agent's podman service process (a child of the agent)."""
    for pid in proc_tree(d.agent_proc.pid)[1:]:
        with contextlib.suppress(OSError):
            if b"system\0service" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    return None


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return float(sum(fields) - idle), float(sum(fields))


class MachineMeter:
    """Share of the machine's CPU that was busy between start() and stop() (any process)."""

    def start(self) -> None:
        self.t0 = machine_cpu()

    def stop(self) -> float:
        busy, total = machine_cpu()
        return round(100 * (busy - self.t0[0]) / max(1.0, total - self.t0[1]), 1)


class CpuMeter:
    """CPU seconds used by the server, the agent and the engine between start() and stop()."""

    def __init__(self, d: Any) -> None:
        self.pids = {"server": d.server_proc.pid, "agent": d.agent_proc.pid}
        if (ep := engine_pid(d)) is not None:
            self.pids["engine"] = ep
        self.start_values: dict[str, float] = {}
        self.result: dict[str, float] = {}
        self.machine = MachineMeter()

    def start(self) -> None:
        self.start_values = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self.machine.start()

    def stop(self) -> dict[str, float]:
        self.result = {
            k: round(cpu_seconds(p) - self.start_values.get(k, 0.0), 2)
            for k, p in self.pids.items()
        }
        self.result["machine_busy_pct"] = self.machine.stop()
        return self.result


@contextlib.contextmanager
def py_spy(pids: dict[str, int], out_dir: Path | None, rate: int = 100) -> Iterator[None]:
    """Sample each process with `py-spy record` (collapsed stacks, idle frames included)."""
    import signal
    import subprocess

    if out_dir is None:
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, pid in pids.items():
        out = out_dir / f"{name}.txt"
        procs.append(
            subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(rate),
                    "--format",
                    "raw",
                    "--threads",
                    "--idle",
                    "--output",
                    str(out),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    log(f"py-spy sampling {', '.join(f'{k}={v}' for k, v in pids.items())} into {out_dir}")
    try:
        yield
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


# --- the engine's own CPU cost per container ----------------------------------------------------


def _times(pid: int) -> float:
    """User + system CPU seconds of a process and of its children it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: utime, stime, cutime, cstime are fields[11:15].
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _engine_helpers(engine_dir: str) -> dict[int, str]:
    """pid -> kind of the engine's helper processes: its conmons, and aardvark-dns.

    conmon (one per container, parent of `runc create` and the container's init) is told the
    engine's storage paths on its command line. aardvark-dns answers for every podman engine on
    the machine (one process); it is counted whole.
    """
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if exe == "conmon" and engine_dir.encode() in cmd:
            found[pid] = "conmon"
        elif exe == "aardvark-dns":
            found[pid] = "aardvark"
    return found


def container_cpu_s(container_id: str) -> float:
    """CPU seconds used inside a container's cgroup: `runc init` and the workload (0 if gone)."""
    for path, scale in (
        (f"/sys/fs/cgroup/cpuacct/libpod_parent/libpod-{container_id}/cpuacct.usage", 1e-9),
        (f"/sys/fs/cgroup/cpu,cpuacct/libpod_parent/libpod-{container_id}/cpuacct.usage", 1e-9),
    ):
        with contextlib.suppress(OSError, ValueError):
            return int(Path(path).read_text()) * scale
    with contextlib.suppress(OSError, ValueError):  # cgroup v2
        stat = Path(f"/sys/fs/cgroup/libpod_parent/libpod-{container_id}/cpu.stat").read_text()
        for line in stat.splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) * 1e-6
    return 0.0


class EngineCpu:
    """CPU seconds the engine spends to create and start containers, by process kind.

    - `podman`: the agent's podman service and what it waits for (netavark, `runc start`,
      the short-lived first half of conmon);
    - `conmon`: the conmons of the new containers, with the `runc create` each one waits for;
    - `container`: inside the new containers' cgroups (`runc init`; the workload, a sleep, adds
      nothing measurable);
    - `aardvark`: the machine's one aardvark-dns (shared with any other engine on the machine).

    `start()` before the containers are made, `stop(container_ids)` once they all run.
    `sample()` during the run records the podman service's CPU so far (growth with the count).
    """

    def __init__(self, engine_pid: int | None, engine_dir: str) -> None:
        self.engine_pid = engine_pid
        self.engine_dir = engine_dir
        self.samples: list[float] = []

    def _podman(self) -> float:
        return _times(self.engine_pid) if self.engine_pid else 0.0

    def start(self) -> None:
        self.helpers0 = {
            pid: (kind, _times(pid)) for pid, kind in _engine_helpers(self.engine_dir).items()
        }
        self.podman0 = self._podman()
        self.samples = []

    def sample(self) -> None:
        self.samples.append(self._podman() - self.podman0)

    def stop(self, container_ids: Sequence[str]) -> dict[str, Any]:
        totals = {"podman": self._podman() - self.podman0, "conmon": 0.0, "aardvark": 0.0}
        for pid, kind in _engine_helpers(self.engine_dir).items():
            before = self.helpers0.get(pid, (kind, 0.0))[1]
            totals[kind] += _times(pid) - before
        totals["container"] = math.fsum(container_cpu_s(c) for c in container_ids)
        n = max(1, len(container_ids))
        total = math.fsum(totals.values())
        return {
            "containers": len(container_ids),
            "cpu_seconds": {k: round(v, 2) for k, v in totals.items()},
            "cpu_ms_per_container": round(1000 * total / n, 1),
            "cpu_ms_per_container_by_kind": {k: round(1000 * v / n, 1) for k, v in totals.items()},
        }

    def podman_ms_per_container_by_step(self, step: int) -> list[float]:
        """The podman service's CPU per container for each `step` containers (from `sample()`)."""
        out, last = [], 0.0
        for s in self.samples:
            out.append(round(1000 * (s - last) / step, 1))
            last = s
        return out
