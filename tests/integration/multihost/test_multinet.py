"""A cell on two networks of its project, across real namespace hosts (the overlay).

    h1: both (networks a and b)      h2: ona (network a), onb (network b)

`both` reaches `ona` and `onb` on the other host by name and by the address the control plane
gave them; `onb` reaches `both` by its name on b; `onb` (only on b) does not reach `ona` (only
on a). Each of `both`'s interfaces has the control plane's address on its network. Then the
running `onb` joins a (`POST /v1/cells/{id}/networks`), reaches `ona` and is reached on a from
the other host; leaving a while it runs is refused (netavark 1.4 on the overlay).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from tests.integration.multihost.conftest import IMAGE, SMALL, ThreeHosts, wait_for

from cellplane.client import CellplaneError
from cellplane.testing.waits import finish, unique

pytestmark = pytest.mark.integration

PORT = 8080


def _serve(name: str) -> list[str]:
    return [
        "sh",
        "-c",
        f"mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p {PORT} -h /www",
    ]


def _start_on(setup: ThreeHosts, host: str, project: str, stem: str, **body: Any) -> dict[str, Any]:
    """A web cell of `project` on dev host `host` (the other hosts in maintenance meanwhile)."""
    c = setup.client
    rows = setup.host_rows()
    others = [r["id"] for n, r in rows.items() if n != host]
    for hid in others:
        c.set_maintenance(hid, True)
    name = unique(stem)
    try:
        task = c.create_cell(project, name, IMAGE, command=_serve(name), **SMALL, **body)
        done = finish(c, task["id"])
        assert done["state"] == "COMPLETED", (done, setup.log(host)[-1500:])
    finally:
        for hid in others:
            c.set_maintenance(hid, False)
    cell_id = task["entity"]["id"]
    cell = wait_for(
        lambda: (cl := c.get_cell(cell_id))["state"] == "RUNNING" and cl, 90, f"{name} RUNNING"
    )
    assert cell["host"] == rows[host]["id"], (cell, host)
    return dict(cell)


def _get(setup: ThreeHosts, src: dict[str, Any], target: str) -> str:
    """The page GET http://target:PORT/ answers inside `src` ('' if none; busybox nc)."""
    script = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target} {PORT} 2>&1"
    body = str(setup.client.exec_cell(src["id"], ["sh", "-c", script])["output"])
    head, sep, page = body.replace("\r\n", "\n").partition("\n\n")
    return page.strip() if sep and head.startswith("HTTP/") else ""


def _reaches(setup: ThreeHosts, src: dict[str, Any], dst: dict[str, Any], target: str) -> None:
    wait_for(
        lambda: _get(setup, src, target) == dst["name"],
        60,
        f"{src['name']} -> {dst['name']} as {target}",
    )


def test_a_two_network_cell_reaches_both_networks_on_another_host(
    three_hosts: ThreeHosts,
) -> None:
    c = three_hosts.client
    project = c.create_project(unique("mn"))["name"]
    c.create_network(project, "a")
    c.create_network(project, "b")
    made: list[dict[str, Any]] = []
    try:
        ona = _start_on(three_hosts, "h2", project, "ona", network="a")
        made.append(ona)
        onb = _start_on(three_hosts, "h2", project, "onb", network="b")
        made.append(onb)
        both = _start_on(three_hosts, "h1", project, "both", networks=["a", "b"])
        made.append(both)
        planned = {n["name"]: n["address"] for n in both["networks"]}
        assert list(planned) == ["a", "b"]
        out = str(c.exec_cell(both["id"], ["ip", "-4", "-o", "addr", "show"])["output"])
        have = set(re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out)) - {"127.0.0.1"}
        assert have == set(planned.values()), (have, planned)
        for dst in (ona, onb):
            (net,) = dst["networks"]
            _reaches(three_hosts, both, dst, dst["name"])
            _reaches(three_hosts, both, dst, net["address"])
        _reaches(three_hosts, onb, both, both["name"])  # by its name on b, across hosts
        # Control above (onb answers); onb, only on b, does not reach ona, only on a.
        assert _get(three_hosts, onb, ona["networks"][0]["address"]) == ""
        assert _get(three_hosts, onb, ona["name"]) == ""
        # onb, running, joins a too (the control plane's address there, static on the overlay):
        # it reaches ona at once; and leaves it again.
        joined = c.connect_cell_network(onb["id"], "a")
        on_a = {n["name"]: n["address"] for n in joined["networks"]}["a"]
        out = str(c.exec_cell(onb["id"], ["ip", "-4", "-o", "addr", "show"])["output"])
        assert on_a in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out), (on_a, out)
        _reaches(three_hosts, onb, ona, ona["name"])
        _reaches(three_hosts, both, onb, on_a)  # from the other host, by its new address
        # Leaving it while running is refused on an overlay host (netavark 1.4), naming why;
        # nothing changes.
        with pytest.raises(CellplaneError) as refused:
            c.disconnect_cell_network(onb["id"], "a")
        assert refused.value.status == 409 and "stop the cell first" in str(refused.value)
        assert [n["name"] for n in c.get_cell(onb["id"])["networks"]] == ["b", "a"]
        _reaches(three_hosts, onb, ona, ona["name"])
    finally:
        for cell in made:
            finish(c, c.delete_cell(cell["id"])["id"])
        for name in ("a", "b"):
            c.delete_network(project, name)
