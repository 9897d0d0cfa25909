"""`cellplane cell exec`: flags before the cell, the command after it, stdin only with -i, the
command's exit code and error. The session is a stand-in for `Client.exec_stream` (the WebSocket
itself is covered by tests/unit/api/test_api_exec.py and the integration tests)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from cellplane_fake_api import FakeApi
from typer.testing import CliRunner, Result

from cellplane.cli import exec_term
from cellplane.cli.main import app
from cellplane.client import Client
from cellplane.wire.exec import ExecStatus

Invoke = Callable[..., Result]


@dataclass
class FakeSession:
    """Echoes its stdin once closed (when opened with stdin), then ends with `status`."""

    stdin: bool
    status: ExecStatus
    received: bytearray = field(default_factory=bytearray)
    closed_stdin: threading.Event = field(default_factory=threading.Event)
    resizes: list[tuple[int, int]] = field(default_factory=list)
    closed: bool = False

    def send_stdin(self, data: bytes) -> None:
        self.received += data

    def close_stdin(self) -> None:
        self.closed_stdin.set()

    def resize(self, cols: int, rows: int) -> None:
        self.resizes.append((cols, rows))

    def output(self) -> Iterator[tuple[str, bytes]]:
        yield "stdout", b"started\n"
        if self.stdin:
            assert self.closed_stdin.wait(10), "stdin was never closed"
            yield "stdout", bytes(self.received)
        yield "stderr", b"to stderr\n"

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every `exec_stream` call, with the session it returned; `status` decides how it ends."""
    calls: list[dict[str, Any]] = []

    def exec_stream(
        self: Client,
        cell_id: str,
        command: Sequence[str],
        *,
        stdin: bool = False,
        tty: bool = False,
        size: tuple[int, int] | None = None,
    ) -> FakeSession:
        status = ExecStatus(0)
        if command[0] == "fail":
            status = ExecStatus(3)
        elif command[0] == "nosuch":
            status = ExecStatus(127, 'exec failed: "nosuch": executable file not found in $PATH')
        elif command[0] == "lost":
            status = ExecStatus(None, "the exec connection closed before the command ended")
        session = FakeSession(stdin, status)
        calls.append(
            {"cell": cell_id, "command": list(command), "stdin": stdin, "tty": tty, "size": size,
             "session": session}
        )  # fmt: skip
        return session

    monkeypatch.setattr(Client, "exec_stream", exec_stream)
    return calls


def _web(cli: Invoke, fake: FakeApi) -> str:
    result = cli("cell", "run", "web", "--image", "busybox", "--detach")
    assert result.exit_code == 0, result.output
    return next(str(c["id"]) for c in fake.cells.values() if c["name"] == "web")


def _exec(cli: Invoke, *args: str, input: bytes | None = None) -> Result:
    """`cell exec ARGS` with `input` as piped stdin (the `cli` fixture points the SDK at the
    fake API)."""
    return CliRunner().invoke(app, ["cell", "exec", *args], input=input)


@pytest.mark.parametrize(
    ("args", "command", "stdin", "project"),
    [
        (["web", "--", "sh", "-c", "ls -la"], ["sh", "-c", "ls -la"], False, "default"),
        # Without `--`, everything after the cell is the command's, even our own flags.
        (["web", "ls", "-la"], ["ls", "-la"], False, "default"),
        (["web", "cat", "-i", "-t", "--project", "x"], ["cat", "-i", "-t", "--project", "x"],
         False, "default"),
        # With `--`, our options may follow the cell (kubectl's form; the README's tour).
        (["web", "-i", "--project", "other", "--", "cat", "-t"], ["cat", "-t"], True, "other"),
        (["web", "--", "--", "x"], ["--", "x"], False, "default"),
    ],
)  # fmt: skip
def test_options_and_the_command(
    cli: Invoke,
    fake: FakeApi,
    opened: list[dict[str, Any]],
    args: list[str],
    command: list[str],
    stdin: bool,
    project: str,
) -> None:
    _web(cli, fake)
    cli("project", "create", "other")
    result = cli("cell", "run", "web", "--image", "busybox", "--detach", "--project", "other")
    assert result.exit_code == 0, result.output
    ids = {(c["project"], c["name"]): str(c["id"]) for c in fake.cells.values()}
    result = _exec(cli, *args, input=b"")
    assert result.exit_code == 0, result.output
    [call] = opened
    assert (call["cell"], call["command"], call["stdin"], call["tty"]) == (
        ids[(project, "web")], command, stdin, False
    )  # fmt: skip


def test_i_forwards_piped_stdin_and_output_goes_to_its_stream(
    cli: Invoke, fake: FakeApi, opened: list[dict[str, Any]]
) -> None:
    _web(cli, fake)
    result = _exec(cli, "-i", "web", "--", "sh", input=b"echo hi\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "started\necho hi\n"
    assert result.stderr == "to stderr\n"
    assert opened[0]["stdin"] is True and opened[0]["session"].closed


def test_without_i_piped_stdin_is_not_forwarded(
    cli: Invoke, fake: FakeApi, opened: list[dict[str, Any]]
) -> None:
    _web(cli, fake)
    result = _exec(cli, "web", "--", "sh", input=b"echo hi\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "started\n"
    assert opened[0]["stdin"] is False and opened[0]["session"].received == b""


def test_it_are_flags_before_the_cell(
    cli: Invoke, fake: FakeApi, opened: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _web(cli, fake)
    # Piped stdin is no terminal: -it is refused as docker does, naming the problem.
    refused = _exec(cli, "-it", "web", "--", "sh", input=b"")
    assert refused.exit_code == 1
    assert "the input device is not a TTY" in refused.stderr
    assert opened == []

    monkeypatch.setattr(exec_term, "stdin_is_terminal", lambda: True)
    monkeypatch.setattr(exec_term, "terminal_size", lambda: (101, 33))
    result = _exec(cli, "-it", "web", "--", "sh", input=b"exit\n")
    assert result.exit_code == 0, result.output
    [call] = opened
    assert (call["command"], call["stdin"], call["tty"], call["size"]) == (
        ["sh"], True, True, (101, 33)
    )  # fmt: skip
    # -t alone: a terminal for the command, no stdin.
    _exec(cli, "-t", "web", "top")
    assert (opened[1]["stdin"], opened[1]["tty"]) == (False, True)


def test_exit_code_and_error_of_the_command(
    cli: Invoke, fake: FakeApi, opened: list[dict[str, Any]]
) -> None:
    _web(cli, fake)
    assert _exec(cli, "web", "fail").exit_code == 3
    missing = _exec(cli, "web", "nosuch")
    assert missing.exit_code == 127
    assert 'exec failed: "nosuch": executable file not found in $PATH' in missing.stderr
    lost = _exec(cli, "web", "lost")
    assert lost.exit_code == 1
    assert "closed before the command ended" in lost.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["web"], "Missing argument"),
        (["web", "--"], "Missing argument"),
        (["-o", "json", "-i", "web", "sh"], "-o json"),
    ],
)
def test_bad_usage_sends_nothing(
    cli: Invoke, fake: FakeApi, opened: list[dict[str, Any]], args: list[str], message: str
) -> None:
    _web(cli, fake)
    result = _exec(cli, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert opened == []


def test_help_says_stdin_needs_i(cli: Invoke) -> None:
    result = cli("cell", "exec", "--help")
    assert result.exit_code == 0
    # Rich draws the options in a box: drop its borders and the wrapping.
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stdout).split())
    assert "Without -i stdin is not forwarded, even when piped" in text
    assert "-it web -- sh" in text
