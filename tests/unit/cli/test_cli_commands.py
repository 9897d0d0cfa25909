"""The CLI end to end against the in-memory API: arguments, requests, output, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cellplane_fake_api import FakeApi
from typer.testing import CliRunner, Result

from cellplane.cli import output
from cellplane.cli.main import app

Invoke = Callable[..., Result]


def _run_web(cli: Invoke, *extra: str) -> str:
    result = cli("cell", "run", "web", "--image", "busybox", "--detach", *extra)
    assert result.exit_code == 0, result.output
    return result.stdout


def _cell_id(fake: FakeApi, name: str) -> str:
    return next(str(c["id"]) for c in fake.cells.values() if c["name"] == name)


def test_run_translates_every_flag_into_the_create_body(cli: Invoke, fake: FakeApi) -> None:
    result = cli(
        "cell", "run", "web", "--image", "busybox",
        "--cpu", "0.5", "--memory", "1G",
        "-e", "A=1=2", "--env", "B=x",
        "-l", "app=web",
        "-p", "8080:80/udp", "-p", "9000:90",
        "-v", "data:/data:ro",
        "--restart", "on-failure:3",
        "--", "sh", "-c", "sleep 1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    post = fake.requests_to("POST", "/v1/projects/default/cells")[0]
    assert "Idempotency-Key" in post.headers
    body = json.loads(fake.bodies[fake.requests.index(post)])
    assert body == {
        "name": "web",
        "image": "busybox",
        "cpu": 0.5,
        "memory_mb": 1024,
        "command": ["sh", "-c", "sleep 1"],
        "env": {"A": "1=2", "B": "x"},
        "labels": {"app": "web"},
        "ports": [
            {"container_port": 80, "host_port": 8080, "protocol": "udp"},
            {"container_port": 90, "host_port": 9000, "protocol": "tcp"},
        ],
        "volumes": [{"volume": "data", "path": "/data", "read_only": True}],
        "restart": {"policy": "on-failure", "max_retries": 3},
        "start": True,
    }
    # It waited on the task's event stream, then showed the running cell.
    assert any(r.url.path.endswith("/events") for r in fake.requests)
    assert "running at 10.89.0.5" in result.stdout
    assert "RUNNING" in result.stderr  # the live step display


def test_run_sends_the_hardening_opt_ins(cli: Invoke, fake: FakeApi) -> None:
    _run_web(cli, "--read-only", "--pids-limit", "64")
    post = fake.requests_to("POST", "/v1/projects/default/cells")[0]
    body = json.loads(fake.bodies[fake.requests.index(post)])
    assert body["read_only"] is True and body["pids_limit"] == 64


def test_run_json_prints_the_cell(cli: Invoke, fake: FakeApi) -> None:
    result = cli("cell", "run", "web", "--image", "busybox", "--flavor", "SMALL", "-o", "json")
    assert result.exit_code == 0, result.output
    cell = json.loads(result.stdout)
    assert cell == fake.cells[cell["id"]]
    assert cell["flavor"] == "SMALL"


def test_run_detach_prints_the_task_without_waiting(cli: Invoke, fake: FakeApi) -> None:
    result = cli("cell", "run", "web", "--image", "busybox", "-d", "-o", "json")
    assert result.exit_code == 0, result.output
    task = json.loads(result.stdout)
    assert task["kind"] == "CREATE_CELL" and task["state"] == "QUEUED"
    assert not any(r.url.path.startswith("/v1/tasks") for r in fake.requests)


def test_run_exits_1_when_the_task_fails(cli: Invoke) -> None:
    result = cli("cell", "run", "web", "--image", "missing")
    assert result.exit_code == 1
    assert "image not found" in result.stderr
    assert "Error" in result.stderr


def test_run_sends_placement_and_affinity_terms(cli: Invoke, fake: FakeApi) -> None:
    _run_web(
        cli,
        "--placement", "binpack",
        "--affinity", "app=db",
        "--anti-affinity", "app=web,tier=front",
        "--soft",
    )  # fmt: skip
    post = fake.requests_to("POST", "/v1/projects/default/cells")[0]
    body = json.loads(fake.bodies[fake.requests.index(post)])
    assert body["placement"] == "binpack"
    assert body["affinity"] == [
        {"selector": {"app": "db"}, "anti": False, "soft": True},
        {"selector": {"app": "web", "tier": "front"}, "anti": True, "soft": True},
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["--placement", "pack"],
        ["--affinity", "app"],
        ["--anti-affinity", "=web"],
        ["--soft"],
        ["--flavor", "SMALL", "--cpu", "1"],
        ["-p", "80"],
        ["-v", "data:relative"],
        ["--restart", "sometimes"],
        ["--memory", "lots"],
        ["-e", "NOEQUALS"],
        ["--cpu", "0"],
        ["--pids-limit", "8"],
        ["--pids-limit", "many"],
    ],
)
def test_run_usage_errors_exit_2_and_send_nothing(
    cli: Invoke, fake: FakeApi, args: list[str]
) -> None:
    result = cli("cell", "run", "web", "--image", "busybox", *args)
    assert result.exit_code == 2, result.output
    assert fake.requests == []


def test_run_api_error_prints_title_and_detail_and_exits_1(cli: Invoke) -> None:
    _run_web(cli)
    result = cli("cell", "run", "web", "--image", "busybox")
    assert result.exit_code == 1
    assert "Conflict (409)" in result.stderr
    assert "a cell named web exists" in result.stderr
    assert result.stdout == ""


def test_validation_errors_list_their_fields(cli: Invoke) -> None:
    result = cli("cell", "run", "Bad_Name", "--image", "busybox")
    assert result.exit_code == 1
    assert "Invalid request (422)" in result.stderr
    assert "name: must be a DNS label" in result.stderr


def test_ls_json_and_label_filter(cli: Invoke, fake: FakeApi) -> None:
    _run_web(cli, "-l", "app=web")
    cli("cell", "run", "db", "--image", "busybox", "-d", "-l", "app=db")
    cli("cell", "run", "db2", "--image", "busybox", "-d", "-l", "app=db")
    result = cli("cell", "ls", "-o", "json")
    assert [c["name"] for c in json.loads(result.stdout)] == ["web", "db", "db2"]
    result = cli("cell", "ls", "--label", "app=db", "-o", "json")
    assert [c["name"] for c in json.loads(result.stdout)] == ["db", "db2"]
    assert fake.requests[-1].url.params.get_list("label") == ["app=db"]
    table = cli("cell", "ls")
    assert table.exit_code == 0
    assert "web" in table.stdout and "RUNNING" in table.stdout


def test_show_resolves_a_name_through_the_list(cli: Invoke, fake: FakeApi) -> None:
    _run_web(cli)
    cell_id = _cell_id(fake, "web")
    fake.requests.clear()
    result = cli("cell", "show", "web", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == cell_id
    assert fake.requests[0].url.path == "/v1/projects/default/cells"
    assert fake.requests[0].url.params["name"] == "web"
    assert fake.requests[-1].url.path == f"/v1/cells/{cell_id}"


def test_show_takes_an_id_without_a_lookup(cli: Invoke, fake: FakeApi) -> None:
    _run_web(cli)
    cell_id = _cell_id(fake, "web")
    fake.requests.clear()
    result = cli("cell", "show", cell_id)
    assert result.exit_code == 0, result.output
    assert [r.url.path for r in fake.requests] == [f"/v1/cells/{cell_id}"]
    assert "10.89.0.5" in result.stdout


def test_unknown_cell_exits_1(cli: Invoke) -> None:
    result = cli("cell", "show", "ghost")
    assert result.exit_code == 1
    assert "no cell named 'ghost' in project 'default'" in result.stderr


def test_project_option_scopes_the_lookup(cli: Invoke, fake: FakeApi) -> None:
    result = cli("cell", "show", "web", "--project", "other")
    assert result.exit_code == 1
    assert fake.requests[-1].url.path == "/v1/projects/other/cells"


def test_logs_tail(cli: Invoke, fake: FakeApi) -> None:
    _run_web(cli)
    result = cli("cell", "logs", "web", "--tail", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout == "line 4\nline 5\n"
    assert fake.requests[-1].url.params["tail"] == "2"


def test_exec_json_collects_the_output_and_exits_with_the_command_code(
    cli: Invoke, fake: FakeApi
) -> None:
    _run_web(cli)
    ok = cli("cell", "exec", "-o", "json", "web", "--", "echo", "hi")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout) == {"exit_code": 0, "output": "echo hi\n"}
    failed = cli("cell", "exec", "-o", "json", "web", "fail", "-x")
    assert failed.exit_code == 7, failed.output
    assert json.loads(fake.bodies[-1]) == {"command": ["fail", "-x"]}


def test_stop_start_restart_rm_wait_for_their_tasks(cli: Invoke, fake: FakeApi) -> None:
    _run_web(cli)
    cell_id = _cell_id(fake, "web")
    stop = cli("cell", "stop", "web", "--timeout", "5")
    assert stop.exit_code == 0, stop.output
    assert json.loads(fake.bodies[fake.requests.index(fake.requests_to(
        "POST", f"/v1/cells/{cell_id}/stop")[0])]) == {"timeout": 5}  # fmt: skip
    assert "stopped" in stop.stdout
    assert cli("cell", "start", "web").exit_code == 0
    assert cli("cell", "restart", "web").exit_code == 0
    rm = cli("cell", "rm", "web")
    assert rm.exit_code == 0, rm.output
    assert f"deleted {cell_id}" in rm.stdout
    assert fake.cells == {}
    waited = [r.url.path for r in fake.requests if r.url.path.endswith("/events")]
    assert len(waited) == 4


def test_volume_create_ls_rm(cli: Invoke, fake: FakeApi) -> None:
    created = cli("volume", "create", "data", "--size", "5", "-l", "team=blue", "-o", "json")
    assert created.exit_code == 0, created.output
    assert json.loads(fake.bodies[-1])["labels"] == {"team": "blue"}
    volume = json.loads(created.stdout)
    assert volume["size_gb"] == 5
    listed = cli("volume", "ls", "-o", "json")
    assert json.loads(listed.stdout) == [volume]
    fake.volumes[volume["id"]]["attached_to"] = ["cel-1"]
    busy = cli("volume", "rm", "data")
    assert busy.exit_code == 1
    assert "Volume in use (409)" in busy.stderr and "attached to cel-1" in busy.stderr
    fake.volumes[volume["id"]]["attached_to"] = []
    assert cli("volume", "rm", "data").exit_code == 0
    assert fake.volumes == {}


def test_image_import_ls_rm(cli: Invoke, fake: FakeApi, tmp_path: Path) -> None:
    tarball = tmp_path / "app.tar"
    tarball.write_bytes(b"x" * 3000)
    result = cli("image", "import", str(tarball), "--name", "app")
    assert result.exit_code == 0, result.output
    assert "image app" in result.stdout and "2.9 KB" in result.stdout
    assert fake.bodies[-1] == b"x" * 3000
    listed = cli("image", "ls", "-o", "json")
    assert [i["name"] for i in json.loads(listed.stdout)] == ["app"]
    assert cli("image", "rm", "app").exit_code == 0
    assert fake.images == {}
    missing = cli("image", "import", str(tmp_path / "nope.tar"), "--name", "x")
    assert missing.exit_code == 2


def test_flavor_and_project_commands(cli: Invoke, fake: FakeApi) -> None:
    flavors = cli("flavor", "ls")
    assert flavors.exit_code == 0
    assert "SMALL" in flavors.stdout and "2048 MB" in flavors.stdout
    assert cli("project", "create", "team").exit_code == 0
    projects = json.loads(cli("project", "ls", "-o", "json").stdout)
    assert [p["name"] for p in projects] == ["default", "team"]
    again = cli("project", "create", "team")
    assert again.exit_code == 1 and "Conflict" in again.stderr
    assert cli("cell", "run", "job", "--image", "busybox", "-d", "--project", "team").exit_code == 0
    refused = cli("project", "rm", "team")
    assert refused.exit_code == 1 and "still has cells ['job']" in refused.stderr
    fake.cells.clear()
    removed = cli("project", "rm", "team")
    assert removed.exit_code == 0 and "project team deleted" in removed.stdout
    assert [r.method for r in fake.requests_to("DELETE", "/v1/projects/team")] == ["DELETE"] * 2
    assert list(fake.projects) == ["default"]
    missing = cli("project", "rm", "team")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr


def test_host_ls_and_maintenance_by_name(cli: Invoke, fake: FakeApi) -> None:
    listed = cli("host", "ls")
    assert listed.exit_code == 0
    assert "node-a" in listed.stdout and "1/2" in listed.stdout
    result = cli("host", "maintenance", "node-b", "on")
    assert result.exit_code == 0, result.output
    assert fake.hosts["hst-2"]["state"] == "MAINTENANCE"
    assert cli("host", "maintenance", "hst-2", "off").exit_code == 0
    assert fake.hosts["hst-2"]["state"] == "READY"
    assert cli("host", "maintenance", "node-b", "maybe").exit_code == 2
    assert cli("host", "maintenance", "node-z", "on").exit_code == 1


def test_task_show_and_watch(cli: Invoke, fake: FakeApi) -> None:
    good = json.loads(_run_web(cli, "-o", "json"))
    bad = json.loads(cli("cell", "run", "db", "--image", "missing", "-d", "-o", "json").stdout)
    shown = cli("task", "show", good["id"], "-o", "json")
    assert json.loads(shown.stdout)["state"] == "COMPLETED"
    watched = cli("task", "watch", good["id"])
    assert watched.exit_code == 0
    assert "PREPARE_IMAGE" in watched.stderr
    failed = cli("task", "watch", bad["id"])
    assert failed.exit_code == 1
    assert "image not found" in failed.stderr
    assert cli("task", "show", "tsk-404").exit_code == 1


def test_not_configured_is_a_clean_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CELLPLANE_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.delenv("CELLPLANE_SERVER", raising=False)
    monkeypatch.setattr(output, "client_factory", output._default_client)
    result = CliRunner().invoke(app, ["flavor", "ls"])
    assert result.exit_code == 1
    assert "Not configured" in result.stderr
    assert "Traceback" not in result.output


def test_bad_token_is_reported(cli: Invoke, fake: FakeApi) -> None:
    fake.token = "rotated"
    result = cli("cell", "ls")
    assert result.exit_code == 1
    assert "Unauthorized (401)" in result.stderr


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["--version"]).stdout.startswith("cellplane ")
    assert runner.invoke(app, ["cell", "run", "--help"]).exit_code == 0
    assert runner.invoke(app, ["cell", "bogus"]).exit_code == 2


def test_cell_move_sends_the_host_and_shows_the_cell(cli: Invoke, fake: FakeApi) -> None:
    _run_web(cli)
    cid = _cell_id(fake, "web")
    result = cli("cell", "move", "web", "--to", "node-b")
    assert result.exit_code == 0, result.output
    post = fake.requests_to("POST", f"/v1/cells/{cid}/move")[0]
    assert json.loads(fake.bodies[fake.requests.index(post)]) == {"host": "node-b"}
    assert "cell web" in result.stdout
    missing = cli("cell", "move", "web", "--to", "node-z")
    assert missing.exit_code == 1 and "host 'node-z' does not exist" in missing.stderr


def test_host_drain_follows_the_task_and_reports(cli: Invoke, fake: FakeApi) -> None:
    result = cli("host", "drain", "node-a")
    assert result.exit_code == 0, result.output
    assert fake.requests_to("POST", "/v1/hosts/hst-1/drain")
    assert "host node-a drained" in result.stdout
    assert fake.hosts["hst-1"]["state"] == "MAINTENANCE"
    detached = cli("host", "drain", "node-b", "-d", "-o", "json")
    assert detached.exit_code == 0, detached.output
    assert json.loads(detached.stdout)["kind"] == "DRAIN_HOST"


def test_network_create_ls_rm_and_a_cell_on_one(cli: Invoke, fake: FakeApi) -> None:
    created = cli("network", "create", "back", "--project", "p1")
    assert created.exit_code == 0, created.output
    assert "network back" in created.stdout and "VXLAN id 4097" in created.stdout
    assert fake.requests_to("POST", "/v1/projects/p1/networks")
    assert "labels" not in json.loads(fake.bodies[-1])  # none given: none sent
    listed = cli("network", "ls", "--project", "p1", "-o", "json")
    assert [n["name"] for n in json.loads(listed.stdout)] == ["back"]
    assert cli("network", "create", "back", "--project", "p1").exit_code != 0  # taken: 409
    labelled = cli("network", "create", "front", "-l", "team=blue", "--label", "tier=web")
    assert labelled.exit_code == 0, labelled.output
    assert json.loads(fake.bodies[-1])["labels"] == {"team": "blue", "tier": "web"}
    bad = cli("network", "create", "side", "--label", "novalue")
    assert bad.exit_code == 2 and "--label" in bad.output  # a usage error; nothing sent
    assert "side" not in fake.networks
    assert cli("network", "rm", "front").exit_code == 0
    fake.networks["back"]["cells"] = 1
    busy = cli("network", "rm", "back", "--project", "p1")
    assert busy.exit_code != 0 and "used by cells" in busy.output
    fake.networks["back"]["cells"] = 0
    assert cli("network", "rm", "back", "--project", "p1").exit_code == 0
    assert fake.networks == {}
    _run_web(cli, "--network", "back")
    post = fake.requests_to("POST", "/v1/projects/default/cells")[0]
    assert json.loads(fake.bodies[fake.requests.index(post)])["network"] == "back"


def test_network_connect_and_disconnect_a_cell_by_name(cli: Invoke, fake: FakeApi) -> None:
    _run_web(cli)
    cell_id = _cell_id(fake, "web")
    joined = cli("network", "connect", "back", "web")
    assert joined.exit_code == 0, joined.output
    assert "default 10.128.0.2, back 10.128.9.2" in joined.stdout
    assert fake.requests_to("POST", f"/v1/cells/{cell_id}/networks")
    left = cli("network", "disconnect", "default", "web")
    assert left.exit_code == 0 and "on networks: back 10.128.9.2" in left.stdout
    last = cli("network", "disconnect", "back", "web")
    assert last.exit_code != 0 and "only network" in last.output


def test_a_cell_on_several_networks_sends_them_in_order(cli: Invoke, fake: FakeApi) -> None:
    _run_web(cli, "--network", "back", "--network", "front")
    post = fake.requests_to("POST", "/v1/projects/default/cells")[0]
    body = json.loads(fake.bodies[fake.requests.index(post)])
    assert body["networks"] == ["back", "front"] and "network" not in body
