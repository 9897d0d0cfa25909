"""A project's Docker-compatible endpoint whose containers run on dev hosts: the unmodified
docker CLI's `exec`, `run -i` (a hijacked attach) and `attach -it` reach the cell through the
server and the host's agent endpoint (pinned mutual TLS), as `logs` does; the server has no
agent of its own here, so every container is on a host reached over the underlay.
"""

from __future__ import annotations

import pytest
from tests.integration.dockerapi.conftest import DOCKER, Endpoint
from tests.integration.dockerapi.test_docker_stdin import COLS, ROWS, _pty_steps
from tests.integration.multihost.conftest import ThreeHosts

from cellplane.testing.waits import unique, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not on PATH"),
]


@pytest.fixture(scope="module")
def endpoint(three_hosts: ThreeHosts, tmp_path_factory: pytest.TempPathFactory) -> Endpoint:
    d = three_hosts.deployment
    return Endpoint(d, "default", d.admin_token, tmp_path_factory.mktemp("certs"))


def _host_of(setup: ThreeHosts, name: str) -> str:
    (cell,) = setup.client.list_cells("default", name=name)["items"]
    names = {r["id"]: n for n, r in setup.host_rows().items()}
    assert cell["host"] in names, (cell["host"], names)
    return names[cell["host"]]


def test_exec_attach_and_logs_of_a_container_on_a_dev_host(
    three_hosts: ThreeHosts, endpoint: Endpoint
) -> None:
    assert DOCKER is not None
    name = unique("dk")
    endpoint.ok(
        "run", "-dit", "--name", name, "-m", "16m", "busybox",
        "sh", "-c", "echo started-on-host; exec sh",
    )  # fmt: skip
    try:
        host = _host_of(three_hosts, name)
        wait_for(lambda: "started-on-host" in endpoint.ok("logs", name), 30, what="logs")

        # exec: output and exit code, then piped stdin to a process of the container
        p = endpoint.docker("exec", name, "sh", "-c", "hostname; exit 4")
        assert p.returncode == 4, (p.stdout, p.stderr, three_hosts.log(host))
        p = endpoint.docker(
            "exec", "-i", name, "sh", "-c", "tr a-z A-Z", stdin="through the agent\n", timeout=60
        )
        assert (p.returncode, p.stdout) == (0, "THROUGH THE AGENT\n"), (p.stderr, host)

        # exec -it under a terminal: the size the CLI sets (API 1.41: a resize right after
        # start, which comes while the session to the host's agent opens) reaches the TTY
        code, out = _pty_steps(
            endpoint, ["exec", "-it", name, "sh"], [("/ # ", b"stty size; exit 5\r")]
        )
        assert code == 5, out
        assert f"{ROWS} {COLS}" in out, out

        # attach to the main process (its TTY): what is typed runs there, and its exit ends it
        code, out = _pty_steps(
            endpoint,
            ["attach", name],
            [("", b"echo attached-$((40+2))\r"), ("attached-42", b"exit 9\r")],
        )
        assert "attached-42" in out, (out, three_hosts.log(host))
        assert endpoint.ok("wait", name).strip() == "9"
    finally:
        endpoint.docker("rm", "-f", name)


def test_run_i_pipes_stdin_to_a_container_on_a_dev_host(
    three_hosts: ThreeHosts, endpoint: Endpoint
) -> None:
    assert DOCKER is not None
    name = unique("dki")
    p = endpoint.docker(
        "run", "-i", "--name", name, "-m", "16m", "busybox",
        "sh", "-c", "cat; echo done; exit 3",
        stdin="one\ntwo\n", timeout=90,
    )  # fmt: skip
    try:
        assert p.returncode == 3, (p.stdout, p.stderr)
        assert p.stdout == "one\ntwo\ndone\n"
        _host_of(three_hosts, name)  # it ran on a dev host
    finally:
        endpoint.docker("rm", "-f", name)
