"""The pure parts of exec on the Docker-compatible endpoint: the create body, Docker's frames,
the bounded instance registry, and what an exec's inspect reports."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from cellplane.agent.endpoint import AgentEndpoint
from cellplane.dockerapi.execs import ExecInstance, Execs, docker_frame, exec_fields
from cellplane.dockerapi.mapping import Refused
from cellplane.drivers.base import ContainerSpec
from cellplane.drivers.fake import FakeDriver
from cellplane.services import agent_proxy
from cellplane.wire import exec as wire


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
        "user": "",
        "env": [],
        "workdir": "",
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
        ({"User": "no body"}, 400, "exec -u/--user 'no body'"),
        ({"User": 7}, 400, "exec -u/--user"),
        ({"Env": "A=1"}, 400, "exec -e/--env: Env must be a list"),
        ({"Env": ["=1"]}, 400, "invalid environment variable: '=1'"),
        ({"WorkingDir": "tmp"}, 400, "exec -w/--workdir 'tmp': the path must be absolute"),
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


def test_user_env_and_workdir_are_kept_for_the_agent() -> None:
    got = exec_fields(cli_body(User="1000:100", Env=["A=1", "B=x=y", "UNSET"], WorkingDir="/srv"))
    assert (got["user"], got["env"], got["workdir"]) == ("1000:100", ["A=1", "B=x=y"], "/srv")
    inst = ExecInstance(id="e", cell_id="c", container="x", **got)
    assert inst.view()["ProcessConfig"]["user"] == "1000:100"


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


def test_a_resize_that_comes_while_the_session_opens_is_kept_for_it() -> None:
    """The CLI (API 1.41: no ConsoleSize) resizes right after it sent start; opening a session
    on another host's agent takes longer, and start sends the kept size once it is open."""
    execs = Execs()
    inst = instance(1, running=True)
    inst.tty, inst.started = True, True  # started, its session not open yet
    execs.add(inst)
    request = make_mocked_request(
        "POST", f"/exec/{inst.id}/resize?h=33&w=101", match_info={"id": inst.id}
    )
    assert asyncio.run(execs.resize(request)).status == 200
    assert inst.size == (101, 33)


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


def _agent_exec(options: dict[str, Any]) -> tuple[FakeDriver, list[tuple[int, bytes]]]:
    """An exec with `options` through `agent_proxy.open_exec` and a real agent endpoint."""
    driver = FakeDriver(images=["host"])
    driver.start(driver.create(ContainerSpec(name="cp-cel-1", image="host")))
    agent = AgentEndpoint(driver, "s3cret")
    agent.start()

    async def run() -> list[tuple[int, bytes]]:
        target = (agent.url, "s3cret", "cel-1")
        session = await agent_proxy.open_exec(
            target, ["id"], stdin=False, tty=False, size=None, **options
        )
        try:
            return [frame async for frame in session.frames()]
        finally:
            await session.close()

    try:
        return driver, asyncio.run(run())
    finally:
        agent.stop()


def test_the_agent_runs_the_exec_as_the_user_in_the_dir_with_the_env() -> None:
    driver, frames = _agent_exec({"user": "nobody", "env": ["A=1"], "workdir": "/tmp"})
    assert frames[-1][0] == wire.STATUS
    given = {"user": "nobody", "env": ["A=1"], "workdir": "/tmp"}
    assert driver.called("exec_open") == [("cp-cel-1", ["id"], False, False, None, given)]
    plain, _ = _agent_exec({})
    assert plain.called("exec_open") == [("cp-cel-1", ["id"], False, False, None)]


def test_the_agent_refuses_an_env_that_is_not_key_value_pairs() -> None:
    with pytest.raises(agent_proxy.AgentRefused) as err:
        _agent_exec({"env": ["NOEQUALS"]})
    assert err.value.agent_status == 400
    assert 'env must be a list of "KEY=VALUE" strings' in str(err.value)
