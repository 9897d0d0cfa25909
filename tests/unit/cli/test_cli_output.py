"""Output for people and scripts, against the real in-process server: errors said once (and as
JSON on stderr with `-o json`), piped tables never cut, `-q` ids, `-o yaml|wide`, names beside
ids, `task ls`, and what `host show` says about capacity."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import yaml
from cellplane_platform_support import Platform, event
from typer.testing import CliRunner, Result

from cellplane.cli import output
from cellplane.cli.main import app
from cellplane.client import Client

Invoke = Callable[..., Result]


@pytest.fixture
def real(plat: Platform, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    transport = plat.client._transport

    def factory() -> Client:
        return Client("http://testserver", plat.admin_token, transport=transport, retries=0)

    monkeypatch.setattr(output, "client_factory", factory)
    monkeypatch.delenv("CELLPLANE_PROJECT", raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args))

    return invoke


def _placed(plat: Platform, invoke: Invoke, name: str, *extra: str) -> str:
    r = invoke("cell", "run", name, "--image", "host", "-d", "-q", *extra, "--", "sleep", "1")
    assert r.exit_code == 0, r.output
    cid = r.stdout.strip()
    assert cid.startswith("cel-") and "\n" not in cid  # -q: the id alone
    plat.schedule()
    plat.report({"cell_id": cid, "state": "RUNNING", "events": [event("started")]})
    return cid


def test_a_422_is_said_once_in_plain_words(real: Invoke) -> None:
    r = real("cell", "run", "web", "--image", "host", "--cpu", "0.5", "--memory", "5x")
    assert r.exit_code == 2  # a bad size is a usage error before anything is sent
    r = real("cell", "run", "Web_1", "--image", "host")
    assert r.exit_code == 1
    assert "Invalid request (422)" in r.stderr
    assert r.stderr.count("name:") == 1, r.stderr  # detail and errors[] are not both printed
    assert "Value error" not in r.stderr and "body:" not in r.stderr


def test_with_o_json_an_error_is_the_problem_document_on_stderr(real: Invoke) -> None:
    r = real("cell", "show", "cel-nope", "-o", "json")
    assert r.exit_code == 1 and r.stdout == ""
    problem = json.loads(r.stderr)
    assert problem["status"] == 404 and problem["type"].endswith("/not-found")
    assert "cel-nope" in problem["detail"]
    r = real("cell", "run", "Web_1", "--image", "host", "-o", "yaml")
    assert r.exit_code == 1
    assert yaml.safe_load(r.stderr)["errors"][0]["field"] == "name"


def test_memory_alone_runs_and_a_cell_too_big_says_what_fits(real: Invoke, plat: Platform) -> None:
    r = real("cell", "run", "m", "--image", "host", "--memory", "1G", "-d", "-q")
    assert r.exit_code == 0, r.output
    cell = json.loads(real("cell", "show", "m", "-o", "json").stdout)
    assert (cell["cpu"], cell["memory_mb"]) == (1.0, 1024)  # MEDIUM: the nearest flavor
    r = real("cell", "run", "huge", "--image", "host", "--memory", "999999M")
    assert r.exit_code == 1
    text = " ".join(r.stderr.split())
    assert "999999 MB" in text and "4096 MB" in text  # what is asked, what the host has
    assert "both cpu and memory" not in text


def test_piped_tables_print_every_value_in_full(real: Invoke, plat: Platform) -> None:
    cid = _placed(plat, real, "a-cell-with-a-rather-long-name-for-a-narrow-terminal")
    r = real("cell", "ls")
    assert r.exit_code == 0
    header, row = r.stdout.splitlines()
    assert header.split("\t")[:3] == ["NAME", "ID", "STATE"]
    fields = row.split("\t")
    assert fields[0] == "a-cell-with-a-rather-long-name-for-a-narrow-terminal"
    assert fields[1] == cid and "…" not in r.stdout and "..." not in r.stdout
    assert fields[header.split("\t").index("HOST")] == "host-1"  # the host by name
    assert real("cell", "ls", "-q").stdout == f"{cid}\n"
    wide = real("cell", "ls", "-o", "wide").stdout.splitlines()
    assert wide[0].split("\t")[-2:] == ["HOST ID", "SIZE"]
    assert wide[1].split("\t")[-2] == plat.host_id
    assert yaml.safe_load(real("cell", "ls", "-o", "yaml").stdout)[0]["id"] == cid


def test_volumes_show_cells_and_hosts_by_name(real: Invoke, plat: Platform) -> None:
    assert real("volume", "create", "data", "-q").stdout.startswith("vol-")
    cid = _placed(plat, real, "db", "-v", "data:/data")
    table = real("volume", "ls").stdout.splitlines()
    columns = dict(zip(table[0].split("\t"), table[1].split("\t"), strict=True))
    assert columns["ATTACHED TO"] == "db" and "HOST ID" not in columns
    wide = real("volume", "ls", "-o", "wide").stdout.splitlines()
    columns = dict(zip(wide[0].split("\t"), wide[1].split("\t"), strict=True))
    assert columns["ATTACHED IDS"] == cid
    r = real("volume", "rm", "data")
    assert r.exit_code == 1
    text = " ".join(r.stderr.split())
    assert "attached to cell(s) 'db'" in text and cid not in text


def test_task_ls_and_where_task_ids_come_from(real: Invoke, plat: Platform) -> None:
    r = real("cell", "run", "web", "--image", "host", "-d", "--", "sleep", "1")
    assert r.exit_code == 0
    task_id = r.stdout.split()[1]
    assert task_id.startswith("tsk-")
    assert f"cellplane task watch {task_id}" in " ".join(r.stderr.split())
    listed = real("task", "ls").stdout.splitlines()
    assert listed[0].split("\t")[:4] == ["ID", "KIND", "TARGET", "STATE"]
    assert listed[1].split("\t")[:3] == [task_id, "CREATE_CELL", "web"]
    assert real("task", "ls", "-q").stdout == f"{task_id}\n"
    shown = real("task", "show", task_id)
    assert shown.exit_code == 0
    # The header is one line: what, to what (by name), the id and progress.
    assert f"create cell web  {task_id}  0%" in shown.stdout


def test_host_show_explains_overcommit_and_what_stopped_cells_reserve(
    real: Invoke, plat: Platform
) -> None:
    cid = _placed(plat, real, "web")
    plat.client.post(f"/v1/cells/{cid}/stop", json={}, headers=plat.admin)
    plat.report({"cell_id": cid, "state": "STOPPED", "exit_code": 0, "events": []})
    text = " ".join(real("host", "show", "host-1").stdout.split())
    assert "0 reserving capacity, 1 stopped or ended (reserving nothing)" in text
    assert "a stopped or ended cell reserves nothing" in text
    plat.register_host("node-2", cpu=32.0, cores=2, cpu_ratio=16.0)
    text = " ".join(real("host", "show", "node-2").stdout.split())
    assert "2 cores x16 overcommit = 32.0" in text
    wide = real("host", "ls", "-o", "wide").stdout
    assert "2 cores x16 overcommit = 32.0" in wide


def test_the_top_level_help_names_the_environment(real: Invoke) -> None:
    text = " ".join(real("--help").stdout.split())
    for variable in (
        "CELLPLANE_SERVER",
        "CELLPLANE_TOKEN",
        "CELLPLANE_CA_CERT",
        "CELLPLANE_PROJECT",
    ):
        assert variable in text
