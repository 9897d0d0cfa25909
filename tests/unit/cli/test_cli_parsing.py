"""cli/cells option parsers: docker-like flags into CellCreate fields."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st

from cellplane.cli import cells, output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080:80", {"container_port": 80, "host_port": 8080, "protocol": "tcp"}),
        ("8080:80/udp", {"container_port": 80, "host_port": 8080, "protocol": "udp"}),
        ("53:53/TCP", {"container_port": 53, "host_port": 53, "protocol": "tcp"}),
    ],
)
def test_parse_port(text: str, expected: dict[str, Any]) -> None:
    assert cells.parse_port(text) == expected


@pytest.mark.parametrize("text", ["80", "0:80", "8080:70000", "a:b", "1:2/sctp", ":80", "1:2:3"])
def test_parse_port_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        cells.parse_port(text)


@given(st.integers(1, 65535), st.integers(1, 65535), st.sampled_from(["tcp", "udp"]))
def test_parse_port_round_trip(host: int, container: int, protocol: str) -> None:
    parsed = cells.parse_port(f"{host}:{container}/{protocol}")
    assert parsed == {"container_port": container, "host_port": host, "protocol": protocol}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data:/data", {"volume": "data", "path": "/data", "read_only": False}),
        ("data:/data:ro", {"volume": "data", "path": "/data", "read_only": True}),
        ("vol-9:/var/lib/x:rw", {"volume": "vol-9", "path": "/var/lib/x", "read_only": False}),
        ("/srv/site:/www:ro", {"host_path": "/srv/site", "path": "/www", "read_only": True}),
    ],
)
def test_parse_volume(text: str, expected: dict[str, Any]) -> None:
    assert cells.parse_volume(text) == expected


@pytest.mark.parametrize("text", ["data", "data:rel/path", "data:/x:rx", ":/x", "a:/b:ro:x"])
def test_parse_volume_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        cells.parse_volume(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("never", {"policy": "never", "max_retries": None}),
        ("always", {"policy": "always", "max_retries": None}),
        ("on-failure", {"policy": "on-failure", "max_retries": None}),
        ("on-failure:3", {"policy": "on-failure", "max_retries": 3}),
    ],
)
def test_parse_restart(text: str, expected: dict[str, Any]) -> None:
    assert cells.parse_restart(text) == expected


@pytest.mark.parametrize("text", ["sometimes", "always:3", "on-failure:x", "on-failure:-1", ""])
def test_parse_restart_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        cells.parse_restart(text)


@pytest.mark.parametrize(
    ("text", "mb"),
    [
        ("512", 512),
        ("512M", 512),
        ("512mb", 512),
        ("2G", 2048),
        ("1Gi", 1024),
        ("0.5g", 512),
        ("2048k", 2),
        ("1GiB", 1024),
    ],
)
def test_parse_memory(text: str, mb: int) -> None:
    assert cells.parse_memory(text) == mb


@pytest.mark.parametrize("text", ["", "lots", "0", "1.5", "100k", "-1G"])
def test_parse_memory_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        cells.parse_memory(text)


def test_parse_env_keeps_equals_in_values() -> None:
    assert cells.parse_env(["A=1=2", "B=", "C=x"], "'--env'") == {"A": "1=2", "B": "", "C": "x"}
    with pytest.raises(typer.BadParameter):
        cells.parse_env(["NOVALUE"], "'--env'")
    with pytest.raises(typer.BadParameter):
        cells.parse_env(["=v"], "'--env'")


def test_age() -> None:
    from datetime import UTC, datetime

    now = datetime(2024, 1, 2, 0, 0, 0, tzinfo=UTC)
    assert output.age("2024-01-01T00:00:00Z", now) == "1d"
    assert output.age("2024-01-01T23:59:30+00:00", now) == "30s"
    assert output.age("2024-01-01T22:00:00", now) == "2h"
    assert output.age(None, now) == "-"
