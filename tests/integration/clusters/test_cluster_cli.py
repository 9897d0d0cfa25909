"""The `cellplane cluster` CLI against a real deployment: failure exit code, resume, config, export."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellplane.cli import output
from cellplane.cli.main import app
from cellplane.testing.harness import Deployment

from .conftest import Api, small_group

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(deployment: Deployment) -> Iterator[CliRunner]:
    old = output.client_factory
    output.client_factory = lambda: deployment.client(timeout=60)
    try:
        yield CliRunner()
    finally:
        output.client_factory = old


def test_cluster_cli_lifecycle(cli: CliRunner, api: Api, tmp_path: Path) -> None:
    marker = Path("/var/tmp") / f"cellplane-cli-{uuid.uuid4().hex[:8]}"
    spec = {
        "nodeGroups": [small_group("w", ["canary"], 2)],
        "configuration": {"canary": {"marker": {"path": str(marker)}}},
    }
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    try:
        r = cli.invoke(app, ["cluster", "create", "--name", "cc", "--specFile", str(spec_file)])
        assert r.exit_code == 1, r.output
        assert "PROVISION_ERROR" in r.output and "role canary" in r.output

        marker.write_text("ok\n")
        r = cli.invoke(app, ["cluster", "resume", "--name", "cc"])
        assert r.exit_code == 0, r.output
        assert "cluster cc running" in r.output

        r = cli.invoke(app, ["cluster", "show", "--name", "cc", "-o", "json"])
        view = json.loads(r.stdout)
        assert {n["state"] for n in view["nodes"]} == {"SERVICE_READY"}

        # Config update: re-rendered files and a rolling restart of every node.
        other = Path(str(marker) + "-2")
        other.write_text("ok\n")
        conf = tmp_path / "conf.json"
        conf.write_text(json.dumps({"configuration": {"canary": {"marker": {"path": str(other)}}}}))
        r = cli.invoke(app, ["cluster", "config", "--name", "cc", "--specFile", str(conf)])
        assert r.exit_code == 0, r.output
        cell = view["nodes"][0]["cell"]
        _code, out = api.sh(cell, "cat /etc/cellplane/roles/canary.sh")
        assert str(other) in out, out
        _code, out = api.sh(cell, "grep -c 'starting canary' /var/log/cellplane/canary.log")
        assert int(out.strip()) >= 2, out  # restarted by the config update

        r = cli.invoke(app, ["cluster", "export", "--name", "cc"])
        exported = json.loads(r.stdout)
        assert exported["configuration"]["canary"]["marker"]["path"] == str(other)
        assert exported["nodeGroups"][0]["instanceNum"] == 2

        r = cli.invoke(app, ["cluster", "list", "-o", "json"])
        assert any(c["name"] == "cc" for c in json.loads(r.stdout))

        r = cli.invoke(app, ["cluster", "delete", "--name", "cc"])
        assert r.exit_code == 0, r.output
        r = cli.invoke(app, ["cluster", "show", "--name", "cc"])
        assert r.exit_code == 1
    finally:
        for p in (marker, Path(str(marker) + "-2")):
            p.unlink(missing_ok=True)
