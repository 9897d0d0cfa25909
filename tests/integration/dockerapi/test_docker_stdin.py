"""Standard input and TTYs of containers' main processes on a project's Docker-compatible
endpoint: `docker run -i` with piped input, `docker run -it` and `docker attach` under a real
pseudo-terminal, driven by the unmodified docker CLI against a real deployment (server + agent +
podman).
"""

from __future__ import annotations

import subprocess

import docker
import pytest

from .conftest import DOCKER, SLEEP, Endpoint, unique
from .test_docker_exec import COLS, ROWS, _under_pty

pytestmark = pytest.mark.integration

CAT = ("sh", "-c", "cat; echo done; exit 3")


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


def test_run_it_types_into_a_shell_with_the_clients_terminal(ep_a: Endpoint) -> None:
    name = unique("tty")
    try:
        code, out = _under_pty(
            ep_a,
            *("run", "-it", "--name", name, "-m", "16m", "busybox", "sh"),
            send=b"echo $((6*7)); stty size\rexit 6\r",
        )
        assert code == 6, out
        assert "42" in out
        assert f"{ROWS} {COLS}" in out  # the CLI's resize reached the container's TTY
        config = ep_a.py().api.inspect_container(name)["Config"]
        assert (config["Tty"], config["OpenStdin"], config["StdinOnce"]) == (True, True, True)
    finally:
        ep_a.docker("rm", "-f", name)


def test_attach_to_a_running_container_and_detach_with_ctrl_p_ctrl_q(ep_a: Endpoint) -> None:
    name = unique("att")
    ep_a.ok("run", "-dit", "--name", name, "-m", "16m", "busybox", "sh")
    try:
        code, out = _under_pty(ep_a, "attach", name, send=b"echo attached-$((2+3))\r\x10\x11")
        assert "attached-5" in out, out
        assert code == 0, out
        assert ep_a.ok("inspect", "-f", "{{.State.Running}}", name).strip() == "true"
        # attached again, the shell is the same one: its exit ends the container
        code, out = _under_pty(ep_a, "attach", name, send=b"exit 7\r")
        assert ep_a.ok("wait", name).strip() == "7"
    finally:
        ep_a.docker("rm", "-f", name)


def test_resizing_a_container_without_a_tty_is_refused(ep_a: Endpoint) -> None:
    name = unique("plain")
    ep_a.ok("run", "-d", "--name", name, "-m", "16m", "busybox", *SLEEP)
    try:
        with pytest.raises(docker.errors.APIError, match="has no TTY") as err:
            ep_a.py().api.resize(name, height=10, width=10)
        assert err.value.status_code == 409
    finally:
        ep_a.docker("rm", "-f", name)
