"""Standard input and TTYs of containers' main processes on a project's Docker-compatible
endpoint: `docker run -i` with piped input, `docker run -it` and `docker attach` under a real
pseudo-terminal, driven by the unmodified docker CLI; and Debian's docker-compose 1.29 bringing
up, listing, reading and removing a two-service project; against a real deployment (server +
agent + podman).
"""

from __future__ import annotations

import fcntl
import os
import pty
import secrets
import select
import shutil
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from .conftest import DOCKER, Endpoint, unique

pytestmark = pytest.mark.integration

CAT = ("sh", "-c", "cat; echo done; exit 3")
#: The window size of the tests' pseudo-terminal.
ROWS, COLS = 33, 101


def _pty_steps(ep: Endpoint, args: list[str], steps: list[tuple[str, bytes]]) -> tuple[int, str]:
    """Run the docker CLI under a pseudo-terminal, typing each step's bytes once its text has
    been printed (after the CLI made the terminal raw: ctrl-q is the terminal's XON before).
    Its exit code and everything it printed."""
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
    out, pending = bytearray(), list(steps)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            while pending and pending[0][0].encode() in out:
                os.write(controller, pending.pop(0)[1])
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                if pending and not pending[0][0]:
                    os.write(controller, pending.pop(0)[1])
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


