"""What the Docker-endpoint tests share: one deployment per module (server + agent + podman) with
the busybox image and projects team-a and team-b, each project's endpoint with a certificate
directory (`Endpoint`: the unmodified docker CLI and docker-py), users with a role, and task waits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from cellplane.client import Client
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment
from cellplane.testing.waits import SLEEP, finish, unique

__all__ = ["DOCKER", "PASSWORD", "SLEEP", "Endpoint", "finish", "unique", "user_token"]

DOCKER = shutil.which("docker")
PASSWORD = "Docker-endpoint-pw-1"


def _key_and_csr(subject: str) -> tuple[bytes, str]:
    from cellplane.cli.certs import new_key_and_csr

    return new_key_and_csr(subject)


class Endpoint:
    """A project's endpoint and a certificate directory for one user."""

    def __init__(self, d: Deployment, project: str, token: str, certs: Path) -> None:
        self.d = d
        self.project = project
        self.token = token
        self.certs = certs
        with Client(d.url, d.admin_token, verify=d.verify) as admin:
            found = admin.list_docker_endpoints(project)
            ep = found[0] if found else admin.create_docker_endpoint(project)
        self.host = str(ep["docker_host"])
        self.url = self.host.replace("tcp://", "https://")
        with Client(d.url, token, verify=d.verify) as c:
            me = c.whoami()
            key_pem, csr = _key_and_csr(str(me["subject"]))
            issued = c.request_certificate(csr, ttl_days=1)
            root = c.ca_certificates()
        certs.mkdir(parents=True, exist_ok=True)
        (certs / "key.pem").write_bytes(key_pem)
        (certs / "cert.pem").write_text(str(issued["chain"]))
        (certs / "ca.pem").write_text(root)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DOCKER_HOST": self.host,
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(self.certs),
            "DOCKER_CONFIG": str(self.certs / "config"),
        }

    def docker(
        self, *args: str, timeout: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI with `args` against this endpoint (`stdin`: text piped to it)."""
        assert DOCKER is not None
        return subprocess.run(
            [DOCKER, *args],
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def restart_server(self) -> None:
        """The deployment's server stopped and started again; back once this endpoint answers
        again (the agent and the containers go on meanwhile)."""
        self.d.stop_server()
        self.d.start_server()
        deadline = time.monotonic() + 60
        while self.docker("version", timeout=10).returncode != 0:
            assert time.monotonic() < deadline, "the endpoint did not come back"
            time.sleep(0.2)

    def ok(self, *args: str) -> str:
        p = self.docker(*args)
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
        return p.stdout

    def py(self) -> Any:
        tls = docker.tls.TLSConfig(
            client_cert=(str(self.certs / "cert.pem"), str(self.certs / "key.pem")),
            ca_cert=str(self.certs / "ca.pem"),
            verify=True,
        )
        client = docker.DockerClient(base_url=self.host, tls=tls, version="1.41", timeout=120)
        # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE (set on these machines) override the
        # session's CA: trust only what was configured here.
        client.api.trust_env = False
        return client


def user_token(d: Deployment, admin: Client, name: str, role: str, project: str) -> str:
    return user_grant(d, admin, name, role, project)[0]


def user_grant(d: Deployment, admin: Client, name: str, role: str, project: str) -> tuple[str, str]:
    """A new user with `role` in `project`: their access token and the role assignment's id."""
    admin.create_user(name, password=PASSWORD)
    grant = admin.assign_role(role, user=name, project=project)
    r = httpx.post(
        f"{d.url}/identity/default/token",
        data={
            "grant_type": "password",
            "username": name,
            "password": PASSWORD,
            "client_id": "cellplane-cli",
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"]), str(grant["id"])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if DOCKER is None:
        pytest.skip("the docker CLI is not on PATH")
    archive = build_busybox_archive(tmp_path_factory.mktemp("busybox"))
    d = Deployment()
    try:
        d.start()
        with d.client() as c:
            c.upload_image("busybox", archive)
            c.create_project("team-a")
            c.create_project("team-b")
        yield d
    finally:
        d.close()


@pytest.fixture(scope="module")
def admin(deployment: Deployment) -> Iterator[Client]:
    with deployment.client() as c:
        yield c


@pytest.fixture(scope="module")
def ep_a(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Endpoint:
    """Project team-a's endpoint with the admin's certificate."""
    return Endpoint(deployment, "team-a", deployment.admin_token, tmp_path_factory.mktemp("a"))


@pytest.fixture(scope="module")
def ep_b(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Endpoint:
    return Endpoint(deployment, "team-b", deployment.admin_token, tmp_path_factory.mktemp("b"))
