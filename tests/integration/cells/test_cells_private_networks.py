"""An engine that keeps its network run state to itself (`--private-networks`; every agent on
the overlay runs so outside dev hosts), killed and restarted by its agent.

Its service runs in a mount namespace of its own where /run/containers/networks is the engine's
directory; the network namespaces podman pins under /run/netns must stay the machine's, or the
engine the agent starts again (in a new mount namespace) cannot find its running containers'
namespaces: the running cell could then not even be listed, stopped or deleted (the engine
answered 500 "unknown FS magic" on /run/netns/netns-...).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from cellplane.drivers.engine import SHARED_NETWORK_RUN_DIR, PodmanService
from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.harness import Deployment

from .conftest import HTTPD, Cells, engine_pid, http, sh, start_deployment, unique, wait_for


@pytest.fixture(scope="module")
def private(busybox_archive: Path) -> Iterator[Deployment]:
    d = start_deployment(busybox_archive, agent_args=["--private-networks"])
    try:
        yield d
    finally:
        d.close()


def _mount_points() -> set[str]:
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}


@pytest.mark.integration
def test_a_private_network_engine_killed_adopts_its_cells(private: Deployment) -> None:
    d = private
    probe_driver = PodmanDriver(d.engine_url)
    api = docker.APIClient(base_url=d.engine_url, version="1.41")
    with d.client() as client:
        cells = Cells(d, client, probe_driver)
        net = unique("pn")
        client.create_network("default", net)
        try:
            server = cells.run("pnweb", ["sh", "-c", HTTPD.format(text="kept")], network=net)
            peer = cells.run("pnpeer", network=net)
            # A sandbox is made by the engine's second service (runsc), in a namespace of its own.
            sandboxed = (
                cells.run(
                    "pnsand",
                    ["sh", "-c", HTTPD.format(text="boxed")],
                    network=net,
                    isolation="sandbox",
                )
                if shutil.which("runsc")
                else None
            )
            # The resolver's configuration is the engine's, not in the machine's directory.
            own = d.engine_dir / "run" / "networks" / "aardvark-dns"
            ours = {p.name for p in own.iterdir() if p.is_file() and not p.name.endswith(".pid")}
            assert ours, sorted(own.iterdir())
            shared = {p.name for p in (SHARED_NETWORK_RUN_DIR / "aardvark-dns").glob("*")}
            assert not ours & shared, ours & shared
            # The cell's network namespace is pinned where the machine sees it.
            [info] = probe_driver.list({"cellplane.cell": server["id"]})
            sandbox = api.inspect_container(info.id)["NetworkSettings"]["SandboxKey"]
            assert sandbox.startswith("/run/netns/") and sandbox in _mount_points(), sandbox

            old_pid = engine_pid(d)
            os.kill(old_pid, signal.SIGKILL)
            probe = PodmanService(d.engine_dir)
            wait_for(
                lambda: engine_pid(d) not in (0, old_pid) and probe.answers(0.5),
                15,
                interval=0.1,
                what="the agent to restart its engine",
            )
            time.sleep(0.5)
            engine = PodmanDriver(d.engine_url)
            try:
                [again] = engine.list({"cellplane.cell": server["id"]})
            finally:
                engine.close()
            assert again.id == server["container_id"] and again.running, again
            # The adopted cell still serves its network, by name; exec works.
            assert "kept" in http(client, peer["id"], server["name"])
            assert sh(client, server["id"], "echo in") == (0, "in\n")
            if sandboxed is not None:
                assert "boxed" in http(client, peer["id"], sandboxed["name"])
            # A new cell on the network, and the adopted ones deleted cleanly.
            late = cells.run("pnlate", network=net)
            assert "kept" in http(client, late["id"], server["name"])
            cells.delete(server["id"])
            assert sandbox not in _mount_points()
        finally:
            cells.cleanup()
            client.delete_network("default", net)
            probe_driver.close()
            api.close()
