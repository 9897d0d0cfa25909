"""Sandboxed cells (isolation class `sandbox`, gVisor's runsc) on project networks across real
namespace hosts (issue 17 with the overlay of issue 10). Four busybox httpd cells that answer
their own name:

    h1: sa (project A, sandbox)     h2: ta (project A, standard)     h3: sb (project B, sandbox)
    h2: tb (project B, standard)

A sandboxed cell and a standard cell of one project reach each other across hosts, by name and
by the address the control plane gave them, both ways; the sandboxed cell of the other project
reaches its own project's cell but neither cell of project A, by name or address, and project
A's sandboxed cell does not reach it either.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from tests.integration.multihost.conftest import ThreeHosts
from tests.integration.multihost.test_overlay import Web, _blocked, _reaches, _start_on

from cellplane.testing.waits import finish, unique

pytestmark = pytest.mark.integration

if shutil.which("runsc") is None:
    pytest.skip("gVisor's runsc is not installed (apt-get install runsc)", allow_module_level=True)


@pytest.fixture(scope="module")
def cells(three_hosts: ThreeHosts) -> Iterator[dict[str, Web]]:
    c = three_hosts.client
    rows = three_hosts.host_rows()
    for name in ("h1", "h3"):
        assert "sandbox" in rows[name]["isolation"], (name, rows[name])
    projects = [c.create_project(unique("sa"))["name"], c.create_project(unique("sb"))["name"]]
    made: dict[str, Web] = {}
    try:
        for key, host, project, isolation in (
            ("sa", "h1", projects[0], "sandbox"),
            ("ta", "h2", projects[0], "standard"),
            ("sb", "h3", projects[1], "sandbox"),
            ("tb", "h2", projects[1], "standard"),
        ):
            made[key] = _start_on(three_hosts, host, project, key, isolation)
        for key in ("sa", "sb"):
            assert c.get_cell(made[key].id)["isolation"] == "sandbox"
        yield made
    finally:
        for web in made.values():
            finish(c, c.delete_cell(web.id)["id"])


@pytest.mark.parametrize("by", ["name", "address"])
def test_a_sandboxed_and_a_standard_cell_of_one_project_reach_each_other_across_hosts(
    three_hosts: ThreeHosts, cells: dict[str, Web], by: str
) -> None:
    for src, dst in (("sa", "ta"), ("ta", "sa"), ("sb", "tb"), ("tb", "sb")):
        _reaches(three_hosts, cells[src], cells[dst], by)


@pytest.mark.parametrize("by", ["name", "address"])
def test_a_sandboxed_cell_of_another_project_is_reached_by_neither_way(
    three_hosts: ThreeHosts, cells: dict[str, Web], by: str
) -> None:
    # sb's network works (it reaches its own project's cell), so what follows is isolation.
    _reaches(three_hosts, cells["sb"], cells["tb"], "address")
    for src, dst in (("sb", "sa"), ("sb", "ta"), ("sa", "sb"), ("ta", "sb")):
        _blocked(three_hosts, cells[src], cells[dst], by)
