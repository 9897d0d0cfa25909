"""Cells that change host, on three namespace hosts with real podman each: a drain moves a cell
with its volume (the data and its checksum intact), a host cut off from the network is DOWN and
its cells run elsewhere, and when it comes back it removes their old containers before it is
READY again: no cell ever has two running containers once the host is back."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from tests.integration.multihost.conftest import IMAGE, SMALL, ThreeHosts, wait_for

from cellplane import devhosts
from cellplane.devhosts import hosts as devhosts_hosts
from cellplane.testing.waits import finish, unique

pytestmark = pytest.mark.integration

# Writes 256 KB of random data once (a moved cell starts again on the data it finds), then waits.
WRITER = [
    "sh",
    "-c",
    "[ -f /data/blob ] || { head -c 262144 /dev/urandom > /data/blob; "
    "sha256sum /data/blob > /data/blob.sum; }; trap 'exit 0' TERM; sleep 600 & wait",
]
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]


def _running_containers(three: ThreeHosts, name: str, cell_id: str) -> list[str]:
    """Ids of the running containers of `cell_id` on host `name`, as its own podman sees them."""
    host = devhosts.get_host(three.data_dir, name)
    cmd = devhosts_hosts._engine_command(  # the host's own engine, inside its namespaces
        host, "ps", "--format", "json", "--filter", f"label=cellplane.cell={cell_id}"
    )
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
    return [str(c["Id"]) for c in json.loads(done.stdout or "[]")]


def _host_names(three: ThreeHosts) -> dict[str, str]:
    return {r["id"]: n for n, r in three.host_rows().items()}


def _running(three: ThreeHosts, cell_id: str, away_from: str | None = None) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        cell = three.client.get_cell(cell_id)
        ok = cell["state"] == "RUNNING" and (away_from is None or cell["host"] != away_from)
        return cell if ok else None

    return wait_for(check, 90, f"cell {cell_id} RUNNING")


def _link(three: ThreeHosts, name: str, state: str) -> None:
    """Cut (down) or restore (up) the host's only link to the underlay, from inside it."""
    host = devhosts.get_host(three.data_dir, name)
    subprocess.run(
        ["nsenter", f"--net={host.netns_path}", "ip", "link", "set", "eth0", state],
        check=True,
        timeout=30,
    )


def test_drain_moves_a_cell_with_its_volume_and_the_data_is_intact(
    three_hosts: ThreeHosts,
) -> None:
    c = three_hosts.client
    volume = unique("data")
    c.create_volume("default", volume, size_gb=1)
    role = {"role": unique("db")}
    task = c.create_cell(
        "default",
        unique("db"),
        IMAGE,
        command=WRITER,
        labels=role,
        volumes=[{"volume": volume, "path": "/data"}],
        restart={"policy": "always"},
        **SMALL,
    )
    cid = task["entity"]["id"]
    assert finish(c, task["id"])["state"] == "COMPLETED"
    before = _running(three_hosts, cid)
    names = _host_names(three_hosts)
    old = names[before["host"]]
    # A peer on another host that has talked to the cell: its kernel keeps the cell's MAC.
    peer_task = c.create_cell(
        "default",
        unique("peer"),
        IMAGE,
        command=SLEEPER,
        affinity=[{"selector": role, "anti": True}],
        **SMALL,
    )
    peer = peer_task["entity"]["id"]
    assert finish(c, peer_task["id"])["state"] == "COMPLETED"
    assert _running(three_hosts, peer)["host"] != before["host"]

    def reached() -> bool:
        pinged = c.exec_cell(peer, ["ping", "-c", "1", "-W", "1", str(before["address"])])
        return pinged["exit_code"] == 0

    wait_for(reached, 30, "the cell pinged from its peer")

    def digest() -> str:
        out = c.exec_cell(cid, ["sha256sum", "/data/blob"])
        assert out["exit_code"] == 0, out
        return str(out["output"]).split()[0]

    checksum = wait_for(digest, 30, "the data written")
    drain = c.drain_host(before["host"])
    try:
        done = finish(c, drain["id"], timeout=180)
        assert done["state"] == "COMPLETED", (done.get("error"), done.get("steps"))
        after = _running(three_hosts, cid, away_from=before["host"])
        assert after["generation"] == before["generation"] + 1
        # Same address, new MAC: the moved cell's gratuitous ARP updates the peer's entry and
        # the overlay's learning at once (without it, ~39 s until the peer's kernel re-probes).
        assert after["address"] == before["address"]
        try:
            wait_for(reached, 8, "the moved cell pinged from its peer at its address")
        except AssertionError as e:
            arp = [
                f"{n}: {line}"
                for n in names.values()
                for line in devhosts.get_host(three_hosts.data_dir, n)
                .log_path.read_text(errors="replace")
                .splitlines()
                if "ARP" in line
            ]
            raise AssertionError(f"{e}\nthe agents' ARP log lines:\n" + "\n".join(arp)) from None
        assert digest() == checksum
        recorded = c.exec_cell(cid, ["cat", "/data/blob.sum"])["output"]
        assert str(recorded).split()[0] == checksum  # written before the move, not rewritten
        assert "moved" in [e["type"] for e in after["events"]]
        # The old copy goes once the old host has removed the cell's old container.
        wait_for(
            lambda: "volume-copy-removed" in [e["type"] for e in c.get_cell(cid)["events"]],
            60,
            "the old copy removed",
        )
        assert _running_containers(three_hosts, old, cid) == []
        assert len(_running_containers(three_hosts, names[after["host"]], cid)) == 1
    finally:
        c.set_maintenance(before["host"], False)
        finish(c, c.delete_cell(cid)["id"])
        finish(c, c.delete_cell(peer)["id"])


def test_a_lost_host_fails_over_and_fences_its_old_containers_on_return(
    three_hosts: ThreeHosts,
) -> None:
    c = three_hosts.client
    ids = []
    for _ in range(3):  # spread: one on each host
        task = c.create_cell(
            "default", unique("w"), IMAGE, command=SLEEPER, restart={"policy": "always"}, **SMALL
        )
        assert finish(c, task["id"])["state"] == "COMPLETED"
        ids.append(task["entity"]["id"])
    cells = {i: _running(three_hosts, i) for i in ids}
    names = _host_names(three_hosts)
    lost_cell = ids[0]
    lost_host_id = cells[lost_cell]["host"]
    lost = names[lost_host_id]
    _link(three_hosts, lost, "down")
    try:
        wait_for(lambda: three_hosts.host_rows()[lost]["state"] == "DOWN", 60, f"{lost} DOWN")
        moved = _running(three_hosts, lost_cell, away_from=lost_host_id)
        assert moved["generation"] == 2
        failover = [e for e in moved["events"] if e["type"] == "failover"]
        assert failover and failover[0]["message"].startswith(f"host {lost} is DOWN")
        # Cut off, the lost host still runs the old container (it cannot know yet).
        assert len(_running_containers(three_hosts, lost, lost_cell)) == 1
    finally:
        _link(three_hosts, lost, "up")
    row = wait_for(
        lambda: (r := three_hosts.host_rows()[lost])["state"] == "READY" and r, 90, f"{lost} back"
    )
    # READY only once its agent removed the container of the cell that now runs elsewhere.
    assert _running_containers(three_hosts, lost, lost_cell) == [], row
    for i in ids:
        per_host = {n: len(_running_containers(three_hosts, n, i)) for n in names.values()}
        assert sum(per_host.values()) == 1, (i, per_host)
    for i in ids:
        finish(c, c.delete_cell(i)["id"])
