"""The overlay's pure decisions (`agent.overlay`): device names, FDB changes, peer name entries."""

from __future__ import annotations

import pytest

from cellplane.agent.overlay import (
    PEER_ID_PREFIX,
    PeerName,
    bridge_name,
    fdb_changes,
    gateway_interface,
    gateway_mac,
    merge_peer_entries,
    overlay_mtu,
    peer_entry,
    vni_of,
    vxlan_name,
)

ENGINE = (
    "a144f1fcc1d7d175ee10a8e6f5e942a1c6a54487ffe98dbec24544ed65ef8ff4 10.128.0.2  web,a144f1fcc1d7"
)


def test_device_names_fit_linux_and_give_their_vni_back() -> None:
    for vni in (1, 4096, (1 << 24) - 1):
        for name in (bridge_name(vni), vxlan_name(vni)):
            assert len(name) <= 15
            assert vni_of(name) == vni
    assert bridge_name(4096) != vxlan_name(4096)
    assert vni_of("eth0") is None and vni_of("cpbr") is None and vni_of("podman0") is None
    for bad in (0, 1 << 24, -5):
        with pytest.raises(ValueError, match="VXLAN id"):
            bridge_name(bad)


def test_the_overlay_mtu_leaves_room_for_the_vxlan_headers() -> None:
    assert overlay_mtu(1500) == 1450
    assert overlay_mtu(9000) == 8950


def test_fdb_changes_add_the_missing_peers_and_drop_the_gone_ones() -> None:
    change = fdb_changes(["10.0.0.2", "10.0.0.9"], ["10.0.0.3", "10.0.0.2", "10.0.0.1"], "10.0.0.1")
    assert change.add == ("10.0.0.3",)  # never this host itself
    assert change.remove == ("10.0.0.9",)
    same = fdb_changes(["10.0.0.2"], ["10.0.0.2"], "10.0.0.1")
    assert same.add == () and same.remove == ()
    with pytest.raises(ValueError):
        fdb_changes([], ["not-an-address"], "10.0.0.1")


def test_peer_entries_are_added_after_the_engines_and_kept_in_line() -> None:
    text = f"10.128.0.1\n{ENGINE}\n"
    peers = [PeerName("cel-b", "db", "10.128.0.3"), PeerName("cel-c", "cache", "10.128.0.4")]
    merged = merge_peer_entries(text, peers)
    assert merged is not None
    lines = merged.splitlines()
    assert lines[:2] == ["10.128.0.1", ENGINE]  # the header and the engine's entry, unchanged
    assert lines[2:] == [peer_entry(p) for p in peers]
    assert lines[2].startswith(PEER_ID_PREFIX) and lines[2].endswith(" 10.128.0.3  db")
    assert len(lines[2].split(" ")[0]) == 64  # an id as long as an engine's
    assert merge_peer_entries(merged, peers) is None  # nothing to change: no reload
    # A peer went away, another came: only the agent's own lines change.
    again = merge_peer_entries(merged, [PeerName("cel-d", "queue", "10.128.0.5")])
    assert again is not None
    assert again.splitlines() == [
        "10.128.0.1",
        ENGINE,
        peer_entry(PeerName("cel-d", "queue", "10.128.0.5")),
    ]
    # The engine appended an entry of a local container after ours: kept, ours follow it.
    local = "b" * 64 + " 10.128.0.6  api,bbbbbbbbbbbb"
    grown = merge_peer_entries(merged + local + "\n", peers)
    assert grown is not None and grown.splitlines()[2] == local


def test_a_local_name_wins_over_a_peer_of_the_same_name() -> None:
    merged = merge_peer_entries(f"10.128.0.1\n{ENGINE}\n", [PeerName("cel-x", "web", "10.128.0.9")])
    assert merged is None  # "web" runs here: the peer entry is left out


def test_a_peers_aliases_follow_its_name_in_its_entry() -> None:
    """aardvark-dns reads the names of an entry comma-separated: the name, then the aliases
    (a repeated one once). A peer alias several cells share, even with a local container (a
    scaled Compose service over two hosts), is kept: the name resolves to all of them."""
    web2 = PeerName("cel-w2", "proj-web-2", "10.128.0.7", ("0123456789ab", "web", "web"))
    assert peer_entry(web2).endswith(" 10.128.0.7  proj-web-2,0123456789ab,web")
    assert peer_entry(PeerName("cel-b", "db", "10.128.0.3")).endswith(" 10.128.0.3  db")
    merged = merge_peer_entries(f"10.128.0.1\n{ENGINE}\n", [web2])
    assert merged is not None and merged.splitlines()[2] == peer_entry(web2)
    # aliases changed (a new alias): the entry is rewritten
    again = merge_peer_entries(merged, [PeerName("cel-w2", "proj-web-2", "10.128.0.7", ("w",))])
    assert again is not None and again.splitlines()[2].endswith("  proj-web-2,w")


def test_no_file_header_means_nothing_to_merge_into() -> None:
    assert merge_peer_entries("", [PeerName("cel-b", "db", "10.128.0.3")]) is None


def test_the_gateway_mac_is_one_per_network_unicast_and_locally_administered() -> None:
    assert gateway_mac(4096) == "02:63:70:00:10:00"
    assert gateway_mac((1 << 24) - 1) == "02:63:70:ff:ff:ff"
    assert gateway_mac(4096) != gateway_mac(4097)
    first = int(gateway_mac(1).split(":")[0], 16)
    assert first & 0b01 == 0 and first & 0b10 == 0b10  # unicast, locally administered
    with pytest.raises(ValueError, match="VXLAN id"):
        gateway_mac(0)


def test_the_gateway_is_the_subnets_first_host_with_its_prefix() -> None:
    assert gateway_interface("10.128.16.0/20") == ("10.128.16.1", 20)
    assert gateway_interface("10.128.0.0/24") == ("10.128.0.1", 24)
    with pytest.raises(ValueError):
        gateway_interface("10.128.0.1/24")  # host bits set: not a subnet
