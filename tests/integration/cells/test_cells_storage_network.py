"""Volumes that outlive cells, per-project networks with DNS, published ports."""

from __future__ import annotations

import uuid

import httpx
import pytest

from cellplane.client import CellplaneError, Client
from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.harness import free_port

from .conftest import SLEEP, Cells, assert_problem, unique, wait_for

# httpd in the foreground under a shell that exits at once on SIGTERM (quick deletes).
HTTPD = (
    "trap 'exit 0' TERM; mkdir -p /www && echo {text} > /www/index.html && "
    "httpd -f -p 8080 -h /www & wait"
)


def _exec(client: Client, cell_id: str, script: str) -> dict[str, object]:
    return client.exec_cell(cell_id, ["sh", "-c", script])


def _http(client: Client, cell_id: str, host: str) -> str:
    """GET http://host:8080/ from inside a cell. busybox nc, because busybox wget crashes (SIGSEGV)
    under this sandbox's runtime; nc's exit code says nothing, so callers look at the body."""
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
    return str(_exec(client, cell_id, f"{request} | nc -w 3 {host} 8080")["output"])


@pytest.mark.integration
def test_volume_outlives_its_cell_and_is_protected_while_attached(
    cells: Cells, client: Client, api: httpx.Client, engine: PodmanDriver
) -> None:
    vol_name = unique("vol")
    volume = client.create_volume("default", vol_name, size_gb=1)
    assert volume["name"] == vol_name and volume["attached_to"] == [], volume
    mount = [{"volume": vol_name, "path": "/data"}]
    token = uuid.uuid4().hex

    writer = cells.run("writer", SLEEP, volumes=mount)
    assert writer["volumes"][0]["volume"] == vol_name
    out = _exec(client, writer["id"], f"echo {token} > /data/f && sync && cat /data/f")
    assert out == {"exit_code": 0, "output": f"{token}\n"}, out
    cells.delete(writer["id"])

    reader = cells.run("reader", SLEEP, volumes=mount)
    out = _exec(client, reader["id"], "cat /data/f")
    assert out == {"exit_code": 0, "output": f"{token}\n"}, out
    assert client.get_volume(volume["id"])["attached_to"] == [reader["id"]]

    # Deleting it while attached: 409, and nothing changes.
    resp = api.delete(f"/v1/volumes/{volume['id']}")
    assert_problem(resp, 409, "conflict")
    after = client.get_volume(volume["id"])
    assert after["attached_to"] == [reader["id"]], after
    assert after.get("state", "READY") == "READY", after
    assert client.get_cell(reader["id"])["state"] == "RUNNING"
    out = _exec(client, reader["id"], "cat /data/f")
    assert out == {"exit_code": 0, "output": f"{token}\n"}, out

    # Once the cell is gone the volume can be deleted, in Cellplane and in the engine.
    cells.delete(reader["id"])
    assert client.get_volume(volume["id"])["attached_to"] == []
    client.delete_volume(volume["id"])

    def gone() -> bool:
        try:
            client.get_volume(volume["id"])
        except CellplaneError as e:
            return e.status == 404
        return False

    wait_for(gone, 30, what="volume deleted")
    assert client.find_volume("default", vol_name) is None
    wait_for(
        lambda: engine.list_volumes({"cellplane.volume": volume["id"]}) == [],
        30,
        what="engine volume removed",
    )


@pytest.mark.integration
def test_project_networks_connect_by_name_and_isolate_projects(
    cells: Cells, client: Client
) -> None:
    a, b = cells.run_many(
        [
            ("net-a", SLEEP, {}),
            ("net-b", ["sh", "-c", HTTPD.format(text="hello-from-b")], {}),
        ]
    )
    # Same project: by name, ping and HTTP.
    out = _exec(client, a["id"], f"ping -c1 -W2 {b['name']}")
    assert out["exit_code"] == 0, out
    assert b["address"] in str(out["output"]), out
    wait_for(
        lambda: "hello-from-b" in _http(client, a["id"], b["name"]),
        15,
        what="httpd in b reached by name",
    )

    # Another project: its own network, where the first project's cells are out of reach.
    project = unique("other")
    created = client.create_project(project)
    assert created["name"] == project
    c, d = cells.run_many(
        [
            ("net-c", SLEEP, {"project": project}),
            ("net-d", ["sh", "-c", HTTPD.format(text="hello-from-d")], {"project": project}),
        ]
    )
    assert c["project"] == project
    assert c["address"] and c["address"] not in (a["address"], b["address"])
    # Controls: inside its own project, names, ping by IP and HTTP by IP all work, so the
    # failures below are isolation, not a broken cell or tool.
    out = _exec(client, c["id"], f"ping -c1 -W2 {d['name']}")
    assert out["exit_code"] == 0 and d["address"] in str(out["output"]), out
    out = _exec(client, c["id"], f"ping -c1 -W2 {d['address']}")
    assert out["exit_code"] == 0, out
    wait_for(
        lambda: "hello-from-d" in _http(client, c["id"], d["address"]),
        15,
        what="httpd in d reached by IP",
    )

    out = _exec(client, c["id"], f"ping -c1 -W2 {b['address']}")
    assert out["exit_code"] != 0, out
    assert "hello-from-b" not in _http(client, c["id"], b["address"])
    for name in (a["name"], b["name"]):
        out = _exec(client, c["id"], f"ping -c1 -W2 {name}")
        assert out["exit_code"] != 0, out
        text = str(out["output"])
        assert a["address"] not in text and b["address"] not in text, out
        text = str(_exec(client, c["id"], f"nslookup {name}")["output"])
        assert a["address"] not in text and b["address"] not in text, text


@pytest.mark.integration
def test_published_port_answers_on_the_host(cells: Cells) -> None:
    port = free_port()
    cell = cells.run(
        "web",
        ["sh", "-c", HTTPD.format(text="hello-from-port")],
        ports=[{"container_port": 8080, "host_port": port}],
    )
    assert cell["ports"] == [{"container_port": 8080, "host_port": port, "protocol": "tcp"}], cell

    def fetch() -> httpx.Response | None:
        try:
            resp = httpx.get(f"http://127.0.0.1:{port}/", timeout=3)
        except httpx.HTTPError:
            return None
        return resp if resp.status_code == 200 else None

    resp = wait_for(fetch, 20, what=f"http on 127.0.0.1:{port}")
    assert resp.text == "hello-from-port\n"
