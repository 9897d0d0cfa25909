"""Interactive exec on a real cell: `cellplane cell exec [-i] [-t]` and `Client.exec_stream`.

One busybox cell serves the whole module (exec changes nothing in it). The CLI runs as a real
process against the session's deployment: piped stdin, exit codes, a missing command, and a
TTY driven through a pseudo-terminal (raw mode, window size at start and on SIGWINCH, the
terminal restored at the end). Refusals: a stopped cell, an unknown cell, a caller without
`cells:write`.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cellplane.client import CellplaneError, Client
from cellplane.client.exec import ExecSession
from cellplane.testing.harness import Deployment

from .conftest import Cells, unique

pytestmark = pytest.mark.integration

NOT_FOUND = 'exec failed: "nosuch": executable file not found in $PATH'


@pytest.fixture(scope="module")
def cell(deployment: Deployment, client: Client) -> Iterator[dict[str, Any]]:
    from cellplane.drivers.podman import PodmanDriver

    engine = PodmanDriver(deployment.engine_url)
    helper = Cells(deployment, client, engine)
    try:
        yield helper.run("exec")
    finally:
        helper.cleanup()
        engine.close()


def _cli_env(deployment: Deployment, tmp_path: Path, token: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CELLPLANE_SERVER=deployment.url,
        CELLPLANE_TOKEN=token or deployment.admin_token,
        CELLPLANE_CONFIG=str(tmp_path / "no-config.toml"),
        NO_COLOR="1",
    )
    return env


def _cli(
    deployment: Deployment, tmp_path: Path, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cellplane", "cell", "exec", *args],
        input=stdin,
        capture_output=True,
        env=_cli_env(deployment, tmp_path),
        timeout=60,
    )


def _drain(session: ExecSession) -> tuple[bytes, bytes]:
    out: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    for stream, data in session.output():
        out[stream] += data
    return out["stdout"], out["stderr"]


def test_sdk_streams_output_as_it_comes_and_forwards_stdin(
    client: Client, cell: dict[str, Any]
) -> None:
    script = "echo first; read line; echo got-$line; echo oops >&2; exit 4"
    with client.exec_stream(cell["id"], ["sh", "-c", script], stdin=True) as session:
        output = session.output()
        # "first" arrives while the command still waits for its stdin: output is streamed.
        assert next(output) == ("stdout", b"first\n")
        session.send_stdin(b"hello\n")
        session.close_stdin()
        rest = list(output)
    assert ("stdout", b"got-hello\n") in rest, rest
    assert ("stderr", b"oops\n") in rest, rest
    assert (session.status.exit_code, session.status.error) == (4, None)


def test_cli_pipes_stdin_only_with_i(
    deployment: Deployment, cell: dict[str, Any], tmp_path: Path
) -> None:
    name = cell["name"]
    piped = _cli(deployment, tmp_path, "-i", name, "--", "sh", stdin=b"echo hi\n")
    assert (piped.returncode, piped.stdout) == (0, b"hi\n"), piped.stderr
    # Without -i, piped stdin is not forwarded (as docker exec): sh reads EOF and ends.
    ignored = _cli(deployment, tmp_path, name, "--", "sh", stdin=b"echo hi\n")
    assert (ignored.returncode, ignored.stdout) == (0, b""), ignored.stderr
    # The command's options are the command's, with or without `--`.
    listing = _cli(deployment, tmp_path, name, "ls", "-d", "/etc")
    assert (listing.returncode, listing.stdout) == (0, b"/etc\n"), listing.stderr


def test_cli_exit_code_and_missing_command(
    deployment: Deployment, client: Client, cell: dict[str, Any], tmp_path: Path
) -> None:
    name = cell["name"]
    three = _cli(deployment, tmp_path, name, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (three.returncode, three.stdout, three.stderr) == (3, b"out\n", b"err\n")

    missing = _cli(deployment, tmp_path, name, "--", "nosuch")
    assert missing.returncode == 127, missing
    assert missing.stdout == b""
    text = missing.stderr.decode()
    assert NOT_FOUND in text, text
    for noise in ("Traceback", "runc", "reset by peer", "OCI"):
        assert noise not in text, text

    # The collected form says the same.
    assert client.exec_cell(cell["id"], ["nosuch"]) == {
        "exit_code": 127,
        "output": NOT_FOUND + "\n",
    }

    with client.exec_stream(cell["id"], ["/etc/passwd"]) as session:
        assert _drain(session) == (b"", b"")
    assert session.status.exit_code == 126
    assert session.status.error == 'exec failed: "/etc/passwd": permission denied'

    events = client.list_audit(action="cell.exec", limit=50)["items"]
    mine = [e for e in events if e["target"] == f"cell:{cell['id']}"]
    assert {e["detail"]["mode"] for e in mine} >= {"interactive", "stream"}, mine
    assert any(e["detail"]["command"] == ["nosuch"] for e in mine), mine


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Pty:
    """The CLI as a process on a pseudo-terminal: write keys, read until some text shows."""

    def __init__(self, args: list[str], env: dict[str, str], rows: int, cols: int) -> None:
        self.master, slave = os.openpty()
        _set_size(slave, rows, cols)
        self.slave = slave
        self.initial = termios.tcgetattr(slave)  # before the CLI can change it
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        self.seen = b""

    def read_until(self, text: bytes, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} in the terminal: {self.seen!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the process ended and the terminal closed
                    raise AssertionError(f"no {text!r}; terminal closed: {self.seen!r}") from None
                self.seen += chunk
        return self.seen

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def test_cli_tty_raw_mode_window_size_and_exit_code(
    deployment: Deployment, cell: dict[str, Any], tmp_path: Path
) -> None:
    args = [sys.executable, "-m", "cellplane", "cell", "exec", "-it", cell["name"], "--", "sh"]
    term = Pty(args, _cli_env(deployment, tmp_path), rows=33, cols=101)
    try:
        assert term.initial[3] & termios.ECHO and term.initial[3] & termios.ICANON
        term.read_until(b"/ # ")  # the shell's prompt: the session is up
        term.write(b"tty; stty size; echo marker-$((6*7))\n")
        seen = term.read_until(b"marker-42")
        assert b"/dev/pts/" in seen, seen  # the command has a terminal
        assert b"33 101" in seen, seen  # of the size the CLI's terminal had at the start
        # The CLI's terminal is raw meanwhile: no local echo, no line discipline.
        assert not termios.tcgetattr(term.slave)[3] & (termios.ECHO | termios.ICANON)

        # A resize of the local terminal reaches the command (SIGWINCH).
        _set_size(term.slave, 40, 120)
        os.kill(term.proc.pid, signal.SIGWINCH)
        deadline = time.monotonic() + 30
        while b"40 120" not in term.seen and time.monotonic() < deadline:
            term.write(b"stty size\n")
            try:
                term.read_until(b"40 120", timeout=1)
            except AssertionError:
                continue
        assert b"40 120" in term.seen, term.seen

        term.write(b"exit 5\n")
        assert term.proc.wait(timeout=30) == 5
        # The local terminal is restored as it was.
        assert termios.tcgetattr(term.slave) == term.initial
    finally:
        term.close()


def test_refusals_are_clear(
    deployment: Deployment, client: Client, cells: Cells, cell: dict[str, Any], tmp_path: Path
) -> None:
    # An unknown cell.
    with pytest.raises(CellplaneError) as unknown:
        client.exec_stream("cel-doesnotexist", ["true"])
    assert unknown.value.status == 404, unknown.value
    missing = _cli(deployment, tmp_path, "no-such-cell", "--", "true")
    assert missing.returncode == 1 and b"Traceback" not in missing.stderr, missing.stderr
    assert b"no-such-cell" in missing.stderr, missing.stderr

    # A stopped cell.
    stopped = cells.run("stopped")
    client.stop_cell(stopped["id"], timeout=0)
    cells.wait_state(stopped["id"], "STOPPED")
    with pytest.raises(CellplaneError) as refused:
        client.exec_stream(stopped["id"], ["true"])
    assert refused.value.status == 409, refused.value
    assert "is not running (state STOPPED)" in str(refused.value.detail), refused.value
    via_cli = _cli(deployment, tmp_path, stopped["name"], "--", "true")
    assert via_cli.returncode == 1, via_cli
    assert b"is not running" in via_cli.stderr and b"Traceback" not in via_cli.stderr

    # A caller who may read cells but not exec in them (project-viewer).
    viewer, password = unique("viewer"), "correct horse battery staple 9"
    client.create_user(viewer, password=password)
    client.assign_role("project-viewer", user=viewer)
    with httpx.Client(base_url=deployment.url, timeout=30) as http:
        doc = http.get("/identity/default/.well-known/openid-configuration").json()
        answer = http.post(
            doc["token_endpoint"],
            data={
                "grant_type": "password",
                "username": viewer,
                "password": password,
                "client_id": "cellplane-cli",
            },
        )
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
    with Client(deployment.url, token) as as_viewer:
        assert as_viewer.get_cell(cell["id"])["id"] == cell["id"]  # reading is allowed
        with pytest.raises(CellplaneError) as denied:
            as_viewer.exec_stream(cell["id"], ["true"])
    assert denied.value.status == 403, denied.value
    assert "cells:write" in str(denied.value.detail), denied.value
    # No credentials at all.
    with Client(deployment.url, None) as anonymous, pytest.raises(CellplaneError) as anon:
        anonymous.exec_stream(cell["id"], ["true"])
    assert anon.value.status == 401, anon.value
