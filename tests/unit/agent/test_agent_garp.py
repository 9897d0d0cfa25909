"""The gratuitous ARP a started cell sends on the overlay (`agent.garp`): which addresses, from
which interfaces, in which namespace; failures named. The commands are recorded, not run; the
real one is exercised by the drain test on namespace hosts (tests/integration/multihost)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from cellplane.agent import garp

IP_OUTPUT = (
    "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
    "2: eth0@if7    inet 10.88.3.4/24 brd 10.88.3.255 scope global eth0\\       valid_lft forever\n"
    "3: eth1@if9    inet 10.89.0.2/26 brd 10.89.0.63 scope global eth1\\       valid_lft forever\n"
    "3: eth1@if9    inet 169.254.1.1/16 scope link eth1\\       valid_lft forever\n"
)


def test_addresses_are_the_global_ipv4_ones_with_their_interface() -> None:
    assert garp.addresses(IP_OUTPUT) == [("eth0", "10.88.3.4"), ("eth1", "10.89.0.2")]


def test_no_global_address_is_nothing_to_announce() -> None:
    assert garp.addresses("1: lo    inet 127.0.0.1/8 scope host lo\n") == []
    assert garp.addresses("") == []


class Recorder:
    def __init__(self, listed: str, arping_rc: int = 0) -> None:
        self.listed = listed
        self.arping_rc = arping_rc
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        if "ip" in argv:
            return subprocess.CompletedProcess(argv, 0, self.listed, "")
        return subprocess.CompletedProcess(argv, self.arping_rc, "", "arping: bind: No device")


@pytest.fixture(autouse=True)
def _arping_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(garp.shutil, "which", lambda name: f"/usr/bin/{name}")


def test_one_unsolicited_arp_per_address_inside_the_cells_namespace() -> None:
    run = Recorder(IP_OUTPUT)
    assert garp.announce(4242, run=run) == ["10.88.3.4", "10.89.0.2"]
    enter = ["nsenter", "--net=/proc/4242/ns/net"]
    assert run.calls == [
        [*enter, "ip", "-o", "-4", "addr", "show"],
        [*enter, "arping", "-U", "-c", "1", "-I", "eth0", "10.88.3.4"],
        [*enter, "arping", "-U", "-c", "1", "-I", "eth1", "10.89.0.2"],
    ]


def test_a_failed_arping_is_an_error_naming_address_and_interface() -> None:
    with pytest.raises(garp.AnnounceError, match=r"10\.88\.3\.4 on eth0: arping: bind"):
        garp.announce(1, run=Recorder(IP_OUTPUT, arping_rc=2))


def test_a_gone_process_is_an_error_naming_it() -> None:
    def gone(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "nsenter: cannot open /proc/9/ns/net")

    with pytest.raises(garp.AnnounceError, match="pid 9: nsenter: cannot open"):
        garp.announce(9, run=gone)


def test_without_arping_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(garp.shutil, "which", lambda name: None)
    with pytest.raises(garp.AnnounceError, match="iputils-arping"):
        garp.announce(1, run=Recorder(IP_OUTPUT))


# --- when the overlay agent sends them -----------------------------------------------------


class _Now:
    """An executor that runs what is submitted at once (the pool's work, made synchronous)."""

    def submit(self, fn: Any, *args: Any) -> None:
        fn(*args)

    def shutdown(self, **_: Any) -> None:
        pass


@pytest.fixture
def overlay(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[int], list[str]]:
    """An OverlayAgent whose devices and peer names are not touched, its announcements recorded;
    returns it, the pids announced, and the events of each pass (fetch) in order."""
    from cellplane.agent import overlay_agent
    from cellplane.wire import agent_plain as wire

    monkeypatch.setattr(overlay_agent.vxlan, "underlay_mtu", lambda local: 1500)
    monkeypatch.setattr(overlay_agent.vxlan, "present", lambda: set())
    sent: list[int] = []
    order: list[str] = []

    def fake_announce(pid: int, **_: Any) -> list[str]:
        sent.append(pid)
        order.append(f"announce {pid}")
        return ["10.128.0.2"]

    def fetch() -> Any:
        order.append("fetch")
        return wire.Overlay(networks=[])

    monkeypatch.setattr(overlay_agent.garp, "announce", fake_announce)
    agent = overlay_agent.OverlayAgent(
        "192.0.2.1", fetch, dstport=4789, dns_dir=Path("/nonexistent")
    )
    agent._garp = _Now()
    return agent, sent, order


def test_a_started_cell_is_announced_after_each_of_the_next_two_passes_not_at_once(
    overlay: tuple[Any, list[int], list[str]],
) -> None:
    agent, sent, order = overlay
    agent.announce("cel-1", lambda: 41)
    assert sent == []  # the host may not know the network's peers yet
    agent.run_once()
    assert order == ["fetch", "announce 41"]  # after the view with the peers was applied
    agent.run_once()
    agent.run_once()
    assert sent == [41, 41]  # ANNOUNCE_PASSES


def test_a_cell_that_no_longer_runs_is_not_announced(
    overlay: tuple[Any, list[int], list[str]],
) -> None:
    agent, sent, _ = overlay
    agent.announce("cel-1", lambda: None)
    agent.run_once()
    agent.run_once()
    assert sent == []
