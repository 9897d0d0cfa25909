"""The Docker-compatible endpoint's pure mapping: a docker create body -> cell fields, refusals
naming the docker option, API versions, image references."""

from __future__ import annotations

from typing import Any

import pytest

from cellplane.dockerapi import mapping
from cellplane.dockerapi.mapping import Refused, cell_fields
from cellplane.services.schemas import CellCreate


def body(**over: Any) -> dict[str, Any]:
    """What the docker 28 CLI sends for `docker create busybox` (defaults included)."""
    b: dict[str, Any] = {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": None,
        "Cmd": None,
        "Image": "busybox",
        "Volumes": {},
        "WorkingDir": "",
        "Entrypoint": None,
        "Labels": {},
        "HostConfig": {
            "Binds": None,
            "NetworkMode": "default",
            "PortBindings": {},
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "AutoRemove": False,
            "CapAdd": None,
            "CapDrop": None,
            "Dns": [],
            "IpcMode": "",
            "PidMode": "",
            "Privileged": False,
            "LogConfig": {"Type": "", "Config": {}},
            "NanoCpus": 0,
            "Memory": 0,
        },
        "NetworkingConfig": {"EndpointsConfig": {}},
    }
    host = over.pop("HostConfig", {})
    b.update(over)
    b["HostConfig"].update(host)
    return b


def test_the_clis_defaults_make_a_plain_cell_that_starts_on_start() -> None:
    f = cell_fields("web", body(Cmd=["sleep", "300"]))
    assert f == {
        "name": "web",
        "image": "busybox",
        "command": ["sleep", "300"],
        "env": {},
        "ports": [],
        "volumes": [],
        "restart": {"policy": "never"},
        "labels": {},
        "start": False,
    }
    CellCreate.model_validate(f)  # the services' own body accepts it


def test_every_supported_option_maps_onto_the_cell() -> None:
    f = cell_fields(
        "/api",
        body(
            Cmd=["-c", "echo hi"],
            Entrypoint=["sh"],
            Env=["A=1", "B=x=y", "UNSET"],
            Labels={"team": "blue"},
            WorkingDir="/srv",
            User="1000:1000",
            Hostname="api-host",
            StopTimeout=3,
            Volumes={"/data": {}},
            HostConfig={
                "Binds": ["data:/data", "conf:/etc/app:ro"],
                "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "53/udp": [{}]},
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                "NanoCpus": 250_000_000,
                "Memory": 64 * 1024 * 1024,
            },
        ),
    )
    assert f["name"] == "api"
    assert f["entrypoint"] == ["sh"] and f["command"] == ["-c", "echo hi"]
    assert f["env"] == {"A": "1", "B": "x=y"}  # a bare name is a variable the client had unset
    assert (f["workdir"], f["user"], f["hostname"]) == ("/srv", "1000:1000", "api-host")
    assert f["stop_timeout"] == 3.0
    assert f["volumes"] == [
        {"volume": "data", "path": "/data", "read_only": False},
        {"volume": "conf", "path": "/etc/app", "read_only": True},
    ]
    assert f["ports"] == [
        {"container_port": 80, "host_port": 8080, "protocol": "tcp"},
        {"container_port": 53, "host_port": None, "protocol": "udp"},
    ]
    assert f["restart"] == {"policy": "on-failure", "max_retries": 3}
    assert (f["cpu"], f["memory_mb"]) == (0.25, 64)
    cell = CellCreate.model_validate(f)
    assert cell.entrypoint == ["sh"] and cell.user == "1000:1000"


