"""What `cellplane up --tls` leaves for the CLI: the CA root next to the config, an https URL."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509

from cellplane.cli import daemons
from cellplane.client import Client
from cellplane.client.config import load_config, save_config
from cellplane.daemon import ca_bundle, url_host


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cfg" / "config.json"
    monkeypatch.setenv("CELLPLANE_CONFIG", str(path))
    for name in ("CELLPLANE_SERVER", "CELLPLANE_TOKEN", "CELLPLANE_CA_CERT"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_the_ca_root_is_copied_next_to_the_config(tmp_path: Path, config_file: Path) -> None:
    data_dir = tmp_path / "data"
    ca = daemons._install_ca(data_dir)
    assert ca == config_file.parent / "ca.pem"
    assert stat.S_IMODE(config_file.parent.stat().st_mode) == 0o700
    (root,) = x509.load_pem_x509_certificates(ca.read_bytes())
    assert ca.read_bytes() == ca_bundle(data_dir).read_bytes()  # the same CA, created once
    assert root.subject == root.issuer
    # The SDK verifies the server with exactly that file.
    save_config("https://127.0.0.1:7400", "cpt_x", str(ca))
    with Client.from_config() as c:
        assert c is not None


def test_an_existing_config_for_the_same_port_follows_tls(
    tmp_path: Path, config_file: Path
) -> None:
    save_config("http://127.0.0.1:7400", "cpt_kept")
    ca = daemons._install_ca(tmp_path / "data")
    daemons._update_config("https://127.0.0.1:7400", ca)
    conf = load_config()
    assert (conf.server, conf.token, conf.ca_cert) == (
        "https://127.0.0.1:7400",
        "cpt_kept",
        str(ca),
    )
    daemons._update_config("http://127.0.0.1:7400", None)  # --no-tls
    conf = load_config()
    assert (conf.server, conf.token, conf.ca_cert) == ("http://127.0.0.1:7400", "cpt_kept", None)
    # Another server's configuration is left alone.
    daemons._update_config("https://127.0.0.1:7500", ca)
    assert json.loads(config_file.read_text())["server"] == "http://127.0.0.1:7400"


def test_url_hosts() -> None:
    assert url_host("127.0.0.1") == "127.0.0.1"
    assert url_host("::1") == "[::1]"
    assert url_host("0.0.0.0") not in ("", "0.0.0.0")
