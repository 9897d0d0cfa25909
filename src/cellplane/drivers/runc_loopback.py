"""The runc driver's networking contract, and its stand-in: networks with loopback only.

`RuncNetworking` is what `runc.RuncDriver` needs from a network backend (`runc_net.RuncNetworks`
implements it: bridges, addresses, DNS). `LoopbackNetworks` is the stand-in used where that
backend is not available: it remembers the networks asked for (so the agent's housekeeping
works) and gives every cell a network namespace of its own with only the loopback interface:
such cells reach nothing and nothing reaches them.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cellplane.drivers.base import NetworkSpec

__all__ = ["LoopbackAttachment", "LoopbackNetworks", "NetAttachment", "RuncNetworking"]


class NetAttachment(Protocol):
    @property
    def netns_path(self) -> str:
        """The network namespace to run the container in ("": a new one, loopback only)."""

    @property
    def address(self) -> str:
        """The container's address on the network ("" if none)."""


class RuncNetworking(Protocol):
    def ensure_network(self, spec: NetworkSpec) -> None: ...

    def remove_network(self, name: str) -> None: ...

    def list_networks(self, labels: dict[str, str]) -> list[str]: ...

    def attach(
        self,
        container_id: str,
        network: str,
        address: str | None,
        name: str,
        aliases: list[str],
        *,
        settle: bool = True,
    ) -> NetAttachment: ...

    def settle_names(self) -> None: ...

    def detach(self, container_id: str) -> None: ...

    def resolv_conf(self, network: str) -> str: ...


@dataclass(frozen=True)
class LoopbackAttachment:
    netns_path: str = ""
    address: str = ""


class LoopbackNetworks:
    """Networks by name and labels only (`networks.json` in `run_dir`); cells get loopback."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "networks.json"
        run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): dict(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)

    def ensure_network(self, spec: NetworkSpec) -> None:
        with self._lock:
            data = self._read()
            data.setdefault(spec.name, dict(spec.labels))
            self._write(data)

    def remove_network(self, name: str) -> None:
        with self._lock:
            data = self._read()
            if data.pop(name, None) is not None:
                self._write(data)

    def list_networks(self, labels: dict[str, str]) -> list[str]:
        with self._lock:
            data = self._read()
        return sorted(
            n for n, have in data.items() if all(have.get(k) == v for k, v in labels.items())
        )

    def attach(
        self,
        container_id: str,
        network: str,
        address: str | None,
        name: str,
        aliases: list[str],
        *,
        settle: bool = True,
    ) -> LoopbackAttachment:
        return LoopbackAttachment()

    def settle_names(self) -> None:
        return None

    def detach(self, container_id: str) -> None:
        return None

    def resolv_conf(self, network: str) -> str:
        return "# no network: this cell has loopback only (runc driver without runc_net)\n"
