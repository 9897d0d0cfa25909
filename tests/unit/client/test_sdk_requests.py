"""SDK: routes, retries under one Idempotency-Key, pagination, problem documents."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cellplane_fake_api import Failure, FakeApi

import cellplane.client as sdk
from cellplane.client import CellplaneConnectionError, CellplaneError, Client


def test_all_exports_exist() -> None:
    for name in sdk.__all__:
        assert hasattr(sdk, name), name


def test_bearer_token_is_sent_and_missing_token_is_a_401(fake: FakeApi, client: Client) -> None:
    assert client.whoami()["subject"] == "admin"
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {fake.token}"
    with (
        Client("http://cellplane.test", None, transport=fake.transport()) as anonymous,
        pytest.raises(CellplaneError) as info,
    ):
        anonymous.whoami()
    assert "Authorization" not in fake.requests[-1].headers
    assert info.value.status == 401
    assert info.value.title == "Unauthorized"


def test_problem_document_is_parsed_into_a_one_line_error(client: Client) -> None:
    with pytest.raises(CellplaneError) as info:
        client.create_cell("default", "Not_A_Label", "busybox")
    err = info.value
    assert err.status == 422
    assert err.type == "https://cellplane.dev/problems/validation"
    assert err.title == "Invalid request"
    assert err.detail is not None and err.detail.startswith("name: must be a DNS label")
    assert err.errors == [{"field": "name", "message": "must be a DNS label"}]
    text = str(err)
    assert "\n" not in text
    assert text.startswith("Invalid request (422): name: must be a DNS label")


def test_error_without_problem_json_uses_reason_and_body() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(500, text="boom\ntrace"))
    with (
        Client("http://x", "t", transport=transport, retries=0) as c,
        pytest.raises(CellplaneError) as info,
    ):
        c.get_cell("cel-1")
    assert info.value.status == 500
    assert info.value.title == "Internal Server Error"
    assert str(info.value) == "Internal Server Error (500): boom trace"


def test_errors_list_fills_the_message_when_detail_is_missing() -> None:
    body = {"title": "Invalid request", "status": 422, "errors": [{"field": "a", "message": "b"}]}
    transport = httpx.MockTransport(lambda r: httpx.Response(422, json=body))
    with Client("http://x", "t", transport=transport) as c, pytest.raises(CellplaneError) as info:
        c.get_task("tsk-1")
    assert str(info.value) == "Invalid request (422): a: b"


def test_every_post_has_a_fresh_idempotency_key(fake: FakeApi, client: Client) -> None:
    client.create_project("one")
    client.create_project("two")
    keys = [r.headers["Idempotency-Key"] for r in fake.requests_to("POST", "/v1/projects")]
    assert len(keys) == 2 and keys[0] != keys[1]
    assert all(len(k) == 36 for k in keys)


def test_caller_key_is_used_and_a_different_body_is_a_mismatch(
    fake: FakeApi, client: Client
) -> None:
    first = client.create_project("one", idempotency_key="k-1")
    again = client.create_project("one", idempotency_key="k-1")
    assert first == again
    assert len(fake.projects) == 2  # default + one: the repeat changed nothing
    with pytest.raises(CellplaneError) as info:
        client.create_project("two", idempotency_key="k-1")
    assert info.value.status == 422
    assert info.value.type is not None and info.value.type.endswith("idempotency-mismatch")


@pytest.mark.parametrize("status", [502, 503, 504])
def test_post_is_retried_on_gateway_errors_with_the_same_key(
    fake: FakeApi, client: Client, status: int
) -> None:
    fake.fail_next = [Failure(status=status), Failure(status=status)]
    task = client.create_cell("default", "web", "busybox")
    posts = fake.requests_to("POST", "/v1/projects/default/cells")
    assert len(posts) == 3
    assert len({r.headers["Idempotency-Key"] for r in posts}) == 1
    assert task["entity"]["id"] in fake.cells


def test_lost_answer_is_retried_and_applied_once(fake: FakeApi, client: Client) -> None:
    # The server creates the cell, then the connection drops before the answer arrives.
    fake.fail_next = [Failure(error=httpx.ReadError, after_commit=True)]
    task = client.create_cell("default", "web", "busybox")
    posts = fake.requests_to("POST", "/v1/projects/default/cells")
    assert len(posts) == 2
    assert posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
    assert list(fake.cells) == [task["entity"]["id"]]


def test_retries_are_bounded(fake: FakeApi) -> None:
    fake.fail_next = [Failure(status=503) for _ in range(10)]
    with (
        Client("http://x", fake.token, transport=fake.transport(), retries=2, backoff=0) as c,
        pytest.raises(CellplaneError) as info,
    ):
        c.create_project("p")
    assert info.value.status == 503
    assert len(fake.requests) == 3
    assert len(fake.fail_next) == 7


def test_connection_errors_become_a_connection_error_after_retries(fake: FakeApi) -> None:
    fake.fail_next = [Failure(error=httpx.ConnectError) for _ in range(5)]
    with (
        Client("http://x", fake.token, transport=fake.transport(), retries=3, backoff=0) as c,
        pytest.raises(CellplaneConnectionError) as info,
    ):
        c.create_project("p")
    assert len(fake.requests) == 4
    assert info.value.status is None
    assert "Connection failed" in str(info.value)


def test_delete_is_not_retried_when_the_request_may_have_arrived(
    fake: FakeApi, client: Client
) -> None:
    cell_id = client.create_cell("default", "web", "busybox")["entity"]["id"]
    fake.fail_next = [Failure(error=httpx.ReadError, method="DELETE")]
    with pytest.raises(CellplaneConnectionError):
        client.delete_cell(cell_id)
    assert len(fake.requests_to("DELETE", f"/v1/cells/{cell_id}")) == 1


def test_delete_is_retried_when_the_connection_was_refused(fake: FakeApi, client: Client) -> None:
    cell_id = client.create_cell("default", "web", "busybox")["entity"]["id"]
    fake.fail_next = [Failure(error=httpx.ConnectError, method="DELETE")]
    task = client.delete_cell(cell_id)
    assert task["kind"] == "DELETE_CELL"
    assert len(fake.requests_to("DELETE", f"/v1/cells/{cell_id}")) == 2


def test_delete_is_retried_on_503_but_not_on_502_or_504(fake: FakeApi, client: Client) -> None:
    """A 503 changed nothing; after a 502 or 504 the upstream may have deleted already."""
    cell_id = client.create_cell("default", "web", "busybox")["entity"]["id"]
    for status in (502, 504):
        fake.fail_next = [Failure(status=status, method="DELETE")]
        with pytest.raises(CellplaneError) as info:
            client.delete_cell(cell_id)
        assert info.value.status == status
    assert len(fake.requests_to("DELETE", f"/v1/cells/{cell_id}")) == 2
    fake.fail_next = [Failure(status=503, method="DELETE")]
    assert client.delete_cell(cell_id)["kind"] == "DELETE_CELL"
    assert len(fake.requests_to("DELETE", f"/v1/cells/{cell_id}")) == 4


def test_get_is_retried_on_503(fake: FakeApi, client: Client) -> None:
    fake.fail_next = [Failure(status=503)]
    assert [f["name"] for f in client.iter_flavors()] == ["SMALL", "MEDIUM"]


def test_iter_follows_next_cursor_and_list_returns_one_page(fake: FakeApi, client: Client) -> None:
    for i in range(5):
        client.create_cell("default", f"c{i}", "busybox", labels={"app": "x"})
    fake.requests.clear()
    names = [c["name"] for c in client.iter_cells("default", labels={"app": "x"})]
    assert names == [f"c{i}" for i in range(5)]
    assert [r.url.params.get("cursor") for r in fake.requests] == [None, "2", "4"]
    assert all(r.url.params.get_list("label") == ["app=x"] for r in fake.requests)
    page = client.list_cells("default", limit=3)
    assert len(page["items"]) == 3 and page["next_cursor"] == "3"
    rest = client.list_cells("default", limit=3, cursor=page["next_cursor"])
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None


def test_repeating_cursor_is_an_error_not_a_loop() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"items": [{"name": "x"}], "next_cursor": "same"})

    with (
        Client("http://x", "t", transport=httpx.MockTransport(handler)) as c,
        pytest.raises(CellplaneError, match="repeats"),
    ):
        list(c.iter_projects())


def test_labels_repeat_and_all_must_match(client: Client) -> None:
    client.create_cell("default", "a", "busybox", labels={"app": "web", "tier": "1"})
    client.create_cell("default", "b", "busybox", labels={"app": "web", "tier": "2"})
    found = client.iter_cells("default", labels={"app": "web", "tier": "2"})
    assert [c["name"] for c in found] == ["b"]


def test_find_cell_by_name(fake: FakeApi, client: Client) -> None:
    task = client.create_cell("default", "web", "busybox")
    assert client.find_cell("default", "web") == fake.cells[task["entity"]["id"]]
    assert client.find_cell("default", "nope") is None
    assert fake.requests[-1].url.params["name"] == "nope"


def test_create_cell_sends_only_given_fields(fake: FakeApi, client: Client) -> None:
    client.create_cell(
        "default",
        "web",
        "busybox",
        cpu=0.5,
        memory_mb=256,
        command=["httpd", "-f"],
        ports=[{"container_port": 80, "host_port": 8080, "protocol": "tcp"}],
        restart={"policy": "on-failure", "max_retries": 3},
    )
    sent = json.loads(fake.bodies[-1])
    assert sent == {
        "name": "web",
        "image": "busybox",
        "cpu": 0.5,
        "memory_mb": 256,
        "command": ["httpd", "-f"],
        "ports": [{"container_port": 80, "host_port": 8080, "protocol": "tcp"}],
        "restart": {"policy": "on-failure", "max_retries": 3},
        "start": True,
    }


def test_stop_sends_the_grace_timeout(fake: FakeApi, client: Client) -> None:
    cell_id = client.create_cell("default", "web", "busybox")["entity"]["id"]
    assert client.stop_cell(cell_id, timeout=5)["kind"] == "STOP_CELL"
    assert json.loads(fake.bodies[-1]) == {"timeout": 5}
    client.restart_cell(cell_id)
    assert json.loads(fake.bodies[-1]) == {}


def test_logs_yield_lines_and_pass_tail_and_follow(fake: FakeApi, client: Client) -> None:
    cell_id = client.create_cell("default", "web", "busybox")["entity"]["id"]
    assert list(client.cell_logs(cell_id, tail=2)) == ["line 4", "line 5"]
    assert fake.requests[-1].url.params["tail"] == "2"
    assert len(list(client.cell_logs(cell_id, follow=True))) == 5
    assert fake.requests[-1].url.params["follow"] == "true"


def test_logs_of_a_missing_cell_raise(client: Client) -> None:
    with pytest.raises(CellplaneError) as info:
        list(client.cell_logs("cel-404"))
    assert info.value.status == 404


def test_exec_returns_exit_code_and_output(client: Client) -> None:
    cell_id = client.create_cell("default", "web", "busybox")["entity"]["id"]
    assert client.exec_cell(cell_id, ["fail", "now"]) == {"exit_code": 7, "output": "fail now\n"}


def test_upload_streams_the_file_with_length_and_type(
    fake: FakeApi, client: Client, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 4000  # > one upload chunk
    tarball = tmp_path / "img.tar"
    tarball.write_bytes(data)
    seen: list[int] = []
    fake.fail_next = [Failure(status=503)]
    image = client.upload_image("alpine", tarball, progress=seen.append)
    assert image["size_bytes"] == len(data)
    posts = fake.requests_to("POST", "/v1/images")
    assert len(posts) == 2  # the retry re-sent the whole file
    assert fake.bodies[-1] == data
    assert posts[-1].url.params["name"] == "alpine"
    assert posts[-1].headers["Content-Type"] == "application/x-tar"
    assert posts[-1].headers["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in posts[-1].headers
    assert sum(seen) == 2 * len(data)


def test_volume_and_image_and_host_routes(fake: FakeApi, client: Client) -> None:
    volume = client.create_volume("default", "data", size_gb=3)
    assert json.loads(fake.bodies[-1]) == {"name": "data", "size_gb": 3}
    assert client.find_volume("default", "data") == volume
    assert client.get_volume(volume["id"]) == volume
    client.delete_volume(volume["id"])
    assert fake.volumes == {}
    host = client.set_maintenance("hst-2", True)
    assert host["state"] == "MAINTENANCE"
    assert json.loads(fake.bodies[-1]) == {"enabled": True}
    assert [h["name"] for h in client.iter_hosts()] == ["node-a", "node-b"]


def test_from_config_reads_environment(
    fake: FakeApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CELLPLANE_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.setenv("CELLPLANE_SERVER", "http://from-env.test")
    monkeypatch.setenv("CELLPLANE_TOKEN", fake.token)
    with Client.from_config(transport=fake.transport()) as c:
        assert c.whoami()["tenant"] == "default"
    assert fake.requests[-1].url.host == "from-env.test"


def test_from_config_without_server_says_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CELLPLANE_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.delenv("CELLPLANE_SERVER", raising=False)
    with pytest.raises(CellplaneError) as info:
        Client.from_config()
    assert info.value.title == "Not configured"
    assert "CELLPLANE_SERVER" in str(info.value)


def test_from_config_with_broken_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    monkeypatch.setenv("CELLPLANE_CONFIG", str(path))
    with pytest.raises(CellplaneError) as info:
        Client.from_config()
    assert info.value.title == "Bad configuration"


def test_a_non_json_answer_is_a_clean_error() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, text="<html>proxy</html>"))
    with Client("http://x", "t", transport=transport) as c:
        with pytest.raises(CellplaneError, match="not JSON"):
            c.get_cell("cel-1")
        with pytest.raises(CellplaneError, match="not JSON"):
            list(c.iter_hosts())
