"""What is deployable here and why not: `cellplane cluster distros`, the refusal of a distro whose
software is missing (it names the distros that work), and the install script's package list
(`make up` installs the shipped distros' Debian packages; `--minimal` skips them)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from cellplane_platform_support import Platform
from typer.testing import CliRunner

from cellplane.cli import output
from cellplane.cli.main import app
from cellplane.client import Client
from cellplane.clusters import Catalog
from cellplane.clusters.deployable import deployable_distros, distro_status
from cellplane.services import clusters as clusters_mod

ROOT = Path(__file__).parents[3]
NO_JAVA = "/usr/bin/java"


def _without_java(path: str) -> bool:
    return (
        path != NO_JAVA
        and not path.startswith(("/opt/", "/usr/sbin/mesos"))
        and ("docker" not in path and path not in ("/usr/bin/chronos", "/usr/bin/marathon"))
    )


def test_a_missing_binary_names_the_package_and_make_up(catalog: Catalog) -> None:
    zk = distro_status(catalog, "zookeeper", _without_java)
    assert not zk.deployable
    (reason,) = zk.reasons
    assert reason.startswith("role zookeeper needs /usr/bin/java: ")
    assert "apt-get install zookeeper" in reason and "make up" in reason
    assert distro_status(catalog, "etcd", _without_java).deployable
    # Distros Debian cannot provide say where their software would come from.
    k8s = distro_status(catalog, "kubernetes", _without_java)
    assert not k8s.deployable
    assert any("kube-apiserver" in r and "not packaged in Debian" in r for r in k8s.reasons)
    assert deployable_distros(catalog, _without_java) == [
        "etcd",
        "galera",
        "postgres-ha",
        "rabbitmq",
        "redis",
    ]


def test_the_install_script_lists_every_shipped_debian_package(catalog: Catalog) -> None:
    script = ROOT / "scripts" / "install-system.sh"
    wanted = {
        p for d in catalog.distros.values() for pkg in d.packages for p in pkg.debian_packages
    }
    assert {"zookeeper", "etcd-server", "redis-server"} <= wanted

    def listed(*args: str) -> set[str]:
        r = subprocess.run([str(script), *args, "--list"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return set(r.stdout.split())

    assert wanted <= listed()
    assert "podman" in listed("--minimal") and not wanted & listed("--minimal")
    r = subprocess.run([str(script), "--minimal", "--test", "--list"], capture_output=True)
    assert r.returncode == 2 and b"exclude each other" in r.stderr
    r = subprocess.run([str(script), "--bogus"], capture_output=True)
    assert r.returncode == 2 and b"unknown option: --bogus" in r.stderr


@pytest.fixture
def no_java(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clusters_mod, "host_has", _without_java)


def test_distros_route_and_refusals_say_what_works_here(plat: Platform, no_java: None) -> None:
    r = plat.client.get("/v1/catalog/distros", headers=plat.admin)
    assert r.status_code == 200, r.text
    by_name = {d["name"]: d for d in r.json()["items"]}
    assert by_name["etcd"]["deployable"] and by_name["etcd"]["reasons"] == []
    assert not by_name["zookeeper"]["deployable"]
    assert "needs /usr/bin/java" in by_name["zookeeper"]["reasons"][0]

    for distro in ("zookeeper", "mesos", "kubernetes"):
        r = plat.client.post(
            "/v1/projects/default/clusters",
            json={"name": f"x-{distro}", "distro": distro},
            headers=plat.admin,
        )
        if r.status_code == 507:  # Serengeti's sample sizes do not fit the test host
            continue
        assert r.status_code == 409, r.text
        detail = r.json()["detail"]
        assert "which the image does not have" in detail, detail
        assert "distros deployable here: etcd, galera, postgres-ha, rabbitmq, redis" in detail, (
            detail
        )
        assert "cellplane cluster distros" in detail
    assert (
        plat.client.get("/v1/projects/default/clusters", headers=plat.admin).json()["items"] == []
    )


def test_cluster_distros_command(
    plat: Platform, no_java: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport: httpx.BaseTransport = plat.client._transport
    monkeypatch.setattr(
        output,
        "client_factory",
        lambda: Client("http://testserver", plat.admin_token, transport=transport, retries=1),
    )
    runner = CliRunner()
    r = runner.invoke(app, ["cluster", "distros"], terminal_width=200)
    assert r.exit_code == 0, r.output
    # Not a terminal: tab-separated rows, every value in full.
    rows = {line.split("\t")[0]: line.split("\t") for line in r.stdout.splitlines() if line}
    assert "yes" in rows["etcd"] and "no" in rows["zookeeper"]
    assert "needs /usr/bin/java" in r.stdout
    r = runner.invoke(app, ["cluster", "distros", "-o", "json"])
    assert r.exit_code == 0, r.output
    items = {d["name"]: d for d in json.loads(r.stdout)}
    assert items["redis"]["deployable"] is True and items["mesos"]["deployable"] is False

    # `cluster create --help` points at this command, which exists.
    r = runner.invoke(app, ["cluster", "create", "--help"], terminal_width=200)
    flat = " ".join(r.stdout.replace("\u2502", " ").split())  # Rich wraps help in a box
    assert "cellplane cluster distros" in flat and "list-distros" not in flat
