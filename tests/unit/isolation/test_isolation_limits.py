"""A sandbox's CPU and memory limits written to its cgroup (runsc has no `update`): which files,
which values, in which order; refusals that write nothing; and the writes on a directory tree
laid out as cgroupfs is."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellplane.drivers.sandbox_limits import apply, cgroup_writes

LEAF = "/libpod_parent/libpod-abc"
V1 = (
    "12:pids:/libpod_parent/libpod-abc\n"
    "5:cpu,cpuacct:/libpod_parent/libpod-abc\n"
    "4:memory:/libpod_parent/libpod-abc\n"
    "1:name=systemd:/\n"
    "0::/\n"
)
V2 = "0::/machine/libpod-abc\n"


def test_cgroup_v1_gets_the_period_then_the_quota_then_the_memory() -> None:
    root = Path("/cg")
    assert cgroup_writes(V1, 0.25, 96, root) == [
        (root / "cpu" / LEAF[1:] / "cpu.cfs_period_us", "100000"),
        (root / "cpu" / LEAF[1:] / "cpu.cfs_quota_us", "25000"),
        (root / "memory" / LEAF[1:] / "memory.limit_in_bytes", str(96 * 1024 * 1024)),
    ]
    # 0 lifts a limit; a tiny CPU share is raised to the kernel's 1 ms minimum.
    lifted = dict(cgroup_writes(V1, 0, 0, root))
    assert lifted[root / "cpu" / LEAF[1:] / "cpu.cfs_quota_us"] == "-1"
    assert lifted[root / "memory" / LEAF[1:] / "memory.limit_in_bytes"] == "-1"
    assert (
        dict(cgroup_writes(V1, 0.001, 8, root))[root / "cpu" / LEAF[1:] / "cpu.cfs_quota_us"]
        == "1000"
    )


def test_cgroup_v2_gets_cpu_max_and_memory_max() -> None:
    root = Path("/cg")
    assert cgroup_writes(V2, 1.5, 64, root) == [
        (root / "machine/libpod-abc/cpu.max", "150000 100000"),
        (root / "machine/libpod-abc/memory.max", str(64 * 1024 * 1024)),
    ]
    assert [v for _, v in cgroup_writes(V2, 0, 0, root)] == ["max 100000", "max"]


@pytest.mark.parametrize(
    ("text", "cpu", "memory", "match"),
    [
        ("5:cpu,cpuacct:/\n4:memory:/\n", 1.0, 64, "not a container's own cgroup"),
        ("0::/\n", 1.0, 64, "not a container's own cgroup"),
        ("5:cpu:/a/../../etc\n4:memory:/a\n", 1.0, 64, "not a container's own cgroup"),
        ("12:pids:/x\n", 1.0, 64, "neither cpu and memory"),
        (V1, -1.0, 64, "must not be negative"),
        (V1, 1.0, -5, "must not be negative"),
    ],
)
def test_the_root_cgroup_an_escape_or_bad_limits_are_refused(
    text: str, cpu: float, memory: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        cgroup_writes(text, cpu, memory, Path("/cg"))


def _tree(tmp_path: Path, pid: int, swap: str | None) -> tuple[Path, Path]:
    proc, root = tmp_path / "proc", tmp_path / "cg"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(V1)
    for controller in ("cpu", "memory"):
        (root / controller / LEAF[1:]).mkdir(parents=True)
    if swap is not None:
        (root / "memory" / LEAF[1:] / "memory.memsw.limit_in_bytes").write_text(swap)
    return proc, root


def test_apply_writes_the_files_of_the_process_cgroup(tmp_path: Path) -> None:
    proc, root = _tree(tmp_path, 42, swap=None)
    apply(42, 0.5, 32, proc=proc, root=root)
    assert (root / "cpu" / LEAF[1:] / "cpu.cfs_quota_us").read_text() == "50000"
    assert (root / "cpu" / LEAF[1:] / "cpu.cfs_period_us").read_text() == "100000"
    assert (root / "memory" / LEAF[1:] / "memory.limit_in_bytes").read_text() == str(32 << 20)
    with pytest.raises(OSError):
        apply(43, 0.5, 32, proc=proc, root=root)  # no such process


def test_a_memory_limit_above_the_swap_limit_raises_the_swap_limit_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, root = _tree(tmp_path, 7, swap=str(64 << 20))
    limit = root / "memory" / LEAF[1:] / "memory.limit_in_bytes"
    swap = root / "memory" / LEAF[1:] / "memory.memsw.limit_in_bytes"
    real_write = Path.write_text

    def kernel_like(self: Path, data: str, *args: object, **kwargs: object) -> int:
        # As cgroup v1 does: a memory limit above memory+swap is EINVAL.
        if self == limit and int(data) > int(swap.read_text()):
            raise OSError(22, "Invalid argument")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_text", kernel_like)
    apply(7, 1.0, 128, proc=proc, root=root)
    assert limit.read_text() == str(128 << 20)
    assert swap.read_text() == str(256 << 20)
