"""The pure parts of exec on the Docker-compatible endpoint: the create body, Docker's frames,
the bounded instance registry, and what an exec's inspect reports."""

from __future__ import annotations

from typing import Any

import pytest

from cellplane.dockerapi.execs import ExecInstance, Execs, docker_frame, exec_fields
from cellplane.dockerapi.mapping import Refused


def cli_body(**over: Any) -> dict[str, Any]:
    """What the docker 28 CLI sends for `docker exec -it box sh`."""
    b: dict[str, Any] = {
        "User": "",
        "Privileged": False,
        "Tty": True,
        "ConsoleSize": [24, 80],
        "AttachStdin": True,
        "AttachStderr": True,
        "AttachStdout": True,
        "Detach": False,
        "DetachKeys": "",
        "Env": None,
        "WorkingDir": "",
        "Cmd": ["sh"],
    }
    b.update(over)
    return b


def instance(n: int, *, running: bool = False) -> ExecInstance:
    return ExecInstance(
        id=f"{n:064x}",
        cell_id="cel-1",
        container="c" * 64,
        command=["sh", "-c", "exit 3"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        running=running,
    )


def test_the_clis_exec_body_becomes_the_instances_fields() -> None:
    assert exec_fields(cli_body()) == {
        "command": ["sh"],
        "size": (80, 24),  # ConsoleSize is [height, width]; the wire's size is (cols, rows)
        "stdin": True,
        "stdout": True,
        "stderr": True,
        "tty": True,
    }
    plain = exec_fields({"Cmd": ["true"], "AttachStdout": True})
    assert (plain["stdin"], plain["tty"], plain["stderr"], plain["size"]) == (
        False,
        False,
        False,
        None,
    )


@pytest.mark.parametrize(
    ("over", "status", "words"),
    [
        ({"Privileged": True}, 403, "exec --privileged is not allowed"),
        ({"User": "nobody"}, 400, "exec -u/--user is not supported"),
        ({"Env": ["A=1"]}, 400, "exec -e/--env is not supported"),
        ({"WorkingDir": "/tmp"}, 400, "exec -w/--workdir is not supported"),
        ({"DetachKeys": "ctrl-x"}, 400, "--detach-keys"),
        ({"Cmd": []}, 400, "No exec command specified"),
        ({"Cmd": None}, 400, "No exec command specified"),
        ({"Cmd": ["sh", 3]}, 400, "Cmd must be a list"),
        ({"Tty": "yes"}, 400, "Tty must be true or false"),
    ],
)
def test_what_exec_cannot_do_is_refused_naming_the_option(
    over: dict[str, Any], status: int, words: str
) -> None:
    with pytest.raises(Refused) as err:
        exec_fields(cli_body(**over))
    assert err.value.status == status
    assert words in err.value.message


def test_docker_frames_carry_the_stream_and_the_length() -> None:
    assert docker_frame(1, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert docker_frame(2, b"x" * 300)[:8] == b"\x02\x00\x00\x00\x00\x00\x01\x2c"


def test_the_registry_drops_the_oldest_idle_instances_past_its_limit() -> None:
    execs = Execs(limit=3)
    execs.add(instance(1, running=True))
    execs.add(instance(2))
    execs.add(instance(3))
    execs.add(instance(4))
    assert list(execs.instances) == [f"{n:064x}" for n in (1, 3, 4)]
    execs.get(f"{1:064x}")
    with pytest.raises(Refused) as err:
        execs.get(f"{2:064x}")
    assert err.value.status == 404 and "No such exec instance" in err.value.message


def test_the_registry_refuses_when_every_instance_is_running() -> None:
    execs = Execs(limit=2)
    execs.add(instance(1, running=True))
    execs.add(instance(2, running=True))
    with pytest.raises(Refused) as err:
        execs.add(instance(3))
    assert err.value.status == 409
    assert len(execs.instances) == 2


def test_inspect_reports_the_process_and_the_exit_code() -> None:
    inst = instance(7)
    inst.exit_code = 3
    view = inst.view()
    assert view["ExitCode"] == 3 and view["Running"] is False
    assert view["ProcessConfig"]["entrypoint"] == "sh"
    assert view["ProcessConfig"]["arguments"] == ["-c", "exit 3"]
    assert view["ContainerID"] == "c" * 64
