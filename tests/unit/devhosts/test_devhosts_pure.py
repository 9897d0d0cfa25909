"""The pure parts of dev hosts: underlay addressing, names, labels, the server URL on the
underlay."""

from __future__ import annotations

import pytest
import typer

from cellplane import devhosts
from cellplane.cli.devhosts import _labels, underlay_url


def test_underlay_addresses_start_at_the_tenth_and_end_before_broadcast() -> None:
    u = devhosts.Underlay(bridge="cpx0", subnet="10.78.0.0/24")
    assert u.gateway == "10.78.0.1"
    assert [u.address(i) for i in (0, 1, 2)] == ["10.78.0.10", "10.78.0.11", "10.78.0.12"]
    assert u.address(244) == "10.78.0.254"
    with pytest.raises(ValueError, match="no address left"):
        u.address(245)


@pytest.mark.parametrize("name", ["h1", "node-a", "a" * 20])
def test_valid_names_pass(name: str) -> None:
    devhosts.validate(name, "z1", {"rack": "r1"})


@pytest.mark.parametrize("name", ["", "H1", "-h", "h-", "a" * 21, "h_1", "h.1"])
def test_bad_names_are_refused_naming_the_name(name: str) -> None:
    with pytest.raises(devhosts.DevHostError, match="host name"):
        devhosts.validate(name, None, {})


def test_bad_zone_and_labels_are_refused() -> None:
    with pytest.raises(devhosts.DevHostError, match="zone 'Z 1'"):
        devhosts.validate("h1", "Z 1", {})
    with pytest.raises(devhosts.DevHostError, match="label key"):
        devhosts.validate("h1", None, {"bad key": "v"})
    with pytest.raises(devhosts.DevHostError, match="label rack"):
        devhosts.validate("h1", None, {"rack": "a,b"})


def test_server_url_moves_to_the_underlay_keeping_scheme_and_port() -> None:
    assert underlay_url("https://127.0.0.1:7400", "10.77.0.1") == "https://10.77.0.1:7400"
    assert underlay_url("http://localhost/", "10.77.0.1") == "http://10.77.0.1/"


def test_labels_option_parses_pairs_and_refuses_others() -> None:
    assert _labels("rack=r1, disk=ssd") == {"rack": "r1", "disk": "ssd"}
    assert _labels(None) == {}
    with pytest.raises(typer.BadParameter, match="not key=value"):
        _labels("rack")


def test_list_of_an_empty_data_dir_is_empty(tmp_path: object) -> None:
    from pathlib import Path

    assert devhosts.list_hosts(Path(str(tmp_path))) == []
    with pytest.raises(devhosts.DevHostError, match="no dev host 'h1'"):
        devhosts.get_host(Path(str(tmp_path)), "h1")


def test_host_health_thresholds_default_and_refuse_a_wrong_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from cellplane.settings import ServerSettings

    s = ServerSettings()
    assert (s.heartbeat_suspect_s, s.heartbeat_down_s) == (6.0, 10.0)
    monkeypatch.setenv("CELLPLANE_HEARTBEAT_DOWN_S", "30")
    assert ServerSettings().heartbeat_down_s == 30.0
    monkeypatch.setenv("CELLPLANE_HEARTBEAT_DOWN_S", "5")
    with pytest.raises(ValidationError, match="must be above heartbeat_suspect_s"):
        ServerSettings()
    monkeypatch.setenv("CELLPLANE_HEARTBEAT_SUSPECT_S", "-1")
    with pytest.raises(ValidationError, match="heartbeat_suspect_s"):
        ServerSettings()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("120", 120.0),
        ("never", None),
    ],
)
def test_join_token_ttl_option(text: str, seconds: float | None) -> None:
    from cellplane.cli.hosts import parse_ttl

    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0", "-1h", "1w"])
def test_bad_join_token_ttl_is_refused_naming_it(text: str) -> None:
    from cellplane.cli.hosts import parse_ttl

    with pytest.raises(typer.BadParameter):
        parse_ttl(text)