@pytest.mark.parametrize(
    ("over", "status", "words"),
    [
        ({"HostConfig": {"Privileged": True}}, 403, "--privileged is not allowed"),
        ({"HostConfig": {"NetworkMode": "host"}}, 403, "--network host is not allowed"),
        ({"HostConfig": {"PidMode": "host"}}, 403, "--pid host is not allowed"),
        ({"HostConfig": {"CapAdd": ["SYS_ADMIN"]}}, 403, "--cap-add is not allowed"),
        ({"HostConfig": {"Binds": ["./etc:/host-etc"]}}, 400, "must be an absolute path"),
        (
            {"HostConfig": {"Mounts": [{"Type": "bind", "Source": "rel", "Target": "/x"}]}},
            400,
            "type=bind",
        ),
        (
            {"HostConfig": {"AutoRemove": True, "RestartPolicy": {"Name": "always"}}},
            400,
            "--restart and --rm",
        ),
        (
            {"NetworkingConfig": {"EndpointsConfig": {"a": {"Aliases": ["Db.x"]}}}},
            400,
            "--network-alias 'Db.x'",
        ),
        ({"HostConfig": {"NetworkMode": "none"}}, 400, "--network none"),
        ({"Volumes": {"/data": {}}}, 400, "anonymous volumes"),
        ({"HostConfig": {"Memory": 1024}}, 400, "Minimum memory limit"),
        ({"HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, 400, "--restart sometimes"),
        ({"Labels": {"cellplane.cell": "x"}}, 400, "reserved"),
        ({"Image": ""}, 400, "No image"),
        ({"StopSignal": "SIGNOPE"}, 400, "Invalid signal: SIGNOPE"),
        ({"HostConfig": {"CapDrop": ["NOPE"]}}, 400, "--cap-drop NOPE: unknown capability"),
        ({"HostConfig": {"ExtraHosts": ["db:300.1.1.1"]}}, 400, "--add-host db:300.1.1.1"),
        ({"HostConfig": {"Tmpfs": {"scratch": ""}}}, 400, "--tmpfs scratch: the path"),
        ({"HostConfig": {"Tmpfs": {"/t": "size=1m,exec=1"}}}, 400, "option 'exec=1'"),
        ({"HostConfig": {"Ulimits": [{"Name": "nofile"}]}}, 400, "--ulimit nofile: the limits"),
        ({"HostConfig": {"PidsLimit": -1}}, 400, "--pids-limit"),
    ],
)
def test_what_the_endpoint_will_not_do_is_refused_naming_the_option(
    over: dict[str, Any], status: int, words: str
) -> None:
    with pytest.raises(Refused) as err:
        cell_fields("x", body(**over))
    assert err.value.status == status
    assert words in err.value.message


def test_read_only_and_pids_limit_map_onto_the_cells_hardening_opt_ins() -> None:
    f = cell_fields("x", body(HostConfig={"ReadonlyRootfs": True, "PidsLimit": 64}))
    assert (f["read_only"], f["pids_limit"]) == (True, 64)
    assert CellCreate.model_validate(f).pids_limit == 64
    plain = cell_fields("x", body(HostConfig={"ReadonlyRootfs": False, "PidsLimit": 0}))
    assert "read_only" not in plain and "pids_limit" not in plain


def test_rm_marks_the_cell_for_removal_and_inspect_reports_it() -> None:
    f = cell_fields("x", body(HostConfig={"AutoRemove": True}))
    assert f["labels"] == {mapping.AUTO_REMOVE_LABEL: "true"}
    assert f["restart"] == {"policy": "never"}
    assert mapping.AUTO_REMOVE_LABEL not in cell_fields("x", body())["labels"]


def test_container_names_are_cell_names() -> None:
    with pytest.raises(Refused, match="DNS labels"):
        cell_fields("My_Container", body())
    generated = cell_fields(None, body(Image="docker.io/library/redis:7"))["name"]
    assert generated.startswith("redis-") and len(generated) == len("redis-") + 6


def test_unless_stopped_is_always_and_is_reported_back() -> None:
    f = cell_fields("x", body(HostConfig={"RestartPolicy": {"Name": "unless-stopped"}}))
    assert f["restart"] == {"policy": "always"}
    assert f["labels"] == {mapping.RESTART_LABEL: "unless-stopped"}


def test_api_versions() -> None:
    for v in ("1.24", "1.41", "1.50"):
        mapping.check_api_version(v)
    with pytest.raises(Refused, match="too old"):
        mapping.check_api_version("1.12")
    with pytest.raises(Refused, match="not a version"):
        mapping.check_api_version("abc")


def test_image_references() -> None:
    assert mapping.image_candidates("docker.io/library/busybox:latest") == [
        "docker.io/library/busybox:latest",
        "busybox:latest",
        "busybox",
    ]
    assert mapping.image_candidates("busybox") == ["busybox"]
    assert mapping.image_candidates("registry.local/app:1") == ["registry.local/app:1"]
