"""Exec, interactive streams and `run --rm` on a project's Docker-compatible endpoint, driven by
the unmodified docker CLI (under a real pseudo-terminal for `-it`) and docker-py, against a real
deployment (server + agent + podman).

One deployment for the module; one running container shared by the exec tests.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from cellplane.client import Client
from cellplane.testing.harness import Deployment

from .conftest import DOCKER, SLEEP, Endpoint, unique, user_token

pytestmark = pytest.mark.integration


#: The window size of the tests' pseudo-terminal.
ROWS, COLS = 33, 101


@pytest.fixture(scope="module")
def box(ep_a: Endpoint) -> Iterator[str]:
    """A running container of team-a to exec in."""
    name = unique("box")
    ep_a.ok("run", "-d", "--name", name, "-m", "16m", "busybox", *SLEEP)
    try:
        yield name
    finally:
        ep_a.docker("rm", "-f", name)


def _under_pty(ep: Endpoint, *args: str, send: bytes = b"", timeout: float = 60) -> tuple[int, str]:
    """Run the docker CLI with a pseudo-terminal as its stdin/stdout/stderr: its exit code and
    everything it printed. `send` is typed once the CLI has printed something (or at once)."""
    assert DOCKER is not None
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    proc = subprocess.Popen(
        [DOCKER, *args],
        env=ep.env(),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
        start_new_session=True,
    )
    os.close(terminal)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        if send:
            os.write(controller, send)
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal's other side closed: the CLI is done
                break
            if not chunk:
                break
            out += chunk
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    return code, out.decode("utf-8", "replace")


def test_docker_exec_prints_both_streams_and_returns_the_exit_code(
    ep_a: Endpoint, box: str
) -> None:
    p = ep_a.docker("exec", box, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert p.stdout == "out\n"
    assert p.stderr == "err\n"
    assert ep_a.ok("exec", box, "sh", "-c", "echo fine") == "fine\n"


def test_docker_exec_i_forwards_piped_stdin_until_its_end(ep_a: Endpoint, box: str) -> None:
    assert DOCKER is not None
    p = subprocess.run(
        [DOCKER, "exec", "-i", box, "sh", "-c", "cat; echo done; exit 4"],
        env=ep_a.env(),
        input="line one\nline two\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert p.stdout == "line one\nline two\ndone\n"


def test_docker_exec_it_runs_under_a_terminal(ep_a: Endpoint, box: str) -> None:
    code, out = _under_pty(ep_a, "exec", "-it", box, "sh", "-c", "tty; exit 5")
    assert code == 5, out
    assert "/dev/pts/" in out
    assert "\x00" not in out


def test_docker_exec_it_types_into_an_interactive_shell(ep_a: Endpoint, box: str) -> None:
    code, out = _under_pty(ep_a, "exec", "-it", box, "sh", send=b"echo $((6*7))\rexit 6\r")
    assert code == 6, out
    assert "42" in out


def test_a_missing_command_exits_127_with_the_reason(ep_a: Endpoint, box: str) -> None:
    p = ep_a.docker("exec", box, "no-such-command")
    assert p.returncode == 127, (p.stdout, p.stderr)
    assert "no-such-command" in p.stdout + p.stderr
    assert "not found" in p.stdout + p.stderr


def test_docker_py_exec_run_and_exec_inspect(ep_a: Endpoint, box: str) -> None:
    client = ep_a.py()
    try:
        container = client.containers.get(box)
        result = container.exec_run(["sh", "-c", "echo from-py; exit 2"])
        assert result.exit_code == 2
        assert result.output == b"from-py\n"
        split = container.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
        assert split.exit_code == 0 and split.output == (b"o\n", b"e\n")
        exec_id = client.api.exec_create(box, ["true"])["Id"]
        before = client.api.exec_inspect(exec_id)
        assert before["Running"] is False and before["ProcessConfig"]["entrypoint"] == "true"
        client.api.exec_start(exec_id)
        after = client.api.exec_inspect(exec_id)
        assert after["ExitCode"] == 0 and after["ContainerID"] == container.id
        # Detached (`docker exec -d`): the start answers at once, the exit code comes later.
        detached = client.api.exec_create(box, ["sh", "-c", "sleep 1; exit 9"])["Id"]
        assert client.api.exec_start(detached, detach=True) in (b"", "")
        deadline = time.monotonic() + 30
        while (seen := client.api.exec_inspect(detached))["Running"]:
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
        assert seen["ExitCode"] == 9
    finally:
        client.close()


def test_docker_exec_as_a_user_in_a_dir_with_env(ep_a: Endpoint, box: str) -> None:
    script = 'echo "$(id -u):$(id -g) $(pwd) $GREETING"'
    got = ep_a.ok("exec", "-u", "65534:65534", "-w", "/tmp", "-e", "GREETING=hi there", box,
                  "sh", "-c", script)  # fmt: skip
    assert got == "65534:65534 /tmp hi there\n"
    assert ep_a.ok("exec", box, "sh", "-c", script) == "0:0 / \n"  # the container's own


def test_refused_exec_options_name_themselves(ep_a: Endpoint, box: str) -> None:
    p = ep_a.docker("exec", "--privileged", box, "true")
    assert p.returncode != 0 and "--privileged is not allowed" in p.stderr
    p = ep_a.docker("exec", "-w", "relative", box, "true")
    assert p.returncode != 0 and "-w/--workdir 'relative': the path must be absolute" in p.stderr
    p = ep_a.docker("exec", "no-such-container", "true")
    assert p.returncode != 0 and "No such container" in p.stderr
    client = ep_a.py()
    try:
        with pytest.raises(docker.errors.APIError) as err:
            client.api.resize(box, 24, 80)
        assert err.value.status_code == 409 and "no TTY" in str(err.value)
    finally:
        client.close()


def test_a_viewer_cannot_exec(
    ep_a: Endpoint, box: str, deployment: Deployment, admin: Client, tmp_path: Path
) -> None:
    token = user_token(deployment, admin, unique("vic"), "project-viewer", "team-a")
    viewer = Endpoint(deployment, "team-a", token, tmp_path / "viewer")
    p = viewer.docker("exec", box, "touch", "/tmp/viewer-was-here")
    assert p.returncode != 0 and "cells:write" in p.stderr
    assert ep_a.docker("exec", box, "test", "-e", "/tmp/viewer-was-here").returncode == 1


def test_docker_run_rm_returns_the_exit_code_and_removes_the_container(
    ep_a: Endpoint, admin: Client
) -> None:
    name = unique("gone")
    p = ep_a.docker(
        "run", "--rm", "--name", name, "-m", "16m", "busybox", "sh", "-c", "echo bye; exit 7"
    )
    assert p.returncode == 7, (p.stdout, p.stderr)
    assert p.stdout == "bye\n"
    assert ep_a.ok("ps", "-a", "-q", "--filter", f"name=^{name}$") == ""
    assert name not in {c["name"] for c in admin.list_cells("team-a")["items"]}
    # Detached: removed once it exits, whoever waits for it.
    cid = ep_a.ok("run", "-d", "--rm", "-m", "16m", "busybox", "sh", "-c", "exit 4").strip()
    client = ep_a.py()
    try:
        assert client.api.wait(cid, condition="removed")["StatusCode"] == 4
    finally:
        client.close()
    p = ep_a.docker("inspect", cid)
    assert p.returncode == 1 and "No such" in p.stderr
    p = ep_a.docker("run", "--rm", "--restart", "always", "busybox", "true")
    assert p.returncode != 0 and "--restart and --rm" in p.stderr
