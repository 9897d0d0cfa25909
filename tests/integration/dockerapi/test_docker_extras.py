"""`docker cp`, `export`, `commit`, `stats`, `top`, `rename`, `port`, `update`, `pause`/`unpause`,
`kill --signal`, healthchecks against a real deployment (server + agent + podman), with the unmodified docker CLI and docker-py.

One deployment for the module; each test names its containers uniquely and removes them.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from cellplane.client import Client
from cellplane.testing.cgroups import cgroup_limits
from cellplane.testing.harness import Deployment

from .conftest import DOCKER, SLEEP, Endpoint, unique, user_token

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def _cells(admin: Client, project: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in admin.list_cells(project)["items"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _untar(chunks: Any) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def _streamed_stats_samples(ep: Endpoint, name: str, wanted: int) -> int:
    """Run `docker stats NAME` (streaming) until it printed `wanted` samples of NAME (or a
    backstop of 90 s for a hung stream ran out); the samples seen."""
    assert DOCKER is not None
    proc = subprocess.Popen(
        [DOCKER, "stats", "--format", "SAMPLE {{.Name}} {{.MemUsage}}", name],
        env=ep.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    backstop = threading.Timer(90, proc.kill)
    backstop.start()
    seen = 0
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if f"SAMPLE {name} ".encode() in raw:
                seen += 1
                if seen >= wanted:
                    break
    finally:
        backstop.cancel()
        proc.kill()
        proc.wait()
    return seen


def test_docker_cp_both_ways_and_docker_py_archives(ep_a: Endpoint, tmp_path: Path) -> None:
    name = unique("cp")
    ep_a.ok("run", "-d", "--name", name, "-m", "64m", "busybox", *SLEEP)
    try:
        src = tmp_path / "in.txt"
        src.write_bytes(b"hello from the host\n" * 1000)
        ep_a.ok("cp", str(src), f"{name}:/tmp/in.txt")
        out = tmp_path / "out.txt"
        ep_a.ok("cp", f"{name}:/tmp/in.txt", str(out))
        assert out.read_bytes() == src.read_bytes()
        # A missing path: Docker's error, naming it.
        missing = ep_a.docker("cp", f"{name}:/no/such/file", str(tmp_path / "x"))
        assert missing.returncode != 0 and "/no/such/file" in missing.stderr, missing
        assert not (tmp_path / "x").exists()

        # `docker diff`: what the copies changed in the container's filesystem.
        diff = ep_a.ok("diff", name).splitlines()
        assert "A /tmp/in.txt" in diff, diff
        client = ep_a.py()
        try:
            c = client.containers.get(name)
            assert c.put_archive("/tmp", _tar({"py/a.txt": b"alpha", "b.txt": b"beta"}))
            chunks, stat = c.get_archive("/tmp/py/a.txt")
            assert _untar(chunks) == {"a.txt": b"alpha"}
            assert stat["name"] == "a.txt" and stat["size"] == 5
            chunks, stat = c.get_archive("/tmp/b.txt")
            assert _untar(chunks) == {"b.txt": b"beta"}
            # A member leaving the destination is refused whole: nothing of it lands.
            bad = _tar({"ok.txt": b"fine", "../../etc/evil": b"x"})
            with pytest.raises(docker.errors.APIError) as refused:
                c.put_archive("/tmp", bad)
            assert refused.value.status_code == 400 and "leaves" in str(refused.value)
            with pytest.raises(docker.errors.NotFound):
                c.get_archive("/tmp/ok.txt")
            # Into a directory that does not exist: Docker's 404, naming it.
            with pytest.raises(docker.errors.NotFound) as nowhere:
                c.put_archive("/no/such/dir", _tar({"f.txt": b"x"}))
            assert "/no/such/dir" in str(nowhere.value)
            with pytest.raises(docker.errors.APIError) as not_dir:
                c.put_archive("/tmp/b.txt", _tar({"f.txt": b"x"}))
            assert not_dir.value.status_code == 400
            assert "not a directory" in str(not_dir.value)
        finally:
            client.close()
    finally:
        ep_a.docker("rm", "-f", name)


def test_create_cp_start_and_cp_out_of_a_container_that_never_ran(
    ep_a: Endpoint, tmp_path: Path
) -> None:
    # `docker create` makes the container: a file copied in before the first start is there
    # when it runs, and files come out of a made container that never ran (the usual way to
    # take a build's output out of an image).
    name = unique("made")
    conf = tmp_path / "app.conf"
    conf.write_bytes(b"answer=42\n")
    ep_a.ok("create", "--name", name, "-m", "32m", "busybox", "cat", "/etc/app.conf")
    client = ep_a.py()
    try:
        view = client.api.inspect_container(name)
        assert view["State"]["Status"] == "created" and not view["State"]["Running"]
        ep_a.ok("cp", str(conf), f"{name}:/etc/app.conf")
        out = tmp_path / "busybox"
        ep_a.ok("cp", f"{name}:/bin/busybox", str(out))
        assert out.stat().st_size > 100_000  # the image's binary, out of the made container
        assert "Created" in ep_a.ok("ps", "-a", "--filter", f"name={name}")
        assert ep_a.ok("start", "-a", name) == "answer=42\n"
        assert client.api.inspect_container(name)["State"]["ExitCode"] == 0
    finally:
        client.close()
        ep_a.docker("rm", "-f", name)


def test_cp_refusals_read_only_root_and_a_viewer(
    ep_a: Endpoint, deployment: Deployment, admin: Client, tmp_path: Path
) -> None:
    name = unique("ro")
    ep_a.ok("run", "-d", "--read-only", "--name", name, "-m", "32m", "busybox", *SLEEP)
    try:
        # A project viewer sees the container but may not copy files out of it (nor in).
        token = user_token(deployment, admin, unique("vic"), "project-viewer", "team-a")
        viewer = Endpoint(deployment, "team-a", token, tmp_path / "viewer")
        assert name in viewer.ok("ps", "--format", "{{.Names}}").split()
        out = viewer.docker("cp", f"{name}:/etc/passwd", str(tmp_path / "stolen"))
        assert out.returncode != 0 and "cells:write" in out.stderr, out
        assert not (tmp_path / "stolen").exists()
        src = tmp_path / "f.txt"
        src.write_text("x")
        refused = ep_a.docker("cp", str(src), f"{name}:/tmp/f.txt")
        assert refused.returncode != 0
        assert "container rootfs is marked read-only" in refused.stderr, refused
        # Reading out of it is fine.
        ep_a.ok("cp", f"{name}:/etc/passwd", str(tmp_path / "passwd"))
        assert "root:" in (tmp_path / "passwd").read_text()
    finally:
        ep_a.docker("rm", "-f", name)


def test_docker_stats_and_top(ep_a: Endpoint) -> None:
    name = unique("st")
    ep_a.ok("run", "-d", "--name", name, "-m", "48m", "--cpus", "0.5", "busybox", *SLEEP)
    try:
        line = ep_a.ok(
            "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", name
        ).strip()
        assert line.startswith(f"{name} ") and line.split(" / ")[1].startswith("48MiB"), line
        top = ep_a.ok("top", name)
        assert "PID" in top.splitlines()[0] and "sleep 600" in top, top
        client = ep_a.py()
        try:
            sample = client.containers.get(name).stats(stream=False)
            assert sample["name"] == f"/{name}"
            assert sample["memory_stats"]["limit"] == 48 * MiB
            assert sample["memory_stats"]["usage"] > 0
            assert sample["cpu_stats"]["cpu_usage"]["total_usage"] > 0
            # Streaming: the CLI reads samples as they come; two of them from docker-py.
            stream = client.api.stats(name, decode=True, stream=True)
            first, second = next(stream), next(stream)
            assert first["id"] == second["id"] == client.containers.get(name).id
            stream.close()  # type: ignore[attr-defined]
        finally:
            client.close()
        # The docker CLI's own streaming `stats`: two samples of the container, then it is ended.
        assert _streamed_stats_samples(ep_a, name, wanted=2) >= 2
    finally:
        ep_a.docker("rm", "-f", name)


def test_docker_rename_port_and_update(
    ep_a: Endpoint, admin: Client, deployment: Deployment
) -> None:
    name, new, other = unique("rn"), unique("renamed"), unique("taken")
    port = _free_port()
    ep_a.ok("run", "-d", "--name", name, "-m", "64m", "-p", f"{port}:80", "busybox", *SLEEP)
    ep_a.ok("create", "--name", other, "-m", "16m", "busybox", "true")
    try:
        assert ep_a.ok("port", name).strip().splitlines() == [f"80/tcp -> 0.0.0.0:{port}"]
        assert ep_a.ok("port", name, "80").strip() == f"0.0.0.0:{port}"
        ep_a.ok("rename", name, new)
        names = ep_a.ok("ps", "--format", "{{.Names}}").split()
        assert new in names and name not in names
        cells = _cells(admin, "team-a")
        assert new in cells and name not in cells
        # Taken, or not a DNS label: refused, nothing changes.
        taken = ep_a.docker("rename", new, other)
        assert taken.returncode != 0 and "already exists" in taken.stderr, taken
        bad = ep_a.docker("rename", new, "Not_A_Label")
        assert bad.returncode != 0
        assert set(_cells(admin, "team-a")) >= {new, other}

        ep_a.ok("update", "--memory", "96m", "--memory-swap", "96m", "--cpus", "0.25", new)
        (info,) = json.loads(ep_a.ok("inspect", new))
        assert info["HostConfig"]["Memory"] == 96 * MiB
        assert info["HostConfig"]["NanoCpus"] == 250_000_000
        cell = _cells(admin, "team-a")[new]
        assert (cell["memory_mb"], cell["cpu"]) == (96, 0.25)
        # ... and on the running container: its cgroup's files, as the kernel enforces them.
        engine = docker.APIClient(base_url=deployment.engine_url, version="1.41")
        try:
            pid = int(engine.inspect_container(f"cp-{cell['id']}")["State"]["Pid"])
        finally:
            engine.close()
        got = cgroup_limits(pid)
        assert (got.memory_bytes, got.cpu) == (96 * MiB, pytest.approx(0.25))
        usage = ep_a.ok("stats", "--no-stream", "--format", "{{.MemUsage}}", new)
        assert usage.split(" / ")[1].startswith("96MiB"), usage
        refused = ep_a.docker("update", "--cpu-shares", "512", new)
        assert refused.returncode != 0 and "CpuShares" in refused.stderr, refused
        # An increase is admitted against the quotas, as a create is.
        admin.set_project_quota("team-a", {"memory_mb": 1024})
        try:
            too_big = ep_a.docker("update", "--memory", "2g", "--memory-swap", "2g", new)
        finally:
            admin.set_project_quota("team-a", {"memory_mb": None})
        assert too_big.returncode != 0 and "quota" in too_big.stderr.lower(), too_big
        assert _cells(admin, "team-a")[new]["memory_mb"] == 96
    finally:
        ep_a.docker("rm", "-f", name, new, other)


def _inspect(ep: Endpoint, name: str) -> dict[str, Any]:
    (info,) = json.loads(ep.ok("inspect", name))
    return dict(info)


def test_docker_update_restart_sets_the_policy_the_agent_follows(
    ep_a: Endpoint, admin: Client
) -> None:
    name, auto = unique("rs"), unique("auto")
    # Restart policy `no`: its exit (3, after 3 s) would end it, were it not changed meanwhile.
    ep_a.ok("run", "-d", "--name", name, "-m", "16m", "busybox", "sh", "-c", "sleep 3; exit 3")
    ep_a.ok("create", "--rm", "--name", auto, "-m", "16m", "busybox", "true")
    try:
        ep_a.ok("update", "--restart", "on-failure:2", name)
        policy = _inspect(ep_a, name)["HostConfig"]["RestartPolicy"]
        assert policy == {"Name": "on-failure", "MaximumRetryCount": 2}
        restart = _cells(admin, "team-a")[name]["restart"]
        assert restart == {"policy": "on-failure", "max_retries": 2}
        # The host's agent was sent the new policy: the exit is restarted, twice at most.
        deadline = time.monotonic() + 60
        while _inspect(ep_a, name)["RestartCount"] < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _inspect(ep_a, name)["RestartCount"] >= 1
        ep_a.ok("update", "--restart", "unless-stopped", name)
        assert _inspect(ep_a, name)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert _cells(admin, "team-a")[name]["restart"]["policy"] == "always"
        # A `--rm` container keeps `no`, as Docker's does; nothing changes.
        refused = ep_a.docker("update", "--restart", "always", auto)
        assert refused.returncode != 0 and "AutoRemove is enabled" in refused.stderr, refused
        assert _inspect(ep_a, auto)["HostConfig"]["RestartPolicy"]["Name"] == "no"
        assert _cells(admin, "team-a")[auto]["restart"]["policy"] == "never"
    finally:
        ep_a.docker("rm", "-f", name, auto)


def _health(ep: Endpoint, name: str, status: str, within: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        health = _inspect(ep, name)["State"].get("Health") or {}
        if health.get("Status") == status or time.monotonic() > deadline:
            assert health.get("Status") == status, health
            return dict(health)
        time.sleep(0.3)


def _names(ep: Endpoint, *args: str) -> list[str]:
    return ep.ok("ps", *args, "--format", "{{.Names}}").split()


def test_a_healthcheck_runs_in_the_container_and_docker_shows_its_health(
    ep_a: Endpoint, admin: Client
) -> None:
    name, slow, plain = unique("hc"), unique("hcslow"), unique("hcnone")
    check = ["--health-interval", "1s", "--health-retries", "2"]
    since = str(int(time.time()) - 1)
    ep_a.ok("run", "-d", "--name", name, "-m", "16m", "--health-cmd", "test -f /tmp/ok", *check,
            "--health-timeout", "5s", "busybox", *SLEEP)  # fmt: skip
    ep_a.ok("run", "-d", "--name", slow, "-m", "16m", "--health-cmd", "sleep 30", *check,
            "--health-timeout", "300ms", "busybox", *SLEEP)  # fmt: skip
    ep_a.ok("run", "-d", "--name", plain, "-m", "16m", "busybox", *SLEEP)
    try:
        config = _inspect(ep_a, name)["Config"]["Healthcheck"]
        assert config["Test"] == ["CMD-SHELL", "test -f /tmp/ok"]
        assert (config["Interval"], config["Timeout"], config["Retries"]) == (10**9, 5 * 10**9, 2)
        # Its check fails (no /tmp/ok): two failures in a row make it unhealthy.
        health = _health(ep_a, name, "unhealthy")
        assert health["FailingStreak"] >= 2 and health["Log"][-1]["ExitCode"] == 1
        assert _cells(admin, "team-a")[name]["health"]["status"] == "unhealthy"
        assert name in _names(ep_a, "--filter", "health=unhealthy")
        status = ep_a.ok("ps", "--filter", f"name={name}", "--format", "{{.Status}}")
        assert status.strip().endswith("(unhealthy)"), status
        # Now it passes: healthy, the streak over.
        ep_a.ok("exec", name, "touch", "/tmp/ok")
        health = _health(ep_a, name, "healthy")
        assert health["FailingStreak"] == 0 and health["Log"][-1]["ExitCode"] == 0
        assert name in _names(ep_a, "--filter", "health=healthy")
        # A check longer than its timeout fails as Docker's does.
        slow_health = _health(ep_a, slow, "unhealthy")
        assert slow_health["Log"][-1]["ExitCode"] == -1
        assert "exceeded timeout" in slow_health["Log"][-1]["Output"]
        # A container without a check has no health; the filter `none` finds it.
        assert "Health" not in _inspect(ep_a, plain)["State"]
        assert plain in _names(ep_a, "--filter", "health=none")
        assert name not in _names(ep_a, "--filter", "health=none")
        refused = ep_a.docker("run", "-d", "--health-cmd", "true", "--health-interval", "10ms",
                              "busybox", "true")  # fmt: skip
        assert refused.returncode != 0 and "--health-interval" in refused.stderr, refused
        # Each new status was an event, as dockerd's `health_status: ...`.
        until = str(int(time.time()) + 1)
        actions = ep_a.ok("events", "--since", since, "--until", until, "--filter",
                          f"container={name}", "--filter", "event=health_status",
                          "--format", "{{.Action}}").split("\n")  # fmt: skip
        assert actions[:3] == [
            "health_status: starting",
            "health_status: unhealthy",
            "health_status: healthy",
        ], actions
    finally:
        ep_a.docker("rm", "-f", name, slow, plain)


def test_the_images_own_healthcheck_runs_unless_the_run_says_otherwise(
    ep_a: Endpoint, tmp_path: Path
) -> None:
    image, name, other, off = unique("hcimg"), unique("hci"), unique("hcicmd"), unique("hcioff")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nHEALTHCHECK --interval=1s --timeout=5s --retries=2 CMD test -f /tmp/ok\n"
    )
    built = ep_a.docker("build", "-t", image, str(tmp_path), timeout=300)
    assert built.returncode == 0, (built.stdout, built.stderr)
    try:
        check = json.loads(ep_a.ok("image", "inspect", image))[0]["Config"]["Healthcheck"]
        assert check["Test"] == ["CMD-SHELL", "test -f /tmp/ok"], check
        ep_a.ok("run", "-d", "--name", name, "-m", "16m", image, *SLEEP)
        # --health-cmd replaces the image's command; its interval and retries stay the image's.
        ep_a.ok("run", "-d", "--name", other, "-m", "16m", "--health-cmd", "true", image, *SLEEP)
        ep_a.ok("run", "-d", "--name", off, "-m", "16m", "--no-healthcheck", image, *SLEEP)
        config = _inspect(ep_a, name)["Config"]["Healthcheck"]
        assert config["Test"] == ["CMD-SHELL", "test -f /tmp/ok"]
        assert (config["Interval"], config["Retries"]) == (10**9, 2)
        assert _health(ep_a, name, "unhealthy")["Log"][-1]["ExitCode"] == 1
        ep_a.ok("exec", name, "touch", "/tmp/ok")
        assert _health(ep_a, name, "healthy")["FailingStreak"] == 0
        mine = _inspect(ep_a, other)["Config"]["Healthcheck"]
        assert (mine["Test"], mine["Interval"], mine["Retries"]) == (
            ["CMD-SHELL", "true"],
            10**9,
            2,
        )
        assert _health(ep_a, other, "healthy")["Log"][-1]["ExitCode"] == 0
        assert "Health" not in _inspect(ep_a, off)["State"]
        assert _inspect(ep_a, off)["Config"].get("Healthcheck") is None
    finally:
        ep_a.docker("rm", "-f", name, other, off)
        ep_a.docker("rmi", image)


def _count(ep: Endpoint, name: str) -> int:
    return int(ep.ok("exec", name, "cat", "/tmp/n").strip())


def test_docker_pause_freezes_the_container_and_unpause_thaws_it(
    ep_a: Endpoint, admin: Client
) -> None:
    name = unique("pz")
    counter = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done"
    ep_a.ok("run", "-d", "--name", name, "-m", "16m", "busybox", "sh", "-c", counter)
    try:
        time.sleep(0.5)
        before, read_at = _count(ep_a, name), time.monotonic()
        ep_a.ok("pause", name)
        state = _inspect(ep_a, name)["State"]
        assert (state["Status"], state["Paused"], state["Running"]) == ("paused", True, True)
        status = ep_a.ok("ps", "--filter", f"name={name}", "--format", "{{.Status}}").strip()
        assert status.endswith("(Paused)"), status
        assert name in _names(ep_a, "--filter", "status=paused")
        assert _cells(admin, "team-a")[name]["state"] == "PAUSED"
        refused = ep_a.docker("exec", name, "cat", "/tmp/n")
        assert refused.returncode != 0 and "is paused" in refused.stderr, refused
        again = ep_a.docker("pause", name)
        assert again.returncode != 0 and "already paused" in again.stderr, again
        # Frozen for 2 s, through the agent's own passes (it neither restarts nor reports it
        # ended): the counter, every 0.1 s, has not moved meanwhile.
        time.sleep(2)
        assert _cells(admin, "team-a")[name]["state"] == "PAUSED"
        assert _inspect(ep_a, name)["RestartCount"] == 0
        ep_a.ok("unpause", name)
        assert _inspect(ep_a, name)["State"]["Status"] == "running"
        # At most 10 a second while it runs, none while frozen (2 s at least): what it counted
        # between the two reads fits in the time it was not paused.
        moved, elapsed = _count(ep_a, name) - before, time.monotonic() - read_at
        assert moved <= (elapsed - 2) * 10 + 2, (
            f"it ran on while paused: {moved} in {elapsed:.1f} s"
        )
        wrong = ep_a.docker("unpause", name)
        assert wrong.returncode != 0 and "is not paused" in wrong.stderr, wrong
        # A paused container stops as Docker's does (thawed, then stopped).
        ep_a.ok("pause", name)
        ep_a.ok("stop", "-t", "1", name)
        assert _inspect(ep_a, name)["State"]["Status"] == "exited"
    finally:
        ep_a.docker("rm", "-f", name)


def _logged(ep: Endpoint, name: str, text: str, within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while text not in (logs := ep.ok("logs", name)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return text in logs


def test_docker_kill_sends_the_signal_asked_for(ep_a: Endpoint, admin: Client) -> None:
    """A trapped HUP reaches the main process, which runs on; an unknown signal is Docker's
    400 and changes nothing; docker-py's `kill(signal=...)` sends USR1, on which the process
    exits with its own code and the cell is EXITED; the default (KILL) stops the container."""
    name, other = unique("sg"), unique("sgk")
    script = (
        "trap 'echo got-hup' HUP; trap 'echo got-usr1; exit 7' USR1; "
        "echo ready; while true; do sleep 0.1; done"
    )
    ep_a.ok("run", "-d", "--name", name, "-m", "16m", "busybox", "sh", "-c", script)
    ep_a.ok("run", "-d", "--name", other, "-m", "16m", "busybox", *SLEEP)
    try:
        assert _logged(ep_a, name, "ready")
        ep_a.ok("kill", "--signal", "SIGHUP", name)
        assert _logged(ep_a, name, "got-hup")
        assert _inspect(ep_a, name)["State"]["Status"] == "running"
        bad = ep_a.docker("kill", "-s", "NOPE", name)
        assert bad.returncode != 0 and "Invalid signal: NOPE" in bad.stderr, bad
        assert _inspect(ep_a, name)["State"]["Status"] == "running"
        ep_a.py().containers.get(name).kill(signal="usr1")
        assert _logged(ep_a, name, "got-usr1")
        deadline = time.monotonic() + 30
        while _cells(admin, "team-a")[name]["state"] != "EXITED" and time.monotonic() < deadline:
            time.sleep(0.2)
        state = _inspect(ep_a, name)["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 7), state
        gone = ep_a.docker("kill", "-s", "HUP", name)
        assert gone.returncode != 0 and "is not running" in gone.stderr, gone
        ep_a.ok("kill", other)
        assert _inspect(ep_a, other)["State"]["Status"] == "exited"
        assert _cells(admin, "team-a")[other]["desired_state"] == "STOPPED"
    finally:
        ep_a.docker("rm", "-f", name, other)


def test_docker_export_streams_the_containers_file_system(ep_a: Endpoint, tmp_path: Path) -> None:
    name = unique("ex")
    ep_a.ok("run", "-d", "--name", name, "-m", "16m", "busybox", *SLEEP)
    try:
        ep_a.ok("exec", name, "sh", "-c", "mkdir -p /srv/made && echo exported > /srv/made/f")
        ep_a.ok("stop", "-t", "0", name)  # as Docker's, a stopped container exports too
        out = tmp_path / "fs.tar"
        ep_a.ok("export", "-o", str(out), name)
        with tarfile.open(out) as tar:
            names = set(tar.getnames())
            assert {"bin/busybox", "srv/made/f"} <= names, sorted(names)[:20]
            member = tar.extractfile("srv/made/f")
            assert member is not None and member.read() == b"exported\n"
        gone = ep_a.docker("export", "-o", str(tmp_path / "none.tar"), unique("nosuch"))
        assert gone.returncode != 0 and "No such container" in gone.stderr, gone
    finally:
        ep_a.docker("rm", "-f", name)


def test_docker_commit_makes_a_catalogue_image_that_runs(ep_a: Endpoint, admin: Client) -> None:
    name, image, changed = unique("cm"), f"{unique('committed')}:1", f"{unique('changed')}:1"
    ep_a.ok("run", "-d", "--name", name, "-m", "16m", "busybox", *SLEEP)
    try:
        ep_a.ok("exec", name, "sh", "-c", "echo from-commit > /made")
        ep_a.ok("commit", "-m", "with /made", name, image)
        assert image in ep_a.ok("images", "--format", "{{.Repository}}:{{.Tag}}").split()
        out = ep_a.ok("run", "--rm", "-m", "16m", image, "cat", "/made")
        assert out.strip() == "from-commit"
        unnamed = ep_a.docker("commit", name)
        assert unnamed.returncode != 0 and "needs a name" in unnamed.stderr, unnamed
        # --change sets the image's configuration as dockerd's does.
        ep_a.ok("commit", "--change", "ENV GREETING=changed", "--change",
                'CMD ["sh", "-c", "echo $GREETING; cat /made"]', "-c", "WORKDIR /tmp",
                name, changed)  # fmt: skip
        config = json.loads(ep_a.ok("image", "inspect", changed))[0]["Config"]
        assert "GREETING=changed" in config["Env"] and config["WorkingDir"] == "/tmp", config
        assert config["Cmd"] == ["sh", "-c", "echo $GREETING; cat /made"], config
        out = ep_a.ok("run", "--rm", "-m", "16m", changed)
        assert out.split() == ["changed", "from-commit"], out
        refused = ep_a.docker("commit", "--change", "HEALTHCHECK CMD true", name, f"{changed}x")
        assert refused.returncode != 0 and "HEALTHCHECK" in refused.stderr, refused
    finally:
        ep_a.docker("rm", "-f", name)
        ep_a.docker("rmi", image, changed)
