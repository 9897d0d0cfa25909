"""The README's three-host tour, end to end, as `scripts/tour.sh` runs it with
`TOUR_MARKER=tour-hosts` and `cellplane up --hosts 1`: two more dev hosts added with `cellplane dev
hosts add`, three web cells spread over the three hosts, reached across hosts by name, a host
drained and its cell reached again where it moved; then everything removed (daemons, dev hosts
with their namespaces and links, the data directory), on success or failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[3]


def _dev_namespaces() -> set[str]:
    netns = Path("/run/netns")
    return {p.name for p in netns.glob("cp-h*")} if netns.is_dir() else set()


@pytest.mark.timeout(300)
def test_readme_three_host_tour_runs_end_to_end(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("the three-host tour needs root (dev hosts are network namespaces)")
    taken = _dev_namespaces() & {"cp-h1", "cp-h2", "cp-h3"}
    if taken:
        pytest.fail(f"dev hosts of another deployment are here ({sorted(taken)}): remove them")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    env["HOME"] = str(tmp_path)
    env["TOUR_MARKER"] = "tour-hosts"
    env["TOUR_UP_ARGS"] = "--hosts 1"
    env.pop("CELLPLANE_DATA_DIR", None)
    before = {p.name for p in Path("/tmp").glob("cp-tour-*")}
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "tour.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:  # each step has its own limit; this is the backstop
        proc.terminate()  # the tour's trap stops its daemons and removes its hosts and data
        try:
            stdout, stderr = proc.communicate(timeout=50)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"the tour did not finish in 240 s:\n{stdout[-8000:]}\n{stderr[-8000:]}")
    assert proc.returncode == 0, f"{stdout[-4000:]}\n{stderr[-4000:]}"
    assert "tour: passed" in stdout
    steps = [line for line in stdout.splitlines() if line.startswith("tour: ok")]
    assert any("dev hosts add h3" in s for s in steps) and any("host drain" in s for s in steps)
    # It cleaned up after itself: no data directory, no mount, no dev host namespace or bridge.
    assert {p.name for p in Path("/tmp").glob("cp-tour-*")} <= before
    assert "cp-tour-" not in Path("/proc/self/mounts").read_text()
    assert not _dev_namespaces() & {"cp-h1", "cp-h2", "cp-h3"}
    assert not Path("/sys/class/net/cpu0").exists()
