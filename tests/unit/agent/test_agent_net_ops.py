"""The agent's `POST /cells/{id}/network` (`agent.net_ops`), on a scripted engine."""

from __future__ import annotations

import io
import json
from typing import Any

from cellplane.agent.net_ops import NetworkAttach
from cellplane.drivers.base import ContainerInfo
from cellplane.drivers.errors import ContainerNotFound
from cellplane.wire import agent_plain as wire


class _Handler:
    """What NetworkAttach uses of a BaseHTTPRequestHandler."""

    def __init__(self) -> None:
        self.status = 0
        self.wfile = io.BytesIO()

    def send_response(self, status: int) -> None:
        self.status = status

    def send_header(self, key: str, value: str) -> None:
        pass

    def end_headers(self) -> None:
        pass

    def answer(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.wfile.getvalue())
        return data


class _Engine:
    def __init__(self, *, running: bool = True, exists: bool = True) -> None:
        self.running, self.exists = running, exists
        self.calls: list[tuple[Any, ...]] = []

    def connect_network(
        self, container: str, network: str, address: str | None, aliases: list[str]
    ) -> None:
        if not self.exists:
            raise ContainerNotFound(container)
        self.calls.append(("connect", container, network, address, tuple(aliases)))

    def disconnect_network(self, container: str, network: str) -> None:
        self.calls.append(("disconnect", container, network))

    def inspect(self, name: str) -> ContainerInfo:
        return ContainerInfo(
            id="c1",
            name=name,
            labels={},
            state="running" if self.running else "exited",
            running=self.running,
            addresses={"cp-b": "10.128.1.7"},
        )


def _post(engine: _Engine, body: dict[str, Any], *, overlay: bool) -> _Handler:
    ensured: list[str] = []

    def ensure(project_id: str, net: wire.NetworkDescription) -> None:
        ensured.append(net.name)

    h = _Handler()
    NetworkAttach(engine, ensure, overlay=overlay).post(h, "cel-1", json.dumps(body).encode())  # type: ignore[arg-type]
    engine.calls.extend(("ensure", n) for n in ensured)
    return h


NET = {"name": "cp-b", "subnet": "10.128.1.0/24", "vni": 4097, "address": "10.128.1.7"}


def test_connect_readies_the_network_and_answers_the_engines_address() -> None:
    engine = _Engine()
    h = _post(
        engine,
        {"action": "connect", "project_id": "p", "network": NET, "aliases": ["web"]},
        overlay=True,
    )
    assert h.status == 200 and h.answer() == {"address": "10.128.1.7"}
    assert engine.calls == [
        ("connect", "cp-cel-1", "cp-b", "10.128.1.7", ("web",)),
        ("ensure", "cp-b"),
    ]
    # Without the overlay the engine's IPAM gives the address.
    plain = _Engine()
    _post(plain, {"action": "connect", "project_id": "p", "network": NET}, overlay=False)
    assert plain.calls[0][3] is None


def test_no_container_bad_bodies_and_a_running_container_on_the_overlay() -> None:
    gone = _post(
        _Engine(exists=False),
        {"action": "connect", "project_id": "p", "network": NET},
        overlay=False,
    )
    assert gone.status == 404 and gone.answer()["kind"] == "container"
    for bad in ({}, {"action": "swap", "project_id": "p", "network": NET}, {"action": "connect"}):
        assert _post(_Engine(), bad, overlay=False).status == 400
    running = _Engine()
    h = _post(running, {"action": "disconnect", "project_id": "p", "network": NET}, overlay=True)
    assert h.status == 409 and "stop the cell first" in h.answer()["error"]
    assert running.calls == []
    stopped = _Engine(running=False)
    assert (
        _post(
            stopped, {"action": "disconnect", "project_id": "p", "network": NET}, overlay=True
        ).status
        == 200
    )
    assert stopped.calls == [("disconnect", "cp-cel-1", "cp-b")]
    off_overlay = _Engine()
    assert (
        _post(
            off_overlay, {"action": "disconnect", "project_id": "p", "network": NET}, overlay=False
        ).status
        == 200
    )
