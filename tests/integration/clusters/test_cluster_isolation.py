"""A node group's isolation class (issue 17): a cluster whose group asks for `sandbox` gets its
nodes as sandboxed cells on gVisor's kernel, and the other group's as standard cells."""

from __future__ import annotations

import os
import shutil

import pytest

from .conftest import Api, small_group

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("runsc") is None, reason="gVisor's runsc is not installed"),
]


def test_a_sandboxed_node_group_runs_its_nodes_on_gvisor(api: Api) -> None:
    spec = {
        "nodeGroups": [
            small_group("boxed", ["canary"], 1, isolation="sandbox"),
            small_group("plain", ["canary"], 1),
        ],
        # A marker the host image has: the canary is ready at once.
        "configuration": {"canary": {"marker": {"path": "/bin/sh"}}},
    }
    cid = api.create("iso", None, spec)
    try:
        c = api.settled(cid, timeout=120)
        assert c["state"] == "RUNNING", c
        seen = {}
        for name, cell_id in api.node_cells(c).items():
            code, release = api.exec(cell_id, ["uname", "-r"])
            assert code == 0, release
            seen[name.split("-")[1]] = (
                api.get(f"/v1/cells/{cell_id}")["isolation"],
                release.strip() == os.uname().release,
            )
        # A sandboxed node sees gVisor's kernel, not the host's; a standard one the host's.
        assert seen == {"boxed": ("sandbox", False), "plain": ("standard", True)}
        (boxed,) = [cell for name, cell in api.node_cells(c).items() if "-boxed-" in name]
        code, out = api.exec(boxed, ["dmesg"])
        assert code == 0 and "gVisor" in out, out
    finally:
        api.delete(cid)
