"""The CPU and memory limits the kernel enforces on a process, read from its cgroups.

For tests and benchmarks that check what a container really got (not what the engine says):
the process's cgroup paths come from `/proc/<pid>/cgroup`, then the limit files are read under
`/sys/fs/cgroup`, on cgroup v1 (`cpu.cfs_quota_us`, `memory.limit_in_bytes`, hybrid hosts
included) and v2 (`cpu.max`, `memory.max`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupLimits", "cgroup_limits", "parse_proc_cgroup"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CgroupLimits:
    """`cpu_quota_us` None: no CFS quota; `memory_bytes` None: no memory limit."""

    cpu_quota_us: int | None
    cpu_period_us: int
    memory_bytes: int | None

    @property
    def cpu(self) -> float | None:
        """The CPU limit in cores (quota / period), None without a quota."""
        return None if self.cpu_quota_us is None else self.cpu_quota_us / self.cpu_period_us


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """`/proc/<pid>/cgroup` -> {controller: path}; the v2 unified path is under ""."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _read(path: Path) -> str:
    return path.read_text().strip()


# cgroup v1 reports "no memory limit" as the largest page-aligned 64-bit value.
_V1_UNLIMITED = 1 << 62


def cgroup_limits(pid: int, root: Path = CGROUP_ROOT) -> CgroupLimits:
    """The limits of the cgroups process `pid` is in (its container's, for a container's init)."""
    paths = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
    if "cpu" in paths and "memory" in paths:  # v1 (or hybrid: the controllers are on v1)
        cpu_dir = root / "cpu" / paths["cpu"].lstrip("/")
        mem_dir = root / "memory" / paths["memory"].lstrip("/")
        quota = int(_read(cpu_dir / "cpu.cfs_quota_us"))
        memory = int(_read(mem_dir / "memory.limit_in_bytes"))
        return CgroupLimits(
            cpu_quota_us=None if quota < 0 else quota,
            cpu_period_us=int(_read(cpu_dir / "cpu.cfs_period_us")),
            memory_bytes=None if memory >= _V1_UNLIMITED else memory,
        )
    unified = root / paths[""].lstrip("/")
    quota_s, period_s = _read(unified / "cpu.max").split()
    memory_s = _read(unified / "memory.max")
    return CgroupLimits(
        cpu_quota_us=None if quota_s == "max" else int(quota_s),
        cpu_period_us=int(period_s),
        memory_bytes=None if memory_s == "max" else int(memory_s),
    )
