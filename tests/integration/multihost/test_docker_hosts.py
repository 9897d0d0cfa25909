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


def _run_on(setup: ThreeHosts, endpoint: Endpoint, host: str, *args: str) -> None:
    """`docker run -d args` placed on dev host `host` (the others in maintenance meanwhile)."""
    others = [r["id"] for n, r in setup.host_rows().items() if n != host]
    for hid in others:
        setup.client.set_maintenance(hid, True)
    try:
        endpoint.ok("run", "-d", *args)
    finally:
        for hid in others:
            setup.client.set_maintenance(hid, False)


def test_a_network_alias_resolves_on_the_other_hosts_of_its_network(
    three_hosts: ThreeHosts, endpoint: Endpoint
) -> None:
    """Compose reaches a service by its name, an alias of its containers: on a user network,
    a container on one host reaches one on another host by its `--network-alias` and by its
    short id, as it does by its name."""
    net, server, client = unique("aln"), unique("als"), unique("alc")
    endpoint.ok("network", "create", net)
    try:
        page = f"via-alias-{server}"
        serve = f"mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 8080 -h /www"
        _run_on(
            three_hosts, endpoint, "h1",
            "--name", server, "--network", net, "--network-alias", "backend",
            "-m", "16m", "busybox", "sh", "-c", serve,
        )  # fmt: skip
        _run_on(
            three_hosts, endpoint, "h2",
            "--name", client, "--network", net, "-m", "16m", "busybox", "sleep", "3600",
        )  # fmt: skip
        assert (_host_of(three_hosts, server), _host_of(three_hosts, client)) == ("h1", "h2")
        short_id = endpoint.ok("inspect", "-f", "{{.Id}}", server).strip()[:12]
        for target in ("backend", short_id, server):
            got: list[str] = []

            def answered(target: str = target, got: list[str] = got) -> bool:
                request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
                p = endpoint.docker(
                    "exec", client, "sh", "-c", f"{request} | nc -w 2 {target} 8080 2>&1"
                )
                got[:] = [p.stdout]
                return page in p.stdout

            try:
                wait_for(answered, 60, what=f"{target} from h2")
            except AssertionError as e:
                logs = "\n".join(f"--- {h}:\n{three_hosts.log(h)[-1500:]}" for h in ("h1", "h2"))
                raise AssertionError(f"{e}; last answer {got!r}\n{logs}") from None
    finally:
        endpoint.docker("rm", "-f", server, client)
        endpoint.docker("network", "rm", net)
