"""client/config: file location, permissions, atomic writes, environment overrides."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cellplane.client import config


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CELLPLANE_SERVER", "CELLPLANE_TOKEN", "CELLPLANE_CA_CERT", "CELLPLANE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def test_default_path_is_under_the_user_config_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    path = config.config_path()
    assert path.name == "config.json"
    assert path.parent.name == "cellplane"
    assert tmp_path in path.parents


def test_save_then_load_round_trips_with_private_permissions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "new-dir" / "config.json"
    monkeypatch.setenv("CELLPLANE_CONFIG", str(target))
    written = config.save_config("https://cp:8443", "tok", "/etc/ca.pem")
    assert written == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert json.loads(target.read_text()) == {
        "server": "https://cp:8443",
        "token": "tok",
        "ca_cert": "/etc/ca.pem",
    }
    loaded = config.load_config()
    assert (loaded.server, loaded.token, loaded.ca_cert, loaded.path) == (
        "https://cp:8443",
        "tok",
        "/etc/ca.pem",
        target,
    )
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]


def test_save_replaces_an_existing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    target = tmp_path / "config.json"
    target.write_text("old")
    target.chmod(0o644)
    monkeypatch.setenv("CELLPLANE_CONFIG", str(target))
    config.save_config("http://a", "t1")
    config.save_config("http://b", "t2")
    assert config.load_config().server == "http://b"
    assert config.load_config().ca_cert is None
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # A directory cellplane did not create keeps its permissions; no temp file is left.
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CELLPLANE_CONFIG", str(tmp_path / "config.json"))
    config.save_config("http://file", "file-token")
    monkeypatch.setenv("CELLPLANE_SERVER", "http://env")
    monkeypatch.setenv("CELLPLANE_TOKEN", "")  # empty means unset
    loaded = config.load_config()
    assert loaded.server == "http://env"
    assert loaded.token == "file-token"


def test_missing_file_is_an_empty_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CELLPLANE_CONFIG", str(tmp_path / "absent.json"))
    loaded = config.load_config()
    assert (loaded.server, loaded.token, loaded.ca_cert) == (None, None, None)


@pytest.mark.parametrize("content", ["{broken", "[1, 2]", '{"server": 5}'])
def test_bad_files_raise_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    monkeypatch.setenv("CELLPLANE_CONFIG", str(path))
    with pytest.raises(config.ConfigError, match=str(path)):
        config.load_config()
