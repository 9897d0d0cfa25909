"""`docker run -v /host/path:/path` and `--mount type=bind`: mapped to a cell's host path mount
(the service then checks the operator's allowed host paths), refused naming the option when the
endpoint cannot do what is asked; `docker inspect` reports them back as Docker does."""

from __future__ import annotations

from typing import Any

import pytest

from cellplane.dockerapi import views
from cellplane.dockerapi.mapping import Refused, cell_fields
from cellplane.services.schemas import CellCreate


def _fields(host: dict[str, Any]) -> dict[str, Any]:
    return cell_fields("web", {"Image": "busybox", "HostConfig": host})


def test_binds_are_host_path_mounts_beside_named_volumes() -> None:
    f = _fields(
        {
            "Binds": ["/srv/site:/usr/share/www:ro", "data:/data", "/srv/logs:/logs:rw,Z"],
            "Mounts": [
                {"Type": "bind", "Source": "/srv/cfg", "Target": "/cfg", "ReadOnly": True},
                {
                    "Type": "bind",
                    "Source": "/srv/x",
                    "Target": "/x",
                    "BindOptions": {"Propagation": "rprivate"},
                },
            ],
        }
    )
    assert f["volumes"] == [
        {"host_path": "/srv/site", "path": "/usr/share/www", "read_only": True},
        {"volume": "data", "path": "/data", "read_only": False},
        {"host_path": "/srv/logs", "path": "/logs", "read_only": False},
        {"host_path": "/srv/cfg", "path": "/cfg", "read_only": True},
        {"host_path": "/srv/x", "path": "/x", "read_only": False},
    ]
    mounts = CellCreate.model_validate(f).volumes
    assert [(m.volume, m.host_path) for m in mounts][:2] == [(None, "/srv/site"), ("data", None)]


@pytest.mark.parametrize(
    ("host", "words"),
    [
        (
            {"Binds": ["./site:/www"]},
            "-v ./site:/www: the host path './site' must be an absolute path",
        ),
        ({"Binds": ["~/site:/www"]}, "must be an absolute path"),
        ({"Binds": ["/srv:/www:shared"]}, "option 'shared'"),
        ({"Binds": ["data:/www:rprivate"]}, "of host paths only"),
        ({"Mounts": [{"Type": "bind", "Target": "/x"}]}, "a source (the host path) is required"),
        ({"Mounts": [{"Type": "bind", "Source": "x", "Target": "/x"}]}, "must be an absolute"),
        (
            {
                "Mounts": [
                    {
                        "Type": "bind",
                        "Source": "/s",
                        "Target": "/x",
                        "BindOptions": {"Propagation": "shared"},
                    }
                ]
            },
            "bind-propagation=shared",
        ),
        (
            {
                "Mounts": [
                    {
                        "Type": "bind",
                        "Source": "/s",
                        "Target": "/x",
                        "BindOptions": {"CreateMountpoint": True},
                    }
                ]
            },
            "never created",
        ),
        ({"Mounts": [{"Type": "tmpfs", "Target": "/x"}]}, "--mount type=tmpfs"),
    ],
)
def test_what_a_bind_cannot_be_is_refused_naming_the_option(
    host: dict[str, Any], words: str
) -> None:
    with pytest.raises(Refused) as err:
        _fields(host)
    assert err.value.status == 400 and words in err.value.message


def _cell(*mounts: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "cel-1",
        "name": "web",
        "image": "busybox",
        "cpu": 0.25,
        "memory_mb": 64,
        "state": "RUNNING",
        "desired_state": "RUNNING",
        "volumes": list(mounts),
        "restart": {"policy": "never", "max_retries": None},
        "env": {},
        "labels": {},
        "ports": [],
        "events": [],
        "created_at": "2026-12-03T12:00:00+00:00",
        "updated_at": "2026-12-03T12:00:00+00:00",
    }


def test_inspect_reports_host_paths_as_binds() -> None:
    cell = _cell(
        {"volume": "data", "host_path": None, "path": "/data", "read_only": False},
        {"volume": None, "host_path": "/srv/site", "path": "/www", "read_only": True},
        {"volume": None, "host_path": "/srv/logs", "path": "/logs", "read_only": False},
    )
    out = views.inspect(cell, "default")
    assert out["HostConfig"]["Binds"] == ["data:/data", "/srv/site:/www:ro", "/srv/logs:/logs"]
    assert out["Mounts"][1:] == [
        {
            "Type": "bind",
            "Source": "/srv/site",
            "Destination": "/www",
            "Mode": "ro",
            "RW": False,
            "Propagation": "rprivate",
        },
        {
            "Type": "bind",
            "Source": "/srv/logs",
            "Destination": "/logs",
            "Mode": "",
            "RW": True,
            "Propagation": "rprivate",
        },
    ]
    assert out["Mounts"][0]["Type"] == "volume" and out["Mounts"][0]["Name"] == "data"
