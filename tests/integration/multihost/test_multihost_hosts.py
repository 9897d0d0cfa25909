"""Three namespace hosts on one machine: they join, run cells, and their containers never share
an address."""

from __future__ import annotations

import pytest
from tests.integration.multihost.conftest import IMAGE, SMALL, ThreeHosts, wait_for

from cellplane import devhosts
from cellplane.testing.waits import SLEEP, finish, unique

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


def test_a_host_whose_agent_is_killed_goes_suspect_then_down_and_back(
    three_hosts: ThreeHosts,
) -> None:
    d = three_hosts.deployment
    devhosts.kill_agent(three_hosts.data_dir, "h3")  # SIGKILL: no goodbye to the server
    assert not devhosts.get_host(three_hosts.data_dir, "h3").running
    suspect = wait_for(
        lambda: (row := three_hosts.host_rows()["h3"])["state"] in ("SUSPECT", "DOWN") and row,
        what="h3 SUSPECT",
    )
    assert suspect["state"] == "SUSPECT", suspect  # missed beats come before DOWN
    assert "no heartbeat" in suspect["state_reason"], suspect
    down = wait_for(
        lambda: (row := three_hosts.host_rows()["h3"])["state"] == "DOWN" and row,
        what="h3 DOWN",
    )
    assert "no heartbeat" in down["state_reason"], down
    assert {n: r["state"] for n, r in three_hosts.host_rows().items() if n != "h3"} == {
        "h1": "READY",
        "h2": "READY",
    }
    # Back with its host certificate alone: its one-use join token is spent.
    devhosts.start_agent(three_hosts.data_dir, "h3", server_url=d.url, ca_file=d.ca_file)
    three_hosts.wait_state("h3", "READY")
