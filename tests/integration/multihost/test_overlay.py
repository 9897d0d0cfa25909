"""Project networks across real namespace hosts (the overlay), with real podman on each host.

Two projects, four cells, each a busybox httpd that answers its own name:

    h1: a1 (project A), b1 (project B)      h2: a2 (project A)      h3: b2 (project B)

Cells of one project reach each other across hosts, by name and by the address the control
plane gave them; cells of the other project are reached neither on the same host (a1, b1) nor
across hosts (a1/b2, a2/b1), by address or by name, both ways.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.integration.multihost.conftest import IMAGE, SMALL, ThreeHosts, wait_for

from cellplane.testing.waits import finish, unique

pytestmark = pytest.mark.integration

PORT = 8080


@dataclass(frozen=True)
class Web:
    """A running cell serving its own name on PORT."""

    id: str
    name: str
    address: str
    host: str
    project: str


def _serve(name: str) -> list[str]:
    return [
        "sh",
        "-c",
        f"mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p {PORT} -h /www",
    ]


def _start_on(
    setup: ThreeHosts, host: str, project: str, stem: str, isolation: str | None = None
) -> Web:
    """A web cell of `project` on dev host `host` (the other hosts in maintenance meanwhile), of
    isolation class `isolation` (None: the project's default)."""
    c = setup.client
    rows = setup.host_rows()
    others = [r["id"] for n, r in rows.items() if n != host]
    for hid in others:
        c.set_maintenance(hid, True)
    try:
        name = unique(stem)
        task = c.create_cell(
            project, name, IMAGE, command=_serve(name), isolation=isolation, **SMALL
        )
        done = finish(c, task["id"])
        if done["state"] != "COMPLETED":
            cell = c.get_cell(task["entity"]["id"])
            raise AssertionError(
                f"{name} on {host}: {done.get('error')}; events {cell.get('events')}\n"
                f"agent log:\n{setup.log(host)}"
            )
    finally:
        for hid in others:
            c.set_maintenance(hid, False)
    cell_id = task["entity"]["id"]
    try:
        cell = wait_for(
            lambda: (cl := c.get_cell(cell_id))["state"] == "RUNNING" and cl, 90, f"{name} RUNNING"
        )
    except AssertionError as e:
        raise AssertionError(f"{e}\nagent log of {host}:\n{setup.log(host)}") from None
    assert cell["host"] == rows[host]["id"], (cell, host)
    return Web(cell_id, name, str(cell["address"]), host, project)


def _get(setup: ThreeHosts, src: Web, target: str) -> str:
    """GET http://target:PORT/ from inside `src`: what came back. busybox nc, since busybox wget
    crashes (SIGSEGV) under this machine's runtime; nc's exit code says nothing: callers look
    at the body."""
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
    script = f"{request} | nc -w 2 {target} {PORT} 2>&1"
    return str(setup.client.exec_cell(src.id, ["sh", "-c", script])["output"])


def _answer(body: str) -> str:
    """The page of an HTTP answer (after the blank line), '' if none."""
    head, sep, page = body.replace("\r\n", "\n").partition("\n\n")
    return page.strip() if sep and head.startswith("HTTP/") else ""


def _reaches(setup: ThreeHosts, src: Web, dst: Web, by: str) -> None:
    target = dst.name if by == "name" else dst.address
    last: list[str] = []

    def check() -> bool:
        last[:] = [_get(setup, src, target)]
        return _answer(last[0]) == dst.name

    try:
        wait_for(check, 60, f"{src.name}@{src.host} -> {dst.name}@{dst.host} by {by}")
    except AssertionError as e:
        logs = "\n".join(f"--- {h}:\n{setup.log(h)[-1500:]}" for h in (src.host, dst.host))
        raise AssertionError(f"{e}; last answer {last!r}\n{logs}") from None


def _blocked(setup: ThreeHosts, src: Web, dst: Web, by: str) -> None:
    target = dst.name if by == "name" else dst.address
    got = _get(setup, src, target)
    # No HTTP answer at all (nc's own complaint, e.g. "bad address '<name>'", names the target:
    # so the check is on an answer, not on the name appearing in the output).
    assert "HTTP/" not in got and not _answer(got), (
        f"{src.name} (project {src.project}, {src.host}) reached {dst.name} "
        f"(project {dst.project}, {dst.host}) by {by}: {got!r}"
    )


@pytest.fixture(scope="module")
def webs(three_hosts: ThreeHosts) -> Iterator[dict[str, Web]]:
    c = three_hosts.client
    projects = [c.create_project(unique("pa"))["name"], c.create_project(unique("pb"))["name"]]
    made: dict[str, Web] = {}
    try:
        for key, host, project in (
            ("a1", "h1", projects[0]),
            ("a2", "h2", projects[0]),
            ("b1", "h1", projects[1]),
            ("b2", "h3", projects[1]),
        ):
            made[key] = _start_on(three_hosts, host, project, key)
        yield made
    finally:
        for web in made.values():
            finish(c, c.delete_cell(web.id)["id"])


def test_cells_get_their_projects_addresses_distinct_across_hosts(
    three_hosts: ThreeHosts, webs: dict[str, Web]
) -> None:
    addresses = {k: ipaddress.ip_address(w.address) for k, w in webs.items()}
    assert len(set(addresses.values())) == 4, addresses
    subnets = {
        w.project: ipaddress.ip_network(
            three_hosts.client.get_network(w.project, "default")["subnet"]
        )
        for w in webs.values()
    }
    assert all(addresses[k] in subnets[w.project] for k, w in webs.items()), (addresses, subnets)
    assert not subnets[webs["a1"].project].overlaps(subnets[webs["b1"].project])


@pytest.mark.parametrize("by", ["name", "address"])
def test_cells_of_one_project_reach_each_other_across_hosts(
    three_hosts: ThreeHosts, webs: dict[str, Web], by: str
) -> None:
    for src, dst in (("a1", "a2"), ("a2", "a1"), ("b1", "b2"), ("b2", "b1")):
        _reaches(three_hosts, webs[src], webs[dst], by)


@pytest.mark.parametrize("by", ["name", "address"])
def test_cells_of_two_projects_do_not_reach_each_other_on_one_host_or_across(
    three_hosts: ThreeHosts, webs: dict[str, Web], by: str
) -> None:
    # Each source first reaches a cell of its own project (by address: so a failure below is
    # isolation, not a network that does not work at all).
    own = {"a1": "a2", "a2": "a1", "b1": "b2", "b2": "b1"}
    for src, dst in own.items():
        _reaches(three_hosts, webs[src], webs[dst], "address")
    pairs = [
        ("a1", "b1"),  # one host (h1)
        ("b1", "a1"),
        ("a1", "b2"),  # across: h1 -> h3
        ("b2", "a1"),
        ("a2", "b1"),  # across: h2 -> h1
        ("b1", "a2"),
    ]
    for src, dst in pairs:
        _blocked(three_hosts, webs[src], webs[dst], by)
