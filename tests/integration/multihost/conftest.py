"""Three hosts on one machine: a real TLS server on the underlay and three dev hosts.

`three_hosts` (session scope; tests leave the hosts READY) creates the underlay bridge, starts `cellplane server --tls`
listening on the bridge's address, uploads the busybox image, and adds the dev hosts h1, h2, h3
(zones z1, z2, z3; `cellplane.devhosts`): each a network namespace with its own agent and podman,
joining with a one-use join token as a remote agent does, then speaking mutual TLS with the host
certificate it received. Teardown removes the hosts (agents, engines,
containers, mounts, namespaces, links, bridge) and the deployment.

The underlay here (bridge ``cpt0``, ``10.78.0.0/24``, namespaces ``cpt-*``) is not the default
one of `cellplane dev hosts`, so a developer's own dev hosts are left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cellplane import devhosts
from cellplane.client import Client
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment
from cellplane.testing.waits import wait_for

IMAGE = "busybox"
SMALL: dict[str, Any] = {"cpu": 0.05, "memory_mb": 32}
TEST_UNDERLAY = devhosts.Underlay(bridge="cpt0", subnet="10.78.0.0/24", namespace_prefix="cpt-")
HOST_NAMES = ("h1", "h2", "h3")

T = TypeVar("T")


@dataclass
class ThreeHosts:
    """The running deployment, its admin client and the dev hosts (by name)."""

    deployment: Deployment
    client: Client
    underlay: devhosts.Underlay
    hosts: dict[str, devhosts.DevHost] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.deployment.data_dir

    def host_rows(self) -> dict[str, dict[str, Any]]:
        return {h["name"]: h for h in self.client.list_hosts()["items"]}

    def wait_state(self, name: str, state: str, timeout: float = 60.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            if not devhosts.get_host(self.data_dir, name).running:
                raise AssertionError(f"the agent of {name} is not running")
            row = self.host_rows().get(name)
            return row if row is not None and row["state"] == state else None

        return wait_for(check, timeout, f"host {name} {state}")

    def log(self, name: str) -> str:
        try:
            return devhosts.get_host(self.data_dir, name).log_path.read_text(errors="replace")[
                -3000:
            ]
        except (OSError, devhosts.DevHostError):
            return ""


def _start(archive: Path) -> ThreeHosts:
    devhosts.sweep(TEST_UNDERLAY)  # what an interrupted earlier run may have left
    gateway = devhosts.ensure_underlay(TEST_UNDERLAY)
    d = Deployment(tls=True, listen_host=gateway)
    setup = ThreeHosts(deployment=d, client=None, underlay=TEST_UNDERLAY)  # type: ignore[arg-type]
    try:
        d.start_server()
        setup.client = d.client()
        setup.client.upload_image(IMAGE, archive)
        for i, name in enumerate(HOST_NAMES):
            # Each joins as a remote agent would: a one-use token, then its host certificate.
            token = setup.client.create_join_token(ttl_s=600, uses=1)["token"]
            setup.hosts[name] = devhosts.add_host(
                name,
                data_dir=d.data_dir,
                server_url=d.url,
                join_token=token,
                ca_file=d.ca_file,
                zone=f"z{i + 1}",
                labels={"rack": f"r{i + 1}"},
                underlay=TEST_UNDERLAY,
            )
        for name in HOST_NAMES:
            try:
                setup.wait_state(name, "READY", 90)
            except AssertionError as e:
                raise AssertionError(f"{e}\nagent log of {name}:\n{setup.log(name)}") from None
    except BaseException:
        _stop(setup)
        raise
    return setup


def _stop(setup: ThreeHosts) -> None:
    try:
        devhosts.remove_all(setup.data_dir)
    finally:
        devhosts.net.remove_bridge(setup.underlay)
        if setup.client is not None:
            setup.client.close()
        setup.deployment.close()


@pytest.fixture(scope="package")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_archive(tmp_path_factory.mktemp("busybox"))


@pytest.fixture(scope="package")
def three_hosts(busybox_archive: Path) -> Iterator[ThreeHosts]:
    setup = _start(busybox_archive)
    try:
        yield setup
    finally:
        _stop(setup)
