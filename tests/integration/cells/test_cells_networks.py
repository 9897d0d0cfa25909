"""A cell on several networks of its project, on one host with real podman.

A cell on networks a and b reaches a cell of a and a cell of b, by name and by address; a cell
only on b reaches neither the cell only on a nor its name; the two-network cell is reachable
from b by its name there. (This host's agent runs without the overlay: the engine picks the
addresses, which the test reads from inside the cells.)
"""

from __future__ import annotations

import re

import pytest

from cellplane.client import CellplaneError, Client

from .conftest import HTTPD, Cells, http, sh, unique, wait_for


def _addresses(client: Client, cell_id: str) -> list[str]:
    """The cell's IPv4 addresses other than loopback, as its interfaces have them."""
    code, out = sh(client, cell_id, "ip -4 -o addr show")
    assert code == 0, out
    return [a for a in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out) if a != "127.0.0.1"]


@pytest.mark.integration
def test_a_cell_on_two_networks_reaches_each_and_the_networks_stay_apart(
    cells: Cells, client: Client
) -> None:
    net_a, net_b = unique("na"), unique("nb")
    client.create_network("default", net_a)
    client.create_network("default", net_b)
    try:
        both, on_a, on_b = cells.run_many(
            [
                ("both", None, {"networks": [net_a, net_b]}),
                ("ona", ["sh", "-c", HTTPD.format(text="from-a")], {"network": net_a}),
                ("onb", ["sh", "-c", HTTPD.format(text="from-b")], {"network": net_b}),
            ]
        )
        assert [n["name"] for n in both["networks"]] == [net_a, net_b]
        mine = _addresses(client, both["id"])
        assert len(mine) == 2, mine  # one interface on each network
        # The cell's answer lists each network with the address its engine gave there.
        wait_for(
            lambda: (
                sorted(n["address"] for n in client.get_cell(both["id"])["networks"])
                == sorted(mine)
            ),
            30,
            what="the cell's addresses on both networks reported",
        )
        a_addr, b_addr = _addresses(client, on_a["id"]), _addresses(client, on_b["id"])
        assert len(a_addr) == 1 and len(b_addr) == 1, (a_addr, b_addr)
        # The two-network cell reaches a cell of each network by name and by address.
        for other, address, text in ((on_a, a_addr[0], "from-a"), (on_b, b_addr[0], "from-b")):
            code, out = sh(client, both["id"], f"ping -c1 -W2 {other['name']}")
            assert code == 0 and address in out, out
            assert text in http(client, both["id"], address)
            assert text in http(client, both["id"], other["name"])
        # From b, the two-network cell answers by its name there, with its address on b.
        code, out = sh(client, on_b["id"], f"ping -c1 -W2 {both['name']}")
        assert code == 0, out
        assert any(addr in out for addr in mine), out
        # A cell only on b reaches neither the cell only on a nor its name (controls above).
        code, out = sh(client, on_b["id"], f"ping -c1 -W2 {a_addr[0]}")
        assert code != 0, out
        assert "from-a" not in http(client, on_b["id"], a_addr[0])
        code, out = sh(client, on_b["id"], f"ping -c1 -W2 {on_a['name']}")
        assert code != 0 and a_addr[0] not in out, out
        # A network a cell uses, as a further one, is not deleted.
        with pytest.raises(CellplaneError) as refused:
            client.delete_network("default", net_b)
        assert refused.value.status == 409 and both["name"] in str(refused.value)
    finally:
        cells.cleanup()
        for name in (net_a, net_b):
            try:
                client.delete_network("default", name)
            except CellplaneError as e:
                assert e.status == 404, e


@pytest.mark.integration
def test_networks_stay_apart_after_another_networks_last_cell_is_gone(
    cells: Cells, client: Client
) -> None:
    """netavark 1.4 removes the FORWARD jump that all isolated networks share when any one of
    them loses its last container; the driver's own chains (`drivers.podman_guard`) keep them
    apart. Here the only cell of network c goes, and a cell of a still cannot reach one of b."""
    nets = [unique("ga"), unique("gb"), unique("gc")]
    for name in nets:
        client.create_network("default", name)
    try:
        on_a, on_b, peer_b, on_c = cells.run_many(
            [
                ("ga", None, {"network": nets[0]}),
                ("gb", ["sh", "-c", HTTPD.format(text="from-b")], {"network": nets[1]}),
                ("gb2", None, {"network": nets[1]}),
                ("gc", None, {"network": nets[2]}),
            ]
        )
        (b_addr,) = _addresses(client, on_b["id"])
        # Control: b's web server answers on its own network, by address.
        wait_for(lambda: "from-b" in http(client, peer_b["id"], b_addr), 15, what="b from b2")
        assert "from-b" not in http(client, on_a["id"], b_addr)
        cells.delete(on_c["id"])  # network c's last container: netavark's complete teardown
        assert "from-b" in http(client, peer_b["id"], b_addr)
        assert "from-b" not in http(client, on_a["id"], b_addr)
    finally:
        cells.cleanup()
        for name in nets:
            try:
                client.delete_network("default", name)
            except CellplaneError as e:
                assert e.status == 404, e
