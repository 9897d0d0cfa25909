"""`drivers.bridge_pin`: which bridge a start pins. The pin
itself (netlink on a real bridge whose address then stays) is tested with podman in
tests/integration/cells/test_cells_bridge_address.py."""

from __future__ import annotations

from cellplane.drivers.bridge_pin import BridgePins


def test_a_network_without_a_bridge_is_left_alone_and_asked_about_again() -> None:
    asked: list[str] = []

    def interface_of(network: str) -> str | None:
        asked.append(network)
        return None if network == "none" else "cpnobridge0"

    pins = BridgePins(interface_of)
    assert not pins.pin("none")
    assert not pins.pin("proj")  # its bridge does not exist (yet): nothing set
    assert not pins.pin("proj")
    assert asked == ["none", "proj", "proj"]  # looked up again until the bridge is there
