"""Hardening defaults on a real engine (docs/operations.md, "Hardening defaults"): every cell's
main process runs with no-new-privileges and without the dropped capabilities, under a pids
limit the kernel enforces; a read-only root is an opt-in that leaves /tmp writable."""

from __future__ import annotations

import pytest

from cellplane.drivers.base import DEFAULT_PIDS_LIMIT

from .conftest import Cells

pytestmark = pytest.mark.integration

# Capability numbers (linux/capability.h).
CAP = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "FOWNER": 3,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SETPCAP": 8,
    "NET_BIND_SERVICE": 10,
    "NET_RAW": 13,
    "SYS_CHROOT": 18,
    "SYS_ADMIN": 21,
    "MKNOD": 27,
    "AUDIT_WRITE": 29,
    "SETFCAP": 31,
}
DROPPED = ("SETFCAP", "SETPCAP", "SYS_CHROOT", "MKNOD", "AUDIT_WRITE", "SYS_ADMIN")
KEPT = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE")


def _run(cells: Cells, cell_id: str, script: str) -> tuple[int, str]:
    out = cells.c.exec_cell(cell_id, ["sh", "-c", script])
    return int(out["exit_code"]), str(out["output"])


def _status(cells: Cells, cell_id: str) -> dict[str, str]:
    code, text = _run(cells, cell_id, "cat /proc/1/status")  # the cell's main process
    assert code == 0, text
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def test_a_cell_runs_with_no_new_privileges_and_the_reduced_capability_set(cells: Cells) -> None:
    cell = cells.run("caps")
    status = _status(cells, cell["id"])
    assert status["NoNewPrivs"] == "1"
    for field in ("CapEff", "CapBnd", "CapPrm"):
        mask = int(status[field], 16)
        assert [c for c in DROPPED if mask >> CAP[c] & 1] == [], field
        assert [c for c in KEPT if not mask >> CAP[c] & 1] == [], field
    # The engine says the same of the container.
    attrs = cells.engine._api.inspect_container(cell["container_id"])
    host_config = attrs["HostConfig"]
    assert host_config["Privileged"] is False
    assert "no-new-privileges" in " ".join(host_config.get("SecurityOpt") or [])
    assert host_config["PidsLimit"] == DEFAULT_PIDS_LIMIT
    for key in ("NetworkMode", "PidMode", "IpcMode", "UTSMode"):
        assert host_config.get(key) != "host", key


def test_the_pids_limit_is_enforced(cells: Cells) -> None:
    cell = cells.run("pids", pids_limit=16)
    assert cells.c.get_cell(cell["id"])["pids_limit"] == 16
    # A subshell starts up to 40 background sleeps, counting each; the shell dies at the first
    # fork the kernel refuses. Only shell builtins run after it (no fork is left to spend).
    script = (
        "( i=0; while [ $i -lt 40 ]; do sleep 5 >/dev/null 2>&1 & i=$((i+1)); echo $i; done )"
        " >/tmp/count 2>/tmp/err; echo exit=$?; last=0;"
        " while read -r x; do last=$x; done </tmp/count; echo started=$last;"
        ' read -r err </tmp/err; echo "err=$err"'
    )
    code, out = _run(cells, cell["id"], script)
    assert code == 0, out
    started = int(out.split("started=")[1].split()[0])
    assert 0 < started < 16, out  # the cell's own processes count too
    assert "exit=0" not in out, out
    assert "fork" in out.lower() or "resource temporarily unavailable" in out.lower(), out


def test_a_read_only_root_is_an_opt_in_that_keeps_tmp_writable(cells: Cells) -> None:
    ro = cells.run("ro", read_only=True)
    code, out = _run(cells, ro["id"], "touch /made-here 2>&1; echo rc=$?; touch /tmp/ok && echo ok")
    assert code == 0, out
    assert "Read-only file system" in out and "rc=1" in out and out.strip().endswith("ok")
    rw = cells.run("rw")
    code, out = _run(cells, rw["id"], "touch /made-here && echo written")
    assert (code, out.strip()) == (0, "written")
