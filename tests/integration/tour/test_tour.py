"""The README tour, end to end, as `scripts/tour.sh` runs it: `cellplane up` on a fresh data
directory and a free port, every command of the README's tour blocks (a cell, a volume, networks,
tasks, a 3-node etcd cluster, a tenant with quotas and mutual TLS) with its exit code and key
output checked, then everything removed. A README change that breaks the tour fails here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[3]


@pytest.mark.timeout(600)
def test_readme_tour_runs_end_to_end(tmp_path: Path) -> None:
    missing = [p for p in ("/usr/bin/etcd", "/usr/bin/etcdctl") if not os.path.exists(p)]
    if missing or shutil.which("curl") is None:
        pytest.fail(
            f"the tour needs {', '.join(missing) or 'curl'}: `make up` installs them "
            "(scripts/install-system.sh)"
        )
    env = dict(os.environ)
    # `cellplane` and `python` of this interpreter's environment, this tree's sources.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    env["HOME"] = str(tmp_path)  # the tour uses its own CLI config; nothing lands in ~
    before = {p.name for p in Path("/tmp").glob("cp-tour-*")}
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "tour.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=540)
    except subprocess.TimeoutExpired:  # each step has its own limit; this is the backstop
        proc.terminate()  # the tour's trap stops its daemons and removes its data directory
        try:
            stdout, stderr = proc.communicate(timeout=50)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"the tour did not finish in 540 s:\n{stdout[-8000:]}\n{stderr[-8000:]}")
    r = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    # The failed step's own report (what it ran, expected and printed) comes first in stderr,
    # before the daemons' stacks and log: shown whole, then the tail.
    failed_at = max(0, r.stderr.find("tour: README line"))
    report = r.stderr[failed_at : failed_at + 6000]
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{report}\n...\n{r.stderr[-4000:]}"
    assert "tour: passed" in r.stdout
    steps = [line for line in r.stdout.splitlines() if line.startswith("tour: ok")]
    assert any("cluster create kv" in s for s in steps) and any("logout" in s for s in steps)
    # It cleaned up after itself: no data directory, no mount left.
    assert {p.name for p in Path("/tmp").glob("cp-tour-*")} <= before
    assert "cp-tour-" not in Path("/proc/self/mounts").read_text()
