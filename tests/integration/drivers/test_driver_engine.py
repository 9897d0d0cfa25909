"""PodmanService: adopting a running service, and containers outliving a service restart."""

from __future__ import annotations

import os
import shutil

import pytest

from cellplane.drivers import errors
from cellplane.drivers.base import ContainerSpec, NetworkSpec
from cellplane.drivers.engine import PodmanService
from cellplane.drivers.podman_guard import GuardChains
from cellplane.drivers.runc_net_fw import iptables

from .conftest import IMAGE, start_engine, stop_engine

pytestmark = pytest.mark.integration


def test_container_survives_service_restart() -> None:
    labels = {"cellplane.test": "restart"}
    service, driver, _archive, data_dir = start_engine("restart")
    try:
        first_pid = service.pid
        assert first_pid is not None

        # A second PodmanService on the same data dir adopts the live service.
        again = PodmanService(service.data_dir)
        assert again.start() == service.socket_url
        assert again.pid == first_pid

        spec = ContainerSpec(name="survivor", image=IMAGE, command=["sleep", "300"], labels=labels)
        cid = driver.create(spec)
        driver.start(cid)
        before = driver.inspect(cid)
        assert before.running

        service.stop()
        with pytest.raises(ProcessLookupError):
            os.kill(first_pid, 0)
        with pytest.raises(errors.TemporaryDriverError):
            driver.ping()

        restarted = PodmanService(service.data_dir)
        restarted.start()
        assert restarted.pid not in (None, first_pid)
        service = restarted
        after = driver.inspect(cid)
        assert after.running
        # Same start time: it kept running, it was not restarted.
        assert after.started_at == before.started_at
        assert driver.exec(cid, ["true"]).exit_code == 0
    finally:
        stop_engine(service, driver, data_dir, labels)


def test_destroying_an_engine_drops_its_networks_isolation_chains() -> None:
    """An engine removed with its networks still defined (its data directory goes) takes the
    driver's isolation chains and their FORWARD jump along; before, they stayed behind."""
    service, driver, _archive, data_dir = start_engine("guard")
    chains = GuardChains.for_engine(service.socket_url)
    try:
        driver.ensure_network(NetworkSpec(name="cpt-guard", subnet="10.231.7.0/24"))
        assert iptables(["-t", "filter", "-S", chains.leave], check=False).returncode == 0
        assert chains.leave in iptables(["-t", "filter", "-S", "FORWARD"]).stdout
    finally:
        driver.close()
        service.destroy()
        shutil.rmtree(data_dir, ignore_errors=True)
    for chain in (chains.leave, chains.enter):
        assert iptables(["-t", "filter", "-S", chain], check=False).returncode != 0, chain
    assert chains.leave not in iptables(["-t", "filter", "-S", "FORWARD"]).stdout
