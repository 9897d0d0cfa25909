"""`cellplane.testing.cgroups.parse_proc_cgroup`: the cgroup paths of a process (v1 and v2)."""

from __future__ import annotations

from cellplane.testing.cgroups import CgroupLimits, parse_proc_cgroup


def test_hybrid_v1_lines_map_each_controller() -> None:
    text = (
        "9:name=systemd:/\n"
        "4:memory:/libpod_parent/libpod-abc\n"
        "2:cpu,cpuacct:/libpod_parent/libpod-abc\n"
        "0::/\n"
    )
    paths = parse_proc_cgroup(text)
    assert paths["memory"] == paths["cpu"] == paths["cpuacct"] == "/libpod_parent/libpod-abc"
    assert paths[""] == "/"


def test_v2_has_only_the_unified_path() -> None:
    assert parse_proc_cgroup("0::/machine.slice/libpod-abc.scope\n") == {
        "": "/machine.slice/libpod-abc.scope"
    }


def test_cpu_in_cores() -> None:
    assert CgroupLimits(1_000, 100_000, None).cpu == 0.01
    assert CgroupLimits(None, 100_000, None).cpu is None
