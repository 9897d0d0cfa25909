"""PodmanService: adopting a running service, and containers outliving a service restart."""

from __future__ import annotations

import os

import pytest

from cellplane.drivers import errors
from cellplane.drivers.base import ContainerSpec
from cellplane.drivers.engine import PodmanService

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
