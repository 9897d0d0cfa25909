"""The isolation policy of a tenant (set by the operator with the CLI) and a host that offers no
sandbox (its agent runs with `--no-sandbox`, as one without runsc): real server, agent, podman.

The policy is set on the deployment's `default` tenant and lifted again at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellplane.client import CellplaneError, Client
from cellplane.testing.harness import Deployment

from .conftest import Cells, unique, wait_for

pytestmark = pytest.mark.integration


def _cli(deployment: Deployment, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        CELLPLANE_SERVER=deployment.url,
        CELLPLANE_TOKEN=deployment.admin_token,
        CELLPLANE_CONFIG=str(tmp_path / "no-config.toml"),
        NO_COLOR="1",
        COLUMNS="200",
    )
    return subprocess.run(
        [sys.executable, "-m", "cellplane", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def policy_lifted(client: Client) -> Iterator[None]:
    try:
        yield
    finally:
        client.update_tenant("default", isolation=None)


def test_a_tenant_policy_refuses_standard_cells_and_reports_existing_ones(
    deployment: Deployment, client: Client, cells: Cells, tmp_path: Path, policy_lifted: None
) -> None:
    before = cells.run("before", isolation="standard")

    done = _cli(deployment, tmp_path, "tenant", "update", "default", "--isolation", "sandbox")
    assert done.returncode == 0, done.stderr
    assert "sandbox or stronger" in done.stdout, done.stdout
    assert before["name"] in done.stdout and "not changed" in done.stdout, done.stdout
    shown = _cli(deployment, tmp_path, "tenant", "show", "default")
    assert "sandbox or stronger (policy)" in shown.stdout, shown.stdout

    # The existing cell was reported, not changed.
    assert client.get_cell(before["id"])["state"] == "RUNNING"
    assert client.get_cell(before["id"])["isolation"] == "standard"

    with pytest.raises(CellplaneError) as refused:
        client.create_cell("default", unique("std"), "busybox", isolation="standard")
    assert refused.value.status == 403
    assert "tenant default requires isolation class sandbox" in str(refused.value)

    # Without a class, a cell gets the policy's; the CLI refuses the same way, naming it.
    implied = cells.run("implied", isolation=None)
    assert implied["isolation"] == "sandbox"
    cli = _cli(
        deployment,
        tmp_path,
        "cell",
        "run",
        unique("cli"),
        "-i",
        "busybox",
        "--isolation",
        "standard",
        "--",
        "true",
    )
    assert cli.returncode != 0 and "tenant default requires" in cli.stderr, cli.stderr


def test_a_host_without_the_sandbox_is_never_chosen(
    deployment: Deployment, client: Client, cells: Cells
) -> None:
    """The agent restarted with --no-sandbox (as on a host without runsc): sandboxed cells are
    refused, saying why; standard ones still run there."""
    deployment.stop_agent()
    deployment.agent_args = ["--no-sandbox"]
    try:
        deployment.start_agent()
        # Its new registration says what it offers now.
        wait_for(lambda: _offered(client) == ["standard"], 30.0, "the host to offer standard only")
        with pytest.raises(CellplaneError) as refused:
            client.create_cell("default", unique("gv"), "busybox", isolation="sandbox")
        assert refused.value.status == 409, refused.value
        assert "no host offers isolation class sandbox" in str(refused.value)
        assert cells.run("std-only", isolation="standard")["state"] == "RUNNING"
    finally:
        cells.cleanup()
        deployment.stop_agent()
        deployment.agent_args = []
        deployment.start_agent()
        wait_for(lambda: "sandbox" in _offered(client), 30.0, "the sandbox offered again")


def _offered(client: Client) -> list[str]:
    (host,) = client.iter_hosts()
    return list(host["isolation"])


def test_a_sandboxed_service_runs_its_cells_on_gvisor_and_a_policy_refuses_a_weaker_one(
    deployment: Deployment, client: Client, cells: Cells, tmp_path: Path, policy_lifted: None
) -> None:
    name = unique("gvsvc")
    made = _cli(
        deployment, tmp_path, "service", "create", name, "-i", "busybox", "-n", "2",
        "--cpu", "0.1", "--memory", "64M", "--isolation", "sandbox", "--", "sleep", "3600",
    )  # fmt: skip
    try:
        assert made.returncode == 0, made.stderr
        shown = client.get_service("default", name)
        assert shown["isolation"] == "sandbox" and shown["ready"] == 2, shown
        for row in shown["cells"]:
            assert client.get_cell(row["id"])["isolation"] == "sandbox"
            code, dmesg = cells.exec(row["id"], "dmesg")
            assert code == 0 and "Starting gVisor" in dmesg, dmesg

        client.update_tenant("default", isolation="sandbox")
        weak = _cli(
            deployment, tmp_path, "service", "create", unique("weak"), "-i", "busybox",
            "--isolation", "standard", "--", "sleep", "3600",
        )  # fmt: skip
        assert weak.returncode == 1, (weak.stdout, weak.stderr)
        assert "tenant default requires isolation class sandbox" in weak.stderr, weak.stderr
        assert "a standard service is refused" in weak.stderr, weak.stderr
    finally:
        gone = _cli(deployment, tmp_path, "service", "rm", name)
        assert gone.returncode == 0, gone.stderr
