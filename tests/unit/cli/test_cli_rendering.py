"""The pure renderers of the CLI: the task display, a cluster's last frame, a host's CPU."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from cellplane.cli.clusters import final_frame, render_cluster
from cellplane.cli.hosts import cpu_capacity_text
from cellplane.cli.tasks import render_task, task_header

TASK: dict[str, Any] = {
    "id": "tsk-0mx5ff9a1b2c3d4e5f6g7h8i",
    "kind": "DELETE_CELL",
    "state": "STARTED",
    "entity": {"kind": "cell", "id": "cel-0mx5ff9a1b2c3d4e5f6g7h8i", "name": "web"},
    "progress": 0,
    "steps": [
        {"name": "STOP", "state": "STARTED", "error": None},
        {"name": "DELETE", "state": "QUEUED", "error": None},
    ],
}


def _text(renderable: Any, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text().splitlines()


def test_the_task_header_is_one_line_even_on_a_narrow_terminal() -> None:
    assert task_header(TASK) == "delete cell web  tsk-0mx5ff9a1b2c3d4e5f6g7h8i  0%"
    lines = _text(render_task(TASK), width=40)
    assert lines[0].startswith("delete cell web")
    assert not lines[1].strip() or "STOP" in lines[1]  # the header did not wrap


def test_a_step_under_way_shows_how_long_it_has_been_going() -> None:
    text = "\n".join(_text(render_task(TASK, {"STOP": 4.2}), width=120))
    assert "started 4s" in text and "SIGKILL at the stop timeout" in text
    assert "4s" not in "\n".join(_text(render_task(TASK), width=120))


def test_the_last_frame_of_a_deleted_cluster_shows_no_node_ready() -> None:
    last = {
        "name": "zk",
        "state": "DELETING",
        "task": {"kind": "DELETE_CLUSTER", "progress": 60, "state": "STARTED"},
        "nodes": [
            {"name": "zk-zk-0", "group": "zk", "roles": ["zookeeper"],
             "role_states": {"zookeeper": "SERVICE_READY"}, "state": "READY", "host_name": "n1"},
        ],
    }  # fmt: skip
    deleted = {"id": "clu-1", "state": "DELETED", "task": {"state": "COMPLETED"}}
    frame = final_frame(last, deleted)
    assert frame["state"] == "DELETED" and frame["task"]["progress"] == 100
    assert [n["state"] for n in frame["nodes"]] == ["DELETED"]
    text = "\n".join(_text(render_cluster(frame), width=100))
    assert "READY" not in text and "DELETED" in text and "n1" in text
    # A view that still has its nodes is drawn as it is.
    assert final_frame(last, last) is last


def test_cpu_capacity_says_where_the_number_comes_from() -> None:
    assert cpu_capacity_text({"cpu": 32.0, "cores": 2, "cpu_ratio": 16.0}) == (
        "2 cores x16 overcommit = 32.0"
    )
    assert cpu_capacity_text({"cpu": 8.0}) == "8.0"  # an agent that did not say
