"""Connecting an existing container to a further network, and disconnecting it, on podman.

`NetworkOps` is what the host agent needs for `docker network connect` / `disconnect` of a cell
(`agent.net_ops`); `PodmanNetworkOps` gives it to `PodmanDriver` with libpod's
`/networks/{name}/connect` (a running container gets the interface at once, netavark sets it up in
its namespace; a stopped one has it when it starts) with the control plane's address
(`static_ips`) and the container's aliases, and `/networks/{name}/disconnect`. An engine without
them (the fake driver) is answered 501 by the agent. `pin_network_bridge` keeps the address of
a network's bridge fixed (`bridge_pin`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import requests

from cellplane.drivers import errors
from cellplane.drivers.bridge_pin import BridgePins
from cellplane.drivers.podman_bodies import LIBPOD_PREFIX

__all__ = ["NetworkOps", "PodmanNetworkOps", "connect_body"]


@runtime_checkable
class NetworkOps(Protocol):
    def connect_network(
        self, container: str, network: str, address: str | None, aliases: list[str]
    ) -> None:
        """Put the container on `network` too (with `address`, None: the engine's IPAM)."""

    def disconnect_network(self, container: str, network: str) -> None:
        """Take the container off `network`; no error if it is not on it."""


def connect_body(container: str, address: str | None, aliases: list[str]) -> dict[str, Any]:
    """libpod's network connect body (pure)."""
    body: dict[str, Any] = {"container": container, "aliases": list(aliases)}
    if address:
        body["static_ips"] = [address]
    return body


def _message(res: requests.Response) -> str:
    try:
        data = res.json()
    except ValueError:
        return res.text[:500] or str(res.status_code)
    if isinstance(data, dict):
        return str(data.get("cause") or data.get("message") or data)[:500]
    return str(data)[:500]


class PodmanNetworkOps:
    """`NetworkOps` over the driver's docker SDK client (`self._untyped`)."""

    _untyped: Any
    _bridge_pins: BridgePins | None = None

    def pin_network_bridge(self, network: str) -> None:
        if self._bridge_pins is None:
            self._bridge_pins = BridgePins(self._bridge_of)
        self._bridge_pins.pin(network)

    def _bridge_of(self, network: str) -> str | None:
        """The network's bridge (libpod's `network_interface`); None if the engine cannot say."""
        api = self._untyped
        url = f"{api.base_url}{LIBPOD_PREFIX}/networks/{network}/json"
        try:
            res: requests.Response = api.get(url, timeout=api.timeout)
            data = res.json() if res.status_code < 400 else {}
        except (requests.RequestException, OSError, ValueError):
            return None
        name = data.get("network_interface") if isinstance(data, dict) else None
        return str(name) if name else None

    def _network_post(self, network: str, what: str, body: dict[str, Any]) -> requests.Response:
        api = self._untyped
        url = f"{api.base_url}{LIBPOD_PREFIX}/networks/{network}/{what}"
        try:
            res: requests.Response = api.post(url, json=body, timeout=api.timeout)
        except (requests.RequestException, OSError) as exc:
            raise errors.TemporaryDriverError(f"the engine did not answer: {exc}") from exc
        return res

    def connect_network(
        self, container: str, network: str, address: str | None, aliases: list[str]
    ) -> None:
        res = self._network_post(network, "connect", connect_body(container, address, aliases))
        if res.status_code < 400:
            return
        text = _message(res)
        low = text.lower()
        if "no such container" in low:
            raise errors.ContainerNotFound(text)
        if "network not found" in low or "no such network" in low:
            raise errors.NetworkNotFound(text)
        if "already" in low:  # connected before (a retried call): nothing to do
            return
        raise errors.PermanentDriverError(f"network connect {network}: {text}")

    def disconnect_network(self, container: str, network: str) -> None:
        res = self._network_post(network, "disconnect", {"Container": container, "Force": False})
        if res.status_code < 400:
            return
        text = _message(res)
        low = text.lower()
        if "no such container" in low:
            raise errors.ContainerNotFound(text)
        if "not connected" in low or "network not found" in low or "no such network" in low:
            return  # not on it: what was asked
        raise errors.PermanentDriverError(f"network disconnect {network}: {text}")
