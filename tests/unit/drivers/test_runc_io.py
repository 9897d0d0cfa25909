"""`cellplane.drivers.runc_io` and `runc_loopback`: log reading and framing, exec results, and
the loopback-only network stand-in (pure or on a temporary directory)."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from cellplane.drivers import errors
from cellplane.drivers.base import NetworkSpec
from cellplane.drivers.runc_io import (
    check_log_options,
    docker_frames,
    exec_result,
    read_log,
    tail_offset,
)
from cellplane.drivers.runc_loopback import LoopbackNetworks


def test_tail_offset(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"one\ntwo\nthree\n")
    assert log.read_bytes()[tail_offset(log, 1) :] == b"three\n"
    assert log.read_bytes()[tail_offset(log, 2) :] == b"two\nthree\n"
    assert tail_offset(log, 10) == 0
    assert tail_offset(log, 0) == log.stat().st_size
    log.write_bytes(b"one\ntwo")  # a last line still being written counts as one
    assert log.read_bytes()[tail_offset(log, 1) :] == b"two"


def test_read_log_without_follow_and_with_a_stopped_container(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"a\nb\n")
    assert b"".join(read_log(log, None, False, lambda: True)) == b"a\nb\n"
    assert b"".join(read_log(log, 1, True, lambda: False)) == b"b\n"


def test_docker_frames_split_lines() -> None:
    frames = list(docker_frames(iter([b"hel", b"lo\nwor", b"ld"])))
    assert frames == [
        struct.pack(">BxxxL", 1, 6) + b"hello\n",
        struct.pack(">BxxxL", 1, 5) + b"world",
    ]


def test_log_options_without_times_are_refused_plainly() -> None:
    check_log_options(False, 0)
    with pytest.raises(errors.PermanentDriverError, match="timestamps"):
        check_log_options(True, 0)
    with pytest.raises(errors.PermanentDriverError, match="since"):
        check_log_options(False, 5)


def test_exec_result_names_a_missing_command() -> None:
    failed = subprocess.CompletedProcess(
        ["runc"],
        255,
        b'time="x" level=error msg="runc exec failed: unable to start container process: '
        b'exec: \\"nope\\": executable file not found in $PATH"\n',
    )
    result = exec_result(failed)
    assert result.exit_code == 127
    assert result.output == b'exec: "nope": executable file not found in $PATH\n'
    assert exec_result(subprocess.CompletedProcess(["runc"], 3, b"out")).exit_code == 3


def test_loopback_networks_remember_names_and_labels(tmp_path: Path) -> None:
    nets = LoopbackNetworks(tmp_path / "n")
    nets.ensure_network(NetworkSpec("a", labels={"p": "1"}))
    nets.ensure_network(NetworkSpec("b", labels={"p": "2"}))
    nets.ensure_network(NetworkSpec("a", labels={"p": "1"}))
    assert nets.list_networks({}) == ["a", "b"]
    assert LoopbackNetworks(tmp_path / "n").list_networks({"p": "2"}) == ["b"]
    nets.remove_network("a")
    nets.remove_network("gone")
    assert nets.list_networks({}) == ["b"]
    attached = nets.attach("id", "b", None, "c", [])
    assert (attached.netns_path, attached.address) == ("", "")