def test_run_i_forwards_piped_stdin_to_the_main_process_until_its_end(ep_a: Endpoint) -> None:
    assert DOCKER is not None
    name = unique("cat")
    p = subprocess.run(
        [DOCKER, "run", "-i", "--rm", "--name", name, "-m", "16m", "busybox", *CAT],
        env=ep_a.env(),
        input="hi\nthere\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert p.stdout == "hi\nthere\ndone\n"
    assert name not in ep_a.ok("ps", "-a", "--format", "{{.Names}}")  # --rm removed it
    with ep_a.d.client() as admin:  # writing to a process is audited, as exec is
        events = admin.list_audit(action="cell.attach", limit=50)["items"]
    assert [e for e in events if e["detail"]["cell"] == name]


def test_run_it_types_into_a_shell_with_the_clients_terminal(ep_a: Endpoint) -> None:
    name = unique("tty")
    try:
        code, out = _pty_steps(
            ep_a,
            ["run", "-it", "--name", name, "-m", "16m", "busybox", "sh"],
            [("", b"echo $((6*7)); stty size\rexit 6\r")],
        )
        assert code == 6, out
        assert "42" in out
        assert f"{ROWS} {COLS}" in out  # the CLI's resize reached the container's TTY
        config = ep_a.py().api.inspect_container(name)["Config"]
        assert (config["Tty"], config["OpenStdin"], config["StdinOnce"]) == (True, True, True)
    finally:
        ep_a.docker("rm", "-f", name)


def test_run_t_sizes_the_tty_before_the_process_runs(ep_a: Endpoint) -> None:
    # The process asks at once: only a TTY sized before the start (the CLI's ConsoleSize)
    # answers; the CLI's resize comes after the start and, racing the process, would be late.
    name = unique("size")
    try:
        code, out = _pty_steps(
            ep_a, ["run", "-t", "--name", name, "-m", "16m", "busybox", "stty", "size"], []
        )
        assert code == 0, out
        # Printed once, it reaches the CLI once: the attach is open on the made container
        # before the CLI starts it (no replay of what came before the session).
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        assert lines == [f"{ROWS} {COLS}"], out
    finally:
        ep_a.docker("rm", "-f", name)


def test_the_output_of_a_process_that_ends_at_once_arrives_exactly_once(ep_a: Endpoint) -> None:
    # With and without a TTY, with stdin and removed at its end (`--rm`): the attach opens on
    # the container `docker create` made, before the start, as with Docker. Before that the
    # output of such a process reached the CLI twice or not at all (docs/docker.md).
    for flags in (["-t"], ["-i"], ["-t", "--rm"], ["-i", "--rm"], ["-it", "--rm"]):
        word = f"out-{secrets.token_hex(4)}"
        name = unique("once")
        try:
            code, out = _pty_steps(
                ep_a,
                ["run", *flags, "--name", name, "-m", "16m", "busybox", "echo", word],
                [],
            )
            assert code == 0, (flags, out)
            assert out.count(word) == 1, (flags, out)
        finally:
            ep_a.docker("rm", "-f", name)


def test_attach_to_a_running_container_and_detach_with_ctrl_p_ctrl_q(ep_a: Endpoint) -> None:
    name = unique("att")
    ep_a.ok("run", "-dit", "--name", name, "-m", "16m", "busybox", "sh")
    try:
        # A prompt is not printed again on attach: the shell is asked to say something first.
        code, out = _pty_steps(
            ep_a,
            ["attach", name],
            [("", b"echo attached-$((2+3))\r"), ("attached-5", b"\x10\x11")],
        )
        assert "attached-5" in out, out
        assert "read escape sequence" in out, out  # the CLI's word for a detach (exit 1)
        assert ep_a.ok("inspect", "-f", "{{.State.Running}}", name).strip() == "true"
        # attached again, the shell is the same one: its exit ends the container
        code, out = _pty_steps(ep_a, ["attach", name], [("", b"exit 7\r")])
        assert code == 7, out
        assert ep_a.ok("wait", name).strip() == "7"
    finally:
        ep_a.docker("rm", "-f", name)


COMPOSE = shutil.which("docker-compose")
#: A web server and a client that reaches it by its service name on the project's network.
COMPOSE_FILE = """\
version: "2.4"
services:
  web:
    image: busybox
    mem_limit: 16m
    command: ["sh", "-c", "mkdir -p /srv && echo hello-compose > /srv/index.html && exec httpd -f -p 8080 -h /srv"]
  client:
    image: busybox
    mem_limit: 16m
    command: ["sh", "-c", "until wget -qO- http://web:8080/; do sleep 1; done; exec sleep 3600"]
"""


def _run_compose(ep: Endpoint, workdir: Path, project: str, *args: str) -> tuple[int, str]:
    assert COMPOSE is not None
    # requests (under Compose) would let these replace the endpoint's CA
    env = {k: v for k, v in ep.env().items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    p = subprocess.run(
        [COMPOSE, "-p", project, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return p.returncode, p.stdout + p.stderr


def _compose(ep: Endpoint, workdir: Path, project: str, *args: str) -> str:
    code, out = _run_compose(ep, workdir, project, *args)
    assert code == 0, (args, out)
    return out


@pytest.mark.skipif(COMPOSE is None, reason="docker-compose (Debian's 1.29) is not installed")
def test_compose_up_ps_logs_down_of_a_web_and_a_client(ep_a: Endpoint, tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE)
    project = f"cp{secrets.token_hex(3)}"
    try:
        _compose(ep_a, tmp_path, project, "up", "-d")
        ps = _compose(ep_a, tmp_path, project, "ps")
        rows = [line for line in ps.splitlines() if line.startswith(project)]
        assert sorted(r.split()[0] for r in rows) == [f"{project}_client_1", f"{project}_web_1"]
        assert all(" Up" in r for r in rows), ps
        deadline = time.monotonic() + 60  # the client retries until the web server answers
        logs = ""
        while "hello-compose" not in logs and time.monotonic() < deadline:
            logs = _compose(ep_a, tmp_path, project, "logs", "--no-color", "client")
        assert "hello-compose" in logs, logs
        # the same containers are cells of the project, by Compose's names in `docker ps`
        names = ep_a.ok("ps", "--format", "{{.Names}}").split()
        assert {f"{project}_web_1", f"{project}_client_1"} <= set(names)
        _compose(ep_a, tmp_path, project, "down")
        names = ep_a.ok("ps", "-a", "--format", "{{.Names}}").split()
        assert not [n for n in names if n.startswith(project)]
        networks = ep_a.ok("network", "ls", "--format", "{{.Name}}").split()
        assert f"{project}-default" not in networks
    finally:
        _run_compose(ep_a, tmp_path, project, "down")
