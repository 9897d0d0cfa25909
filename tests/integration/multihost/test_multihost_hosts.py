"""Three namespace hosts on one machine: they join, run cells, and their containers never share
an address."""

from __future__ import annotations

import pytest
from tests.integration.multihost.conftest import (
    IMAGE,
    SLEEP,
    SMALL,
    ThreeHosts,
    finish,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_three_hosts_run_a_cell_each_with_distinct_addresses(three_hosts: ThreeHosts) -> None:
    c = three_hosts.client
    rows = three_hosts.host_rows()
    assert {n: (r["state"], r["zone"], r["address"]) for n, r in rows.items()} == {
        name: ("READY", f"z{i + 1}", three_hosts.hosts[name].address)
        for i, name in enumerate(("h1", "h2", "h3"))
    }
    ids = []
    for _ in range(3):  # spread (the default policy) puts one on each host
        task = c.create_cell("default", unique("x"), IMAGE, command=SLEEP, **SMALL)
        assert finish(c, task["id"])["state"] == "COMPLETED"
        ids.append(task["entity"]["id"])
    cells = [
        wait_for(lambda i=i: (cell := c.get_cell(i))["state"] == "RUNNING" and cell, what=i)
        for i in ids
    ]
    by_id = {r["id"]: n for n, r in rows.items()}
    assert sorted(by_id[cell["host"]] for cell in cells) == ["h1", "h2", "h3"]
    addresses = [cell["address"] for cell in cells]
    assert all(addresses) and len(set(addresses)) == 3, addresses
    for i in ids:
        finish(c, c.delete_cell(i)["id"])
