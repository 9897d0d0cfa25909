"""A project's Docker-compatible endpoint against a real deployment (server + agent + podman),
driven by the unmodified docker CLI (`docker --tlsverify`, a client certificate from Cellplane's
CA, as `cellplane endpoint env` writes it) and by docker-py.

One deployment for the module; each test names its containers uniquely and removes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from cellplane.client import CellplaneError, Client
from cellplane.testing.cgroups import cgroup_limits
from cellplane.testing.harness import Deployment

from .conftest import DOCKER, SLEEP, Endpoint, finish, unique, user_grant, user_token

pytestmark = pytest.mark.integration


def _cells(admin: Client, project: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in admin.list_cells(project)["items"]}


def test_docker_cli_run_ps_inspect_logs_stop_rm(ep_a: Endpoint, admin: Client) -> None:
    name = unique("web")
    cid = ep_a.ok(
        "run", "-d", "--name", name, "--label", "team=blue", "-e", "GREETING=hi",
        "-w", "/tmp", "--cpus", "0.1", "-m", "32m", "--restart", "on-failure:2",
        "busybox", "sh", "-c", "echo to-out; echo to-err >&2; trap 'exit 0' TERM; sleep 600 & wait",
    ).strip()  # fmt: skip
    assert len(cid) == 64
    try:
        ps = ep_a.ok(
            "ps", "--filter", "label=team=blue", "--format", "{{.ID}} {{.Names}} {{.State}}"
        )
        assert f"{cid[:12]} {name} running" in ps.splitlines()
        (info,) = json.loads(ep_a.ok("inspect", name))
        assert info["Id"] == cid and info["Name"] == f"/{name}"
        assert info["State"]["Running"] is True
        assert "GREETING=hi" in info["Config"]["Env"]
        assert info["Config"]["Labels"] == {"team": "blue"}
        assert info["Config"]["WorkingDir"] == "/tmp"
        assert info["HostConfig"]["NanoCpus"] == 100_000_000
        assert info["HostConfig"]["Memory"] == 32 * 1024 * 1024
        assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        # One truth: the container is a cell of the project, with what docker asked for.
        cell = _cells(admin, "team-a")[name]
        assert (cell["cpu"], cell["memory_mb"], cell["labels"]) == (0.1, 32, {"team": "blue"})
        assert cell["workdir"] == "/tmp" and cell["state"] == "RUNNING"
        # Logs keep their streams apart (Docker's framing).
        logs = ep_a.docker("logs", name)
        assert (logs.returncode, logs.stdout, logs.stderr) == (0, "to-out\n", "to-err\n")
        stamped = ep_a.docker("logs", "-t", "--tail", "1", name)  # the last line: stderr's
        assert stamped.stdout == "" and stamped.stderr.endswith(" to-err\n"), stamped
        assert stamped.stderr.split(" ", 1)[0].startswith("20")  # an RFC 3339 time first
        ep_a.ok("stop", name)
        (info,) = json.loads(ep_a.ok("inspect", name))
        assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0
        assert name not in ep_a.ok("ps", "--format", "{{.Names}}").split()
        assert name in ep_a.ok("ps", "-a", "--format", "{{.Names}}").split()
    finally:
        ep_a.docker("rm", "-f", name)
    assert name not in _cells(admin, "team-a")
    gone = ep_a.docker("inspect", name)
    assert gone.returncode == 1 and "No such" in gone.stderr


def test_stop_t_0_and_rm_f_kill_at_once_and_keep_the_containers_own_timeout(
    ep_a: Endpoint,
) -> None:
    """`docker stop -t 0` and `rm -f` send SIGKILL at once (they waited 10 s: the agent read a 0
    as unset), and a `-t` holds for its stop only: the container keeps its `--stop-timeout`.
    `sleep` as PID 1 ignores SIGTERM, so a stop that waited would take its whole grace period."""
    name = unique("grace")
    ep_a.ok(
        "run", "-d", "--name", name, "--stop-timeout", "30", "-m", "16m", "busybox", "sleep", "600"
    )
    try:
        started = time.monotonic()
        ep_a.ok("stop", "-t", "0", name)
        assert time.monotonic() - started < 8.0, "stop -t 0 waited for a grace period"
        (info,) = json.loads(ep_a.ok("inspect", name))
        assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 137
        assert info["Config"]["StopTimeout"] == 30
        ep_a.ok("start", name)
        (info,) = json.loads(ep_a.ok("inspect", name))
        assert info["State"]["Running"] is True and info["Config"]["StopTimeout"] == 30
        started = time.monotonic()
        ep_a.ok("rm", "-f", name)
        assert time.monotonic() - started < 8.0, "rm -f waited for a grace period"
    finally:
        ep_a.docker("rm", "-f", name)
    assert ep_a.docker("inspect", name).returncode == 1


def _open_waits(d: Deployment) -> float:
    text = httpx.get(f"{d.url}/metrics", verify=d.verify, timeout=10).text
    (line,) = [x for x in text.splitlines() if x.startswith("cellplane_docker_waits ")]
    return float(line.split()[1])


def _until_waits(d: Deployment, count: float) -> float:
    deadline = time.monotonic() + 15
    while (seen := _open_waits(d)) != count and time.monotonic() < deadline:
        time.sleep(0.2)
    return seen


def test_a_wait_ends_with_its_client_not_with_the_container(ep_a: Endpoint) -> None:
    """`docker run -d` sends a `wait` and exits once the container runs; the endpoint held that
    wait (reading the cell every two seconds) for as long as the container lived. A wait ends
    when its container stops or when its client goes, whichever comes first."""
    name = unique("waited")
    before = _until_waits(ep_a.d, 0.0)  # an earlier test's waits end first (2 s at most)
    ep_a.ok("run", "-d", "--name", name, "-m", "16m", "busybox", "sleep", "600")
    try:
        assert _until_waits(ep_a.d, before) == before, "run -d's wait outlived its client"
        waiter = subprocess.Popen(
            [DOCKER, "wait", name], env=ep_a.env(), stdout=subprocess.PIPE, text=True
        )
        try:
            assert _until_waits(ep_a.d, before + 1) == before + 1  # a client that stays: held
        finally:
            waiter.kill()
            waiter.wait()
        assert _until_waits(ep_a.d, before) == before, "docker wait's hold outlived its client"
        (info,) = json.loads(ep_a.ok("inspect", name))
        assert info["State"]["Running"] is True  # ended by its client, the container runs on
    finally:
        ep_a.docker("rm", "-f", name)


def _creates(admin: Client) -> list[dict[str, Any]]:
    action = "docker POST /v{version}/containers/create"
    return list(admin.list_audit(action=action, limit=500)["items"])


def test_a_create_is_audited_once_with_its_outcome(ep_a: Endpoint, admin: Client) -> None:
    """`docker create` records its audit event in the cell's own transaction (the endpoint's
    middleware records every other change): once, who, from which endpoint, and the outcome."""
    name = unique("audited")
    before = len(_creates(admin))
    try:
        ep_a.ok("create", "--name", name, "-m", "16m", "busybox", "true")
        after = _creates(admin)
        assert len(after) == before + 1
        event = after[0]
        assert (event["outcome"], event["detail"]["status"]) == ("success", 201)
        assert event["target"].endswith("/containers/create") and event["detail"]["endpoint"]
        assert event["actor"] and event["source"]
        refused = ep_a.docker("create", "--name", "Not_A_Label!", "busybox", "true")
        assert refused.returncode != 0
        after = _creates(admin)
        assert len(after) == before + 2
        assert (after[0]["outcome"], after[0]["detail"]["status"]) == ("failure", 400)
    finally:
        ep_a.docker("rm", "-f", name)


def test_docker_run_attached_prints_the_output_and_returns_the_exit_code(ep_a: Endpoint) -> None:
    name = unique("once")
    try:
        p = ep_a.docker(
            "run", "--name", name, "-m", "16m", "busybox", "sh", "-c", "echo hello; exit 3"
        )
        assert p.returncode == 3, (p.stdout, p.stderr)
        assert p.stdout == "hello\n"
    finally:
        ep_a.docker("rm", "-f", name)


def test_docker_py_runs_lists_logs_stops_and_removes(ep_a: Endpoint, admin: Client) -> None:
    name = unique("py")
    client = ep_a.py()
    assert client.version()["ApiVersion"] == "1.41"
    try:
        c = client.containers.run(
            "busybox", ["sh", "-c", "echo from-py; trap 'exit 0' TERM; sleep 600 & wait"],
            name=name, detach=True, labels={"via": "docker-py"}, mem_limit="16m",
        )  # fmt: skip
        c.reload()  # docker-py's run returns the object made at create (status "created")
        assert c.name == name and c.status == "running"
        assert [x.name for x in client.containers.list(filters={"label": "via=docker-py"})] == [
            name
        ]
        assert c.logs() == b"from-py\n"
        c.stop(timeout=5)
        c.reload()
        assert c.status == "exited"
        c.remove()
        assert name not in _cells(admin, "team-a")
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(name)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
        client.close()


def test_one_truth_both_ways(ep_a: Endpoint, deployment: Deployment, admin: Client) -> None:
    # A cell made through the API is a container of the endpoint...
    name = unique("api")
    task = admin.create_cell("team-a", name, "busybox", command=SLEEP, cpu=0.05, memory_mb=16)
    assert finish(admin, task["id"])["state"] == "COMPLETED"
    assert name in ep_a.ok("ps", "--format", "{{.Names}}").split()
    # ... and `docker rm -f` removes the cell.
    ep_a.ok("rm", "-f", name)
    with pytest.raises(CellplaneError) as err:
        admin.get_cell(task["entity"]["id"])
    assert err.value.status == 404
    # A container made through the endpoint, deleted through the API, is gone from docker.
    other = unique("dk")
    ep_a.ok("create", "--name", other, "-m", "16m", "busybox", "true")
    cell = _cells(admin, "team-a")[other]
    finish(admin, admin.delete_cell(cell["id"])["id"])
    assert other not in ep_a.ok("ps", "-a", "--format", "{{.Names}}").split()


def test_projects_are_isolated(
    ep_a: Endpoint, ep_b: Endpoint, deployment: Deployment, admin: Client, tmp_path: Path
) -> None:
    name = unique("b-only")
    ep_b.ok("create", "--name", name, "-m", "16m", "busybox", "true")
    try:
        assert name in ep_b.ok("ps", "-a", "--format", "{{.Names}}").split()
        assert name not in ep_a.ok("ps", "-a", "--format", "{{.Names}}").split()
        refused = ep_a.docker("rm", name)
        assert refused.returncode != 0 and "No such container" in refused.stderr
        # A user with a role in team-b only: team-b's endpoint serves them, team-a's refuses.
        token = user_token(deployment, admin, unique("bob"), "project-member", "team-b")
        bob_b = Endpoint(deployment, "team-b", token, tmp_path / "bob-b")
        assert name in bob_b.ok("ps", "-a", "--format", "{{.Names}}").split()
        bob_a = Endpoint(deployment, "team-a", token, tmp_path / "bob-a")
        p = bob_a.docker("ps")
        assert p.returncode != 0 and "holds no role in this endpoint's project" in p.stderr
        # The same with a bearer token instead of a certificate; and with no credential at all.
        ctx = httpx.create_ssl_context(verify=str(ep_a.certs / "ca.pem"))
        with httpx.Client(base_url=ep_a.url, verify=ctx) as raw:
            r = raw.get("/containers/json", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 403 and "no role" in r.json()["message"]
            r = raw.get("/_ping")
            assert r.status_code == 401 and "client certificate" in r.json()["message"]
            ok = raw.get(
                "/v1.41/containers/json?all=1",
                headers={"Authorization": f"Bearer {deployment.admin_token}"},
            )
            assert ok.status_code == 200 and all(c["Names"] != [f"/{name}"] for c in ok.json())
    finally:
        ep_b.docker("rm", "-f", name)


def test_a_role_taken_away_is_refused_within_the_admission_ttl(
    deployment: Deployment, admin: Client, tmp_path: Path
) -> None:
    """An endpoint keeps an admission for `TTL_S` seconds (`dockerapi.admissions`): a role
    taken away is refused once that has passed, not later."""
    from cellplane.dockerapi.admissions import TTL_S

    token, grant = user_grant(deployment, admin, unique("carl"), "project-member", "team-a")
    carl = Endpoint(deployment, "team-a", token, tmp_path / "carl")
    assert carl.docker("ps").returncode == 0
    admin.revoke_role(grant)
    taken = time.monotonic()
    while (p := carl.docker("ps")).returncode == 0:
        assert time.monotonic() - taken < TTL_S + 3, "admitted past the admission TTL"
        time.sleep(0.5)
    assert "holds no role in this endpoint's project" in p.stderr


def test_a_viewer_reads_but_changes_nothing(
    ep_a: Endpoint, deployment: Deployment, admin: Client, tmp_path: Path
) -> None:
    token = user_token(deployment, admin, unique("vera"), "project-viewer", "team-a")
    vera = Endpoint(deployment, "team-a", token, tmp_path / "vera")
    assert vera.docker("ps", "-a").returncode == 0
    p = vera.docker("run", "-d", "-m", "16m", "busybox", "true")
    assert p.returncode != 0 and "cells:write" in p.stderr
    assert all(not n.startswith("busybox-") for n in _cells(admin, "team-a"))


def test_refusals_are_docker_errors_and_change_nothing(ep_a: Endpoint, admin: Client) -> None:
    before = set(_cells(admin, "team-a"))
    cases = [
        (["--privileged"], "--privileged is not allowed on this endpoint"),
        (["-v", "/etc:/host-etc"], "do not include it"),
        (["--network", "host"], "--network host is not allowed"),
        (["--pid", "host"], "--pid host is not allowed"),
        (["--platform", "linux/s390x"], "--platform linux/s390x is not supported"),
    ]
    for extra, words in cases:
        p = ep_a.docker("run", "-d", *extra, "busybox", "true")
        assert p.returncode != 0 and words in p.stderr, (extra, p.stderr)
        assert "Error response from daemon" in p.stderr
    assert set(_cells(admin, "team-a")) == before


def test_a_start_that_fails_is_a_docker_error_naming_why(ep_a: Endpoint) -> None:
    # The engine cannot start it (no such executable): `docker run` fails with the reason, and
    # the container stays, not running, as with Docker.
    name = unique("nox")
    try:
        p = ep_a.docker("run", "-d", "--name", name, "-m", "16m", "busybox", "/no/such/binary")
        assert p.returncode != 0 and "Error response from daemon" in p.stderr, p
        assert f"cannot start container {name}" in p.stderr and "/no/such/binary" in p.stderr
        assert name in ep_a.ok("ps", "-a", "--format", "{{.Names}}").split()
        assert name not in ep_a.ok("ps", "--format", "{{.Names}}").split()
    finally:
        ep_a.docker("rm", "-f", name)


def test_engine_options_reach_the_container_and_inspect(ep_a: Endpoint) -> None:
    # --cap-drop, --add-host, --tmpfs, --stop-signal, --init, --group-add, --ulimit.
    name = unique("opts")
    script = "trap 'echo got-int; exit 0' INT; trap 'echo got-term; exit 0' TERM; sleep 600 & wait"
    ep_a.ok(
        "run", "-d", "--name", name, "-m", "16m", "--cap-drop", "net_raw", "--cap-drop", "CHOWN",
        "--add-host", "db.internal:10.1.2.3", "--tmpfs", "/scratch:size=8m,mode=750",
        "--stop-signal", "SIGINT", "--init", "--group-add", "1234", "--ulimit", "nofile=512:1024",
        "busybox", "sh", "-c", script,
    )  # fmt: skip
    try:
        (info,) = json.loads(ep_a.ok("inspect", name))
        assert info["HostConfig"]["CapDrop"] == ["CAP_CHOWN", "CAP_NET_RAW"]
        assert info["HostConfig"]["ExtraHosts"] == ["db.internal:10.1.2.3"]
        assert info["HostConfig"]["Tmpfs"] == {"/scratch": "size=8m,mode=750"}
        assert info["Config"]["StopSignal"] == "SIGINT"
        assert info["HostConfig"]["Init"] is True
        assert info["HostConfig"]["GroupAdd"] == ["1234"]
        assert info["HostConfig"]["Ulimits"] == [{"Name": "nofile", "Soft": 512, "Hard": 1024}]
        assert info["Config"]["Labels"] == {}
        # PID 1 is the engine's init, the command its child, with the groups and limits asked.
        assert "podman-init" in ep_a.ok("exec", name, "cat", "/proc/1/cmdline")
        children = "for f in /proc/[0-9]*/status; do grep -q '^PPid:.1$' $f && cat $f; done; true"
        child = ep_a.ok("exec", name, "sh", "-c", children)  # the command: the init's child
        assert "Name:\tsh" in child and "1234" in child.split("Groups:")[1].splitlines()[0]
        pid = child.split("\nPid:")[1].split()[0]
        limits = ep_a.ok("exec", name, "cat", f"/proc/{pid}/limits").splitlines()
        assert next(v for v in limits if v.startswith("Max open files")).split()[3:5] == [
            "512",
            "1024",
        ]
        assert next(v for v in limits if v.startswith("Max processes")).split()[2:4] == [
            "4096",
            "4096",
        ]

        hosts = ep_a.ok("exec", name, "cat", "/etc/hosts").splitlines()
        assert ["10.1.2.3", "db.internal"] in [line.split() for line in hosts]
        (mount,) = [m for m in ep_a.ok("exec", name, "cat", "/proc/mounts").splitlines()
                    if m.split()[1] == "/scratch"]  # fmt: skip
        assert mount.split()[2] == "tmpfs" and "size=8192k" in mount and "mode=750" in mount
        status = ep_a.ok("exec", name, "cat", "/proc/1/status")
        (bounding,) = [int(v.split()[1], 16) for v in status.splitlines() if v.startswith("CapBnd")]
        assert not bounding & (1 << 13) and not bounding & (1 << 0)  # CAP_NET_RAW, CAP_CHOWN
        assert bounding & (1 << 10)  # CAP_NET_BIND_SERVICE is kept
        # `docker stop` sends the stop signal first: the process's INT trap answers.
        ep_a.ok("stop", name)
        assert ep_a.ok("logs", name) == "got-int\n"
        p = ep_a.docker("run", "-d", "--cap-drop", "FLY", "busybox", "true")
        assert p.returncode != 0 and "--cap-drop CAP_FLY: unknown capability" in p.stderr, p.stderr
    finally:
        ep_a.docker("rm", "-f", name)


def test_a_port_published_without_a_host_port_shows_the_one_the_engine_picked(
    ep_a: Endpoint,
) -> None:
    name = unique("picked")
    serve = "mkdir /www && echo picked-ok > /www/index.html && exec httpd -f -p 8080 -h /www"
    ep_a.ok("run", "-d", "--name", name, "-m", "16m", "-p", "8080", "busybox", "sh", "-c", serve)
    try:
        # `start` answers once the cell is RUNNING, with the port its agent saw picked.
        (line,) = ep_a.ok("port", name, "8080/tcp").split()
        address, _, picked = line.rpartition(":")
        assert address == "0.0.0.0" and 1024 < int(picked) < 65536, line
        (info,) = json.loads(ep_a.ok("inspect", name))
        assert info["NetworkSettings"]["Ports"]["8080/tcp"] == [
            {"HostIp": "0.0.0.0", "HostPort": picked}
        ]
        assert info["HostConfig"]["PortBindings"]["8080/tcp"] == [{"HostIp": "", "HostPort": ""}]
        listed = ep_a.ok("ps", "--filter", f"name={name}", "--format", "{{.Ports}}")
        assert f":{picked}->8080/tcp" in listed, listed
        deadline = time.monotonic() + 20
        while True:  # the host's port leads to the container's server
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(f"http://127.0.0.1:{picked}/", timeout=2)
                if answer.text == "picked-ok\n":
                    break
            assert time.monotonic() < deadline, "nothing answers on the picked port"
            time.sleep(0.2)
        ep_a.ok("stop", "-t", "1", name)
        (stopped,) = json.loads(ep_a.ok("inspect", name))
        assert stopped["NetworkSettings"]["Ports"]["8080/tcp"] is None
    finally:
        ep_a.docker("rm", "-f", name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _engine_state(engine: docker.APIClient, cell_id: str) -> str:
    """libpod's own state of the cell's container: `created` (made), `initialized` (prepared)."""
    url = engine._url("/v4.0.0/libpod/containers/{0}/json", f"cp-{cell_id}", versioned_api=False)
    return str(engine._result(engine._get(url), json=True)["State"]["Status"])


def test_a_made_container_has_its_start_prepared_and_runs_nothing_before_it(
    ep_a: Endpoint, deployment: Deployment, admin: Client
) -> None:
    # `docker create`: the agent has the engine prepare the start (podman's init) so that the
    # start, when it comes, is quick; the command runs only then. A container that publishes a
    # port is not prepared: it would hold the port from its creation on.
    name, ported = unique("prep"), unique("prep-port")
    ep_a.ok(
        "create", "--name", name, "-m", "16m", "--cpus", "0.05",
        "busybox", "sh", "-c", "echo ran; sleep 600",
    )  # fmt: skip
    ep_a.ok("create", "--name", ported, "-m", "16m", "-p", f"{_free_port()}:80", "busybox", *SLEEP)
    engine = docker.APIClient(base_url=deployment.engine_url, version="1.41")
    try:
        cells = _cells(admin, "team-a")
        deadline = time.monotonic() + 30
        while _engine_state(engine, cells[name]["id"]) != "initialized":
            assert time.monotonic() < deadline, "the made container's start was not prepared"
            time.sleep(0.1)
        assert ep_a.ok("logs", name) == ""
        assert json.loads(ep_a.ok("inspect", name))[0]["State"]["Status"] == "created"
        assert _engine_state(engine, cells[ported]["id"]) == "created"
        ep_a.ok("start", name)
        while ep_a.ok("logs", name) != "ran\n":
            assert time.monotonic() < deadline, ep_a.ok("logs", name)
            time.sleep(0.1)
        assert json.loads(ep_a.ok("inspect", name))[0]["State"]["Running"] is True
        # Its limits were set with the preparation: the running process's cgroup holds them.
        pid = int(engine.inspect_container(f"cp-{cells[name]['id']}")["State"]["Pid"])
        got = cgroup_limits(pid)
        assert (got.memory_bytes, got.cpu) == (16 * 1024 * 1024, pytest.approx(0.05))
    finally:
        engine.close()
        ep_a.docker("rm", "-f", name, ported)


def test_a_quota_refusal_is_a_docker_error(ep_b: Endpoint, admin: Client) -> None:
    admin.set_project_quota("team-b", {"memory_mb": 64})
    try:
        p = ep_b.docker("run", "-d", "-m", "128m", "busybox", "true")
        assert p.returncode != 0 and "Error response from daemon" in p.stderr
        assert "quota" in p.stderr.lower(), p.stderr
    finally:
        admin.set_project_quota("team-b", {"memory_mb": None})


def test_cellplane_endpoint_env_configures_the_docker_cli(
    ep_a: Endpoint, deployment: Deployment, tmp_path: Path
) -> None:
    """The documented habit: `eval $(cellplane endpoint env --project P)`, then docker works."""
    env = {
        **os.environ,
        "CELLPLANE_SERVER": deployment.url,
        "CELLPLANE_TOKEN": deployment.admin_token,
        "CELLPLANE_CONFIG": str(tmp_path / "cp.json"),
    }
    p = subprocess.run(
        [sys.executable, "-m", "cellplane.cli.main", "endpoint", "env", "--project", "team-a"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in p.stdout.splitlines()
        if line.startswith("export ")
    )
    assert exports["DOCKER_HOST"] == ep_a.host and exports["DOCKER_TLS_VERIFY"] == "1"
    certs = Path(exports["DOCKER_CERT_PATH"])
    assert certs.parent == tmp_path / "docker"  # beside the CLI's configuration
    assert (certs / "key.pem").stat().st_mode & 0o077 == 0
    assert DOCKER is not None
    ps = subprocess.run(
        [DOCKER, "ps", "-a"],
        env={**os.environ, **exports, "DOCKER_CONFIG": str(tmp_path / "dc")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ps.returncode == 0 and ps.stdout.startswith("CONTAINER ID"), ps.stderr


@pytest.mark.skipif(shutil.which("runsc") is None, reason="gVisor's runsc is not installed")
def test_docker_run_runtime_runsc_makes_a_sandboxed_cell(ep_a: Endpoint, admin: Client) -> None:
    """`--runtime runsc` is the sandbox isolation class (gVisor); an unknown runtime is refused
    as Docker refuses one, and changes nothing."""
    name = unique("gv")
    ep_a.ok("run", "-d", "--name", name, "--runtime", "runsc", "-m", "48m", "busybox", *SLEEP)
    try:
        (info,) = json.loads(ep_a.ok("inspect", name))
        assert info["HostConfig"]["Runtime"] == "runsc"
        assert _cells(admin, "team-a")[name]["isolation"] == "sandbox"
        out = admin.exec_cell(_cells(admin, "team-a")[name]["id"], ["dmesg"])
        assert "Starting gVisor" in str(out["output"]), out
        # Its metrics come from the sandbox's cgroup, as a standard cell's do: the memory it
        # uses (gVisor's Sentry and gofer included) against its limit.
        usage, limit = ep_a.ok("stats", "--no-stream", "--format", "{{.MemUsage}}", name).split(
            " / "
        )
        assert limit.strip() == "48MiB" and not usage.startswith("0B"), (usage, limit)
    finally:
        ep_a.docker("rm", "-f", name)
    before = set(_cells(admin, "team-a"))
    p = ep_a.docker("run", "-d", "--runtime", "kata", "busybox", "true")
    assert p.returncode != 0 and "unknown or invalid runtime name: kata" in p.stderr, p.stderr
    assert set(_cells(admin, "team-a")) == before
