"""Docker volumes, networks and events of an endpoint, the pure mapping: Docker's bodies checked
(what a Cellplane volume or network cannot be is refused, naming it), the views, list filters,
`docker run --network`, and events built from cell tasks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from cellplane.dockerapi import event_views as ev
from cellplane.dockerapi import resource_views as rv
from cellplane.dockerapi.mapping import Refused, cell_fields
from cellplane.dockerapi.views import docker_id
from cellplane.services.schemas import CellCreate

# --- run --network ------------------------------------------------------------------------


def _run(mode: str, endpoints: dict[str, Any] | None = None) -> dict[str, Any]:
    return cell_fields(
        "web",
        {
            "Image": "busybox",
            "HostConfig": {"NetworkMode": mode},
            "NetworkingConfig": {"EndpointsConfig": endpoints or {}},
        },
    )


def test_run_network_names_a_project_network_and_bridge_is_the_default() -> None:
    assert "network" not in _run("default")
    assert "network" not in _run("bridge", {"bridge": {}})
    f = _run("backend", {"backend": {"Aliases": ["web"]}})  # its own name: what it resolves as
    assert f["network"] == "backend"
    assert CellCreate.model_validate(f).network == "backend"


@pytest.mark.parametrize(
    ("mode", "endpoints", "words"),
    [
        ("backend", {"backend": {"IPAMConfig": {"IPv4Address": "10.0.0.9"}}}, "--ip"),
        ("backend", {"backend": {"Links": ["db:db"]}}, "--link"),
        ("Not_A_Label", {}, "network Not_A_Label not found"),
    ],
)
def test_run_network_refusals_name_the_option(
    mode: str, endpoints: dict[str, Any], words: str
) -> None:
    with pytest.raises(Refused) as err:
        _run(mode, endpoints)
    assert words in err.value.message


# --- volumes --------------------------------------------------------------------------------


def _vol(**over: Any) -> dict[str, Any]:
    v = {
        "id": "vol-1",
        "name": "data",
        "size_gb": 1,
        "host_name": None,
        "attached_to": [],
        "attached_names": [],
        "created_at": "2026-12-04T00:10:00.123456+00:00",
        "available": True,
    }
    v.update(over)
    return v


def test_volume_create_bodies() -> None:
    assert rv.check_volume_create({"Name": "data", "Driver": "local", "DriverOpts": {}}) == "data"
    assert rv.check_volume_create({}) is None
    for bad, words in (
        ({"Driver": "nfs"}, "volume driver 'nfs'"),
        ({"DriverOpts": {"type": "tmpfs", "o": "size=1m", "size": "1g"}}, "(o, type)"),
        ({"DriverOpts": {"size": "lots"}}, "--opt size=lots: not a size"),
        ({"DriverOpts": {"size": "0"}}, "--opt size=0: not a size"),
        ({"DriverOpts": "size=1g"}, "DriverOpts must be a JSON object"),
        ({"Labels": ["a=b"]}, "Labels must be a JSON object"),
        ({"Labels": {"a": 1}}, "label 'a': a label's value must be a string"),
        ([], "JSON object"),
    ):
        with pytest.raises(Refused) as err:
            rv.check_volume_create(bad)
        assert err.value.status == 400 and words in err.value.message


@pytest.mark.parametrize(
    ("size", "gb"),
    [("1g", 1), ("10G", 10), ("10GB", 10), ("1.5GiB", 2), ("512m", 1), ("1t", 1024),
     (str(3 * (1 << 30)), 3), (str(3 * (1 << 30) + 1), 4), ("2 g", 2)],
)  # fmt: skip
def test_volume_size_options_are_whole_gb_rounded_up(size: str, gb: int) -> None:
    body = {"Name": "d", "DriverOpts": {"size": size}}
    assert rv.check_volume_create(body) == "d"
    assert rv.volume_size_gb(body) == gb
    assert rv.volume_size_gb({"Name": "d"}) is None


def test_volume_view_is_dockers_shape_with_cellplanes_facts() -> None:
    view = rv.volume_view(_vol(host_name="h1", attached_names=["web"]), "team-a")
    assert view["Name"] == "data" and view["Driver"] == "local" and view["Scope"] == "local"
    assert view["CreatedAt"] == "2026-12-04T00:10:00.123456Z"
    assert view["Status"]["Host"] == "h1" and view["Status"]["UsedBy"] == ["web"]
    assert view["Mountpoint"] == ""  # on the volume's host, not here


def test_volume_filters() -> None:
    used, free = _vol(name="used-data", attached_to=["c-1"]), _vol(name="free")
    f = rv.parse_resource_filters('{"dangling": ["true"]}', "volume")
    assert [rv.volume_matches(v, f) for v in (used, free)] == [False, True]
    f = rv.parse_resource_filters('{"name": {"data": true}}', "volume")
    assert [rv.volume_matches(v, f) for v in (used, free)] == [True, False]
    f = rv.parse_resource_filters('{"label": ["team"]}', "volume")
    assert not rv.volume_matches(free, f)
    assert rv.volume_matches(_vol(labels={"team": "a"}), f)
    f = rv.parse_resource_filters('{"label": ["team=b"]}', "volume")
    assert not rv.volume_matches(_vol(labels={"team": "a"}), f)
    with pytest.raises(Refused, match="invalid filter 'size'"):
        rv.parse_resource_filters('{"size": ["1"]}', "volume")
    with pytest.raises(Refused, match="dangling=maybe"):
        rv.parse_resource_filters('{"dangling": ["maybe"]}', "volume")


# --- networks -------------------------------------------------------------------------------


def _net(**over: Any) -> dict[str, Any]:
    n = {
        "id": "net-abc",
        "name": "backend",
        "engine_name": "cp-net-abc",
        "default": False,
        "subnet": "10.89.3.0/24",
        "created_at": "2026-12-04T00:10:00+00:00",
    }
    n.update(over)
    return n


def test_network_create_bodies() -> None:
    ok = {"Name": "backend", "Driver": "bridge", "CheckDuplicate": True, "Attachable": True}
    assert rv.check_network_create({**ok, "IPAM": {"Driver": "default", "Config": []}}) == "backend"
    for bad, status, words in (
        ({"Name": "bridge"}, 403, "pre-defined"),
        ({"Name": "n", "Driver": "overlay"}, 400, "network driver 'overlay'"),
        ({"Name": "n", "Internal": True}, 400, "--internal"),
        ({"Name": "n", "IPAM": {"Config": [{"Subnet": "10.9.0.0/16"}]}}, 400, "--subnet"),
        ({"Name": "n", "Labels": "a=b"}, 400, "Labels must be a JSON object"),
        ({"Name": "n", "Options": {"mtu": "1400"}}, 400, "--opt"),
        ({}, 400, "Name is required"),
    ):
        with pytest.raises(Refused) as err:
            rv.check_network_create(bad)
        assert (err.value.status, words in err.value.message) == (status, True)


def test_network_view_and_its_containers() -> None:
    members = [{"id": "c-1", "name": "web", "address": "10.89.3.5"}]
    view = rv.network_view(_net(), members)
    assert view["Name"] == "backend" and view["Id"] == rv.network_docker_id("net-abc")
    assert view["IPAM"]["Config"] == [{"Subnet": "10.89.3.0/24"}]
    assert view["Containers"][docker_id("c-1")]["IPv4Address"] == "10.89.3.5/24"
    assert rv.network_view(_net(), members, with_containers=False)["Containers"] == {}
    assert rv.network_view(_net(default=True, name="default"), [])["Name"] == rv.BRIDGE
    assert rv.network_ref_matches(view, view["Id"][:12]) and rv.network_ref_matches(view, "backend")
    assert not rv.network_ref_matches(view, "back")


def test_network_filters() -> None:
    custom = rv.network_view(_net(), [])
    bridge = rv.network_view(_net(id="net-d", default=True, subnet="10.89.0.0/24"), [])
    f = rv.parse_resource_filters('{"type": ["custom"]}', "network")
    assert [rv.network_matches(v, f) for v in (custom, bridge)] == [True, False]
    f = rv.parse_resource_filters('{"name": ["back"], "driver": ["bridge"]}', "network")
    assert [rv.network_matches(v, f) for v in (custom, bridge)] == [True, False]
    f = {"id": [bridge["Id"][:10]]}
    assert [rv.network_matches(v, f) for v in (custom, bridge)] == [False, True]
    with pytest.raises(Refused, match="invalid filter 'dangling' for networks"):
        rv.parse_resource_filters('{"dangling": ["true"]}', "network")


# --- events ---------------------------------------------------------------------------------


def _at(second: int) -> str:
    return datetime(2026, 12, 4, 1, 0, second, tzinfo=UTC).isoformat()


def _step(name: str, second: int | None, **extra: Any) -> dict[str, Any]:
    state = "COMPLETED" if second is not None else "QUEUED"
    return {"name": name, "state": state, "finished_at": _at(second) if second else None, **extra}


def _task(kind: str, created: int, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": kind, "cell_id": "c-1", "created_at": _at(created), "steps": steps}


def test_a_runs_tasks_become_create_start_die_destroy() -> None:
    tasks = [
        _task(
            "CREATE_CELL",
            1,
            [
                _step("START", 3),
                _step("RUNNING", None, state="ERROR", error="the cell exited with code 3"),
            ],
        ),
        _task("DELETE_CELL", 8, [_step("STOP", 9), _step("DELETE", 10)]),
    ]
    tasks[0]["steps"][1]["finished_at"] = _at(5)
    remembered = {"c-1": {"name": "job", "image": "busybox", "labels": {"team": "a"}}}
    events = ev.cell_events(tasks, {}, remembered)
    assert [(e["Action"], e["time"] % 60) for _, e in events] == [
        ("create", 1),
        ("start", 3),
        ("die", 5),
        ("destroy", 10),
    ]
    die = events[2][1]
    assert die["Actor"]["ID"] == docker_id("c-1") and die["Type"] == "container"
    assert die["Actor"]["Attributes"] == {
        "team": "a",
        "name": "job",
        "image": "busybox",
        "exitCode": "3",
    }
    assert die["timeNano"] == die["time"] * 1_000_000_000


def test_an_exit_seen_by_a_task_and_by_the_cell_is_one_die() -> None:
    tasks = [_task("STOP_CELL", 1, [_step("STOP", 4)])]
    cells = {"c-1": {"name": "web", "image": "busybox", "exit_code": 0, "ended_at": _at(5)}}
    actions = [e["Action"] for _, e in ev.cell_events(tasks, cells, {})]
    assert actions == ["die", "stop"]
    # A cell that ended on its own (no task about it): its last exit is the die.
    alone = ev.cell_events([], cells, {})
    assert [(e["Action"], e["Actor"]["Attributes"]["exitCode"]) for _, e in alone] == [("die", "0")]
    # Removed since: its last exit as remembered before the removal.
    gone = ev.cell_events([_task("DELETE_CELL", 7, [_step("DELETE", 8)])], {}, cells)
    assert [e["Action"] for _, e in gone] == ["die", "destroy"]
    assert gone[0][1]["Actor"]["Attributes"]["name"] == "web"


def test_new_health_statuses_are_health_status_events() -> None:
    cells = {"c-1": {"name": "db", "image": "postgres"}}
    health = [
        {"cell_id": "c-1", "at": _at(2), "status": "starting"},
        {"cell_id": "c-1", "at": _at(6), "status": "healthy"},
    ]
    events = ev.cell_events([_task("CREATE_CELL", 1, [_step("START", 2)])], cells, {}, health)
    assert [(e["Action"], e["time"] % 60) for _, e in events] == [
        ("create", 1),
        ("start", 2),
        ("health_status: starting", 2),
        ("health_status: healthy", 6),
    ]
    healthy = events[-1][1]
    assert healthy["Actor"]["Attributes"]["name"] == "db"
    # dockerd's rule: `event=health_status` finds every status; a status alone finds itself.
    found = [e["Action"] for _, e in events if ev.event_matches(e, {"event": ["health_status"]})]
    assert found == ["health_status: starting", "health_status: healthy"]
    assert ev.event_matches(healthy, {"event": ["health_status: healthy"]})
    assert not ev.event_matches(healthy, {"event": ["health"]})
    assert not ev.event_matches(events[0][1], {"event": ["health_status"]})


def test_event_filters_and_times() -> None:
    _, container = ev.cell_events(
        [_task("CREATE_CELL", 1, [])], {"c-1": {"name": "web", "image": "busybox"}}, {}
    )[0]
    _, volume = ev.resource_event(10**18, "volume", "create", "data", {"driver": "local"})
    f = ev.parse_event_filters('{"type": ["container"], "event": ["create"]}')
    assert ev.event_matches(container, f) and not ev.event_matches(volume, f)
    assert ev.event_matches(container, {"container": ["web"]})
    assert ev.event_matches(container, {"container": [docker_id("c-1")[:12]]})
    assert not ev.event_matches(container, {"container": ["db"]})
    assert ev.event_matches(volume, {"volume": ["data"]})
    assert not ev.event_matches(container, {"label": ["team=a"]})
    with pytest.raises(Refused, match="invalid filter 'type=cell'"):
        ev.parse_event_filters('{"type": ["cell"]}')
    t = ev.parse_event_time("1764810000.500000000", "since")
    assert t == datetime.fromtimestamp(1764810000.5, UTC)
    assert ev.parse_event_time("2026-12-04T01:00:00Z", "until") == datetime(
        2026, 12, 4, 1, tzinfo=UTC
    )
    with pytest.raises(Refused, match="invalid value for 'since'"):
        ev.parse_event_time("yesterday", "since")


def test_the_endpoint_serves_the_resource_routes_with_and_without_a_version() -> None:
    from cellplane.dockerapi.server import make_app

    app = make_app(cast(Any, None))
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    for method, path in (
        ("POST", "/volumes/create"),
        ("DELETE", "/volumes/{name}"),
        ("POST", "/networks/{ref}/connect"),
        ("GET", "/events"),
        ("GET", "/system/df"),
    ):
        assert (method, path) in served and (method, "/v{version}" + path) in served


def test_the_labels_and_docker_name_a_resource_was_made_with_are_given_back() -> None:
    labels = {"com.docker.compose.project": "p1", "com.docker.compose.volume": "data", "x": "1"}
    vol = _vol(name="p1-data", docker_name="p1_data", labels=labels)
    view = rv.volume_view(vol, "team-a")
    assert (view["Name"], view["Labels"]) == ("p1_data", labels)
    wanted = ["com.docker.compose.project=p1", "com.docker.compose.volume=data"]
    assert rv.volume_matches(vol, {"label": wanted})
    assert not rv.volume_matches(vol, {"label": ["x=2"]})
    assert rv.volume_matches(vol, {"name": ["p1_"]})  # by the name Docker shows
    net = rv.network_view(_net(name="p1-front", docker_name="p1_front", labels=labels), [])
    assert (net["Name"], net["Labels"]) == ("p1_front", labels)
    assert rv.network_matches(net, {"label": ["x=1"]})
    assert rv.network_ref_matches(net, "p1_front") and rv.network_ref_matches(net, "p1-front")
    plain = rv.network_view(_net(), [])
    assert (plain["Name"], plain["Labels"]) == ("backend", {})


def test_a_create_body_that_a_cellplane_resource_refuses_is_named() -> None:
    import pydantic

    from cellplane.services.schemas import NetworkCreate, VolumeCreate

    with pytest.raises(pydantic.ValidationError) as err:
        VolumeCreate(name="d", labels={"k": "v" * 300})
    assert rv.create_refusal("volume", "d", err.value) == (
        "volume create --label: label 'k': keys and values are 1-253 characters"
    )
    with pytest.raises(pydantic.ValidationError) as err:
        NetworkCreate(name="Not_A_Label")
    assert rv.create_refusal("network", "Not_A_Label", err.value).startswith(
        "network name 'Not_A_Label': names on this endpoint are Cellplane network names"
    )
    with pytest.raises(pydantic.ValidationError) as err:
        NetworkCreate(name="n", labels={str(k): "" for k in range(65)})
    assert rv.create_refusal("network", "n", err.value).startswith("network create --label:")


def test_compose_volume_names_map_to_cellplane_volumes_with_any_labels() -> None:
    from cellplane.dockerapi.mapping import _volume_name

    assert _volume_name("proj_data") == "proj-data"
    assert _volume_name("data") == "data"
    assert rv.check_volume_create({"Name": "p_d", "Labels": {"com.docker.compose.project": "p"}})
    assert rv.check_volume_create({"Name": "d", "Labels": {"team": "a"}}) == "d"
