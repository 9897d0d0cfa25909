"""CPU and memory limits of a running sandbox (gVisor's runsc), written to its cgroup.

runsc (Debian's 2022 build) has no `update` command, so the engine cannot change a running
sandbox's limits the way it does for runc (`podman update` fails). runsc does put the sandbox's
processes (the Sentry, its gofer, the ptrace stubs) in the container's cgroup and sets the
limits it is created with there; the host kernel enforces them. So a sandbox's limits are set
by writing that cgroup's files, found from the sandbox process's `/proc/<pid>/cgroup`: the same
limits `runc update` would write, after start (a CPU quota during gVisor's boot slows every
sandboxed start, as it does runc's), and changeable while it runs.

`cgroup_writes` is pure (unit-tested); `apply` does the writes.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CPU_PERIOD_US", "RUNTIME", "apply", "cgroup_writes", "cpu_quota_us"]

#: The engine's name of the runtime whose containers are limited here (engine.SANDBOX_RUNTIME).
RUNTIME = "runsc"
CPU_PERIOD_US = 100_000
_MIN_CPU_QUOTA_US = 1_000  # the kernel refuses a CFS quota under 1 ms
_MIB = 1024 * 1024


def cpu_quota_us(cpu: float) -> int:
    """The CFS quota of `cpu` cores per period; -1 (none) for 0."""
    return max(_MIN_CPU_QUOTA_US, round(cpu * CPU_PERIOD_US)) if cpu else -1


def _paths(proc_cgroup: str) -> tuple[dict[str, str], str | None]:
    """(v1 controller -> path, the v2 path or None) from a `/proc/<pid>/cgroup` text."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
            continue
        for name in controllers.split(","):
            v1[name] = path
    return v1, v2


def cgroup_writes(
    proc_cgroup: str, cpu: float, memory_mb: int, root: Path = Path("/sys/fs/cgroup")
) -> list[tuple[Path, str]]:
    """The files to write, in order, to give the process's cgroup `cpu` cores and `memory_mb`
    MiB (0: no limit). cgroup v1 (also a hybrid host's v1 controllers) or v2 alone. Raises
    ValueError when the text names neither the CPU nor the memory controller, or the process
    sits in the root cgroup (which must never be limited)."""
    if cpu < 0 or memory_mb < 0:
        raise ValueError(f"cpu and memory_mb must not be negative: {cpu}, {memory_mb}")
    quota = cpu_quota_us(cpu)
    v1, v2 = _paths(proc_cgroup)
    if "cpu" in v1 and "memory" in v1:
        cpu_dir, mem_dir = _under(root, v1["cpu"], "cpu"), _under(root, v1["memory"], "memory")
        limit = str(memory_mb * _MIB) if memory_mb else "-1"
        return [
            (cpu_dir / "cpu.cfs_period_us", str(CPU_PERIOD_US)),
            (cpu_dir / "cpu.cfs_quota_us", str(quota)),
            (mem_dir / "memory.limit_in_bytes", limit),
        ]
    if v2 is not None:
        d = _under(root, v2, "")
        return [
            (d / "cpu.max", f"{quota if quota > 0 else 'max'} {CPU_PERIOD_US}"),
            (d / "memory.max", str(memory_mb * _MIB) if memory_mb else "max"),
        ]
    raise ValueError("the process's cgroups name neither cpu and memory (v1) nor a v2 path")


def _under(root: Path, path: str, controller: str) -> Path:
    rel = path.strip("/")
    if not rel or ".." in rel.split("/"):
        raise ValueError(f"refusing to limit cgroup {path!r}: not a container's own cgroup")
    return root / controller / rel if controller else root / rel


def apply(
    pid: int,
    cpu: float,
    memory_mb: int,
    *,
    proc: Path = Path("/proc"),
    root: Path = Path("/sys/fs/cgroup"),
) -> None:
    """Write the limits into the cgroup of process `pid` (the sandbox). OSError or ValueError
    if it cannot: the caller reports it as a driver error."""
    text = (proc / str(pid) / "cgroup").read_text()
    for path, value in cgroup_writes(text, cpu, memory_mb, root):
        try:
            path.write_text(value)
        except OSError:
            # v1: a memory limit above the memory+swap limit is refused; raise that first (to
            # twice the memory, the engine's default swap; none without a memory limit).
            swap = path.with_name("memory.memsw.limit_in_bytes")
            if path.name != "memory.limit_in_bytes" or not swap.exists():
                raise
            swap.write_text(str(int(value) * 2) if int(value) > 0 else "-1")
            path.write_text(value)
