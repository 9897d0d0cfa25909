"""Host path mounts through the REST API (`POST .../cells` with `volumes[].host_path`), against
the in-process server: allowed only under the operator's allowed host paths; refused (403 or
422, naming the problem) with nothing changed; carried to the host's agent with the directory
that admitted the path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cellplane_platform_support import Platform

from cellplane.state.models import Cell

SETTING = "CELLPLANE_ALLOWED_HOST_PATHS"


@pytest.fixture
def allowed(plat: Platform, tmp_path: Path) -> Path:
    root = tmp_path / "shared"
    root.mkdir()
    plat.svc.allowed_host_paths = (str(root), "/srv/other")
    return root


def _create(plat: Platform, name: str, *mounts: dict[str, Any]) -> Any:
    return plat.create_cell(name, cpu=0.25, memory_mb=64, volumes=list(mounts))


def _stored(plat: Platform, cell_id: str) -> list[dict[str, Any]]:
    with plat.svc.db.reader() as s:
        cell = s.get(Cell, cell_id)
        assert cell is not None
        return list(cell.volumes or [])


def _mounts_assigned(plat: Platform, name: str) -> list[dict[str, Any]]:
    plat.schedule()
    cell_id = plat.cell_id(name)
    (cell,) = [c for c in plat.assignments()["cells"] if c["cell_id"] == cell_id]
    mounts: list[dict[str, Any]] = cell["mounts"]
    return mounts


def test_an_allowed_host_path_is_mounted_and_reaches_the_agent(
    plat: Platform, allowed: Path
) -> None:
    r = _create(
        plat,
        "web",
        {"host_path": f"{allowed}/site/", "path": "/srv", "read_only": True},
        {"host_path": str(allowed), "path": "/all"},
    )
    assert r.status_code == 202, r.text
    cell_id = plat.cell_id("web")
    assert _stored(plat, cell_id) == [  # normalised, without a volume name
        {"host_path": f"{allowed}/site", "path": "/srv", "read_only": True},
        {"host_path": str(allowed), "path": "/all", "read_only": False},
    ]
    assert [(m["volume"], m["host_path"]) for m in plat.cell(cell_id)["volumes"]] == [
        (None, f"{allowed}/site"),
        (None, str(allowed)),
    ]
    assert _mounts_assigned(plat, "web") == [
        {
            "path": "/srv",
            "read_only": True,
            "volume_id": "",
            "engine_name": "",
            "host_path": f"{allowed}/site",
            "host_root": str(allowed),
        },
        {
            "path": "/all",
            "read_only": False,
            "volume_id": "",
            "engine_name": "",
            "host_path": str(allowed),
            "host_root": str(allowed),
        },
    ]


def test_a_path_the_operator_no_longer_lists_reaches_the_agent_without_a_root(
    plat: Platform, allowed: Path
) -> None:
    assert _create(plat, "old", {"host_path": str(allowed), "path": "/d"}).status_code == 202
    plat.svc.allowed_host_paths = ()
    (mount,) = _mounts_assigned(plat, "old")
    assert mount["host_path"] == str(allowed) and mount["host_root"] is None


@pytest.mark.parametrize(
    "host_path",
    ["/etc", "/", "/srv/other2", "/srv", "PREFIX2", "PREFIX2/x"],
)
def test_a_path_outside_the_list_is_forbidden_naming_it_and_nothing_is_made(
    plat: Platform, allowed: Path, host_path: str
) -> None:
    host_path = host_path.replace("PREFIX", str(allowed))
    before = plat.cell_count()
    r = _create(plat, "bad", {"host_path": host_path, "path": "/d"})
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert repr(host_path) in detail and SETTING in detail and "do not include it" in detail
    assert plat.cell_count() == before


def test_without_a_list_every_host_path_is_forbidden(plat: Platform, tmp_path: Path) -> None:
    assert plat.svc.allowed_host_paths == ()
    r = _create(plat, "none", {"host_path": str(tmp_path), "path": "/d"})
    assert r.status_code == 403 and SETTING in r.json()["detail"], r.text


@pytest.mark.parametrize(
    ("mount", "words"),
    [
        ({"host_path": "relative/dir", "path": "/d"}, "is not absolute"),
        ({"host_path": "ALLOWED/../etc", "path": "/d"}, "must not contain '..'"),
        ({"host_path": "ALLOWED", "volume": "v", "path": "/d"}, "exactly one of"),
        ({"path": "/d"}, "exactly one of"),
        ({"host_path": "ALLOWED", "path": "rel"}, "must be an absolute path"),
        ({"host_path": "", "path": "/d"}, "at least 1 character"),
    ],
)
def test_bad_mounts_are_refused_naming_the_problem_and_nothing_is_made(
    plat: Platform, allowed: Path, mount: dict[str, Any], words: str
) -> None:
    mount = {k: v.replace("ALLOWED", str(allowed)) for k, v in mount.items()}
    before = plat.cell_count()
    r = _create(plat, "bad", mount)
    assert r.status_code == 422, r.text
    assert words in r.text and "volumes" in r.text
    assert plat.cell_count() == before


def test_a_named_volume_and_a_host_path_together(plat: Platform, allowed: Path) -> None:
    r = plat.client.post("/v1/projects/default/volumes", json={"name": "db"}, headers=plat.admin)
    assert r.status_code in (201, 202), r.text
    r = _create(
        plat,
        "both",
        {"volume": "db", "path": "/db"},
        {"host_path": str(allowed), "path": "/cfg", "read_only": True},
    )
    assert r.status_code == 202, r.text
    assert _stored(plat, plat.cell_id("both")) == [
        {"volume": "db", "path": "/db", "read_only": False},  # as a volume always was
        {"host_path": str(allowed), "path": "/cfg", "read_only": True},
    ]
    mounts = _mounts_assigned(plat, "both")
    assert [m["host_path"] for m in mounts] == [None, str(allowed)]
    assert mounts[0]["volume_id"].startswith("vol-") and mounts[0]["engine_name"]


def test_a_task_failed_by_a_report_without_a_message_carries_the_cells(plat: Platform) -> None:
    # The agent names why the cell failed once (a host path missing on its host); a later report
    # that only repeats FAILED fails the next task (a `docker start`'s) with that reason too.
    assert _create(plat, "gone").status_code == 202
    plat.schedule()
    cell_id = plat.cell_id("gone")
    plat.report({"cell_id": cell_id, "state": "FAILED", "message": "host path '/x' is missing"})
    r = plat.client.post(f"/v1/cells/{cell_id}/start", headers=plat.admin)
    assert r.status_code == 202, r.text
    plat.report({"cell_id": cell_id, "state": "FAILED"})
    task = plat.task(r.json()["id"])
    assert task["state"] == "ERROR" and task["error"] == "host path '/x' is missing", task
