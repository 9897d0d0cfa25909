"""The agent's side of `docker network connect` / `disconnect`: ``POST /cells/{id}/network``.

The server has already recorded the change (the cell's networks, its address on the new one) and
sends ``{"action": "connect"|"disconnect", "project_id", "network": <NetworkDescription>,
"aliases": [...]}``. Connecting readies the network on this host first (the engine's network, and
on the overlay its bridge and VXLAN device, as for a new cell: `Preparer.ensure_network`), then
puts the cell's container on it with the control plane's address on the overlay (the engine's
IPAM otherwise). Answers: 200 done; 404 ``{"kind": "container"}`` when the cell has no container
here (it gets every network when it is made); 409 ``{"kind": "running"}`` for a running container
leaving a network on an overlay host (below); 501 when the engine cannot; 502 an engine failure.
A connect's answer carries the address the engine gave (``{"address": ...}``; null if none).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import structlog

from cellplane.agent.spec import container_name
from cellplane.drivers.base import Driver
from cellplane.drivers.errors import ContainerNotFound, DriverError
from cellplane.drivers.podman_netops import NetworkOps
from cellplane.wire import agent_plain as wire

__all__ = ["NetworkAttach"]

log = structlog.get_logger("cellplane.agent.net_ops")

#: Why a running container stays on an overlay network: netavark 1.4 takes its interface away,
#: then fails to list the bridge's other ports (it cannot read the VXLAN device's netlink
#: message: "failed to get connected bridge interfaces") and podman keeps the container on the
#: network; seen on the dev hosts (tests/integration/multihost/test_multinet.py).
_RUNNING_ON_OVERLAY = (
    "a running container cannot leave an overlay network on this host (netavark 1.4 fails to "
    "tear its interface down next to the network's VXLAN device): stop the cell first"
)

#: (project id, network) -> the network ready on this host's engine.
Ensure = Callable[[str, wire.NetworkDescription], None]


def _json(h: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


class NetworkAttach:
    def __init__(self, driver: Driver, ensure: Ensure, *, overlay: bool) -> None:
        self.driver = driver
        self.ensure = ensure
        self.overlay = overlay

    def post(self, h: BaseHTTPRequestHandler, cell_id: str, raw: bytes) -> None:
        try:
            body = json.loads(raw or b"{}")
            action = str(body["action"])
            net = wire.parse(wire.NetworkDescription, body["network"])
            project_id = str(body["project_id"])
            aliases = [str(a) for a in body.get("aliases") or []]
            if action not in ("connect", "disconnect"):
                raise ValueError(f"unknown action {action!r}")
        except (ValueError, KeyError, TypeError, wire.ProtocolError) as exc:
            _json(h, 400, {"error": f"bad network request: {exc}", "kind": "request"})
            return
        if not isinstance(self.driver, NetworkOps):
            _json(h, 501, {"error": "this host's engine cannot change networks", "kind": "engine"})
            return
        name = container_name(cell_id)
        try:
            if action == "connect":
                self.ensure(project_id, net)
                address = net.address if self.overlay and net.vni is not None else None
                self.driver.connect_network(name, net.name, address, aliases)
                got = self.driver.inspect(name).addresses.get(net.name)
            else:
                if self.overlay and self.driver.inspect(name).running:
                    _json(h, 409, {"error": _RUNNING_ON_OVERLAY, "kind": "running"})
                    return
                self.driver.disconnect_network(name, net.name)
                got = None
        except ContainerNotFound as exc:
            _json(h, 404, {"error": str(exc), "kind": "container"})
            return
        except DriverError as exc:
            log.warning("network change failed", cell=cell_id, action=action, error=str(exc))
            _json(h, 502, {"error": str(exc), "kind": "engine"})
            return
        log.info("network changed", cell=cell_id, action=action, network=net.name, address=got)
        _json(h, 200, {"address": got})
