"""The cells of a network keep reaching their gateway while other cells come and go.

Linux gives a bridge whose address was never set the lowest address of its ports, and netavark
1.4 (Debian 12's) leaves its bridges so: a new cell whose veth had a lower address changed the
gateway's address under the running cells, and until their neighbour caches went stale what
they sent to the gateway was lost. Their name lookups are (the engine's resolver listens there):
a cell could not resolve one started a moment before ("bad address"; the README's tour failed so
in CI). The agent now fixes the bridge's address after a start (`drivers.bridge_pin`).

Each new cell is looked up once, at once, by a cell that ran before it, and looks that one up,
with no retry; the gateway's address seen from the first cell is the bridge's, unchanged
throughout. Without the fix this failed in 3 runs of 3 here (the gateway had a new address).
"""

from __future__ import annotations

import re

import pytest

from cellplane.client import Client

from .conftest import Cells, sh

ROUNDS = 5


def _gateway_mac(client: Client, cell_id: str) -> str:
    code, out = sh(client, cell_id, "ip route | awk '/^default/ {print $3}' | xargs ip neigh show")
    assert code == 0, out
    found = re.search(r"lladdr ([0-9a-f:]{17})", out)
    assert found, out
    return found.group(1)


@pytest.mark.integration
def test_new_cells_do_not_change_the_gateway_under_running_ones(
    cells: Cells, client: Client
) -> None:
    try:
        first = cells.run("seer")
        code, out = sh(
            client, first["id"], "ping -c1 -W2 $(ip route | awk '/^default/ {print $3}')"
        )
        assert code == 0, out
        gateway = _gateway_mac(client, first["id"])
        for _ in range(ROUNDS):
            new = cells.run("newcomer")
            code, out = sh(client, first["id"], f"ping -c1 -W2 {new['name']}")
            assert code == 0 and "0% packet loss" in out, out
            code, out = sh(client, new["id"], f"ping -c1 -W2 {first['name']}")
            assert code == 0 and "0% packet loss" in out, out
            assert _gateway_mac(client, new["id"]) == gateway
    finally:
        cells.cleanup()
