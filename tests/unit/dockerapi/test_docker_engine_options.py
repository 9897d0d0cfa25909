"""`--cap-drop`, `--add-host`, `--tmpfs`, `--stop-signal`, `--init`, `--group-add`, `--ulimit`: from a create's body to the cell's
reserved labels (`dockerapi.engine_opts`, `wire.engine_options`), from the labels to the agent's
`ContainerSpec` and podman's create body, and back in `inspect`. Pure."""

from __future__ import annotations

from typing import Any

import pytest
from test_docker_stdin import _assignment

from cellplane.agent.spec import container_spec
from cellplane.dockerapi.engine_opts import option_labels, option_views
from cellplane.dockerapi.mapping import Refused, cell_fields
from cellplane.drivers.base import DROPPED_CAPABILITIES
from cellplane.drivers.podman_bodies import compat_create_body
from cellplane.wire import engine_options as eo

BODY: dict[str, Any] = {
    "Image": "busybox",
    "StopSignal": "int",
    "HostConfig": {
        "CapDrop": ["net_raw", "CAP_CHOWN", "NET_RAW"],
        "ExtraHosts": ["db.internal:10.1.2.3", "v6=fd00::1", "api:[fd00::2]"],
        "Tmpfs": {"/scratch/": "size=8m,mode=1777", "/run": ""},
        "Init": True,
        "GroupAdd": ["audio", "1234", "audio"],
        "Ulimits": [
            {"Name": "nproc", "Soft": 64, "Hard": -1},
            {"Name": "nofile", "Soft": 1024, "Hard": 2048},
        ],
    },
}


NONE = {"CapDrop": None, "ExtraHosts": None, "GroupAdd": None, "Ulimits": None}


def test_the_options_travel_as_reserved_labels_to_the_engine_and_back_to_inspect() -> None:
    labels = cell_fields("web", BODY)["labels"]
    assert set(labels) == {
        eo.CAP_DROP_LABEL,
        eo.EXTRA_HOSTS_LABEL,
        eo.TMPFS_LABEL,
        eo.STOP_SIGNAL_LABEL,
        eo.INIT_LABEL,
        eo.GROUP_ADD_LABEL,
        eo.ULIMITS_LABEL,
    }
    spec = container_spec(_assignment(labels), "hst-1", "sha256:abc")
    assert spec.cap_drop == ("CAP_CHOWN", "CAP_NET_RAW")
    assert spec.extra_hosts == (("db.internal", "10.1.2.3"), ("v6", "fd00::1"), ("api", "fd00::2"))
    assert spec.tmpfs == (("/run", ""), ("/scratch", "size=8m,mode=1777"))
    assert spec.stop_signal == "SIGINT"
    assert spec.init and spec.group_add == ("audio", "1234")
    assert spec.ulimits == (("nofile", 1024, 2048), ("nproc", 64, -1))
    assert not any(k.startswith("cellplane.docker.") for k in spec.labels)
    body = compat_create_body(spec)
    assert body["HostConfig"]["CapDrop"] == [*DROPPED_CAPABILITIES, "CHOWN", "NET_RAW"]
    assert body["HostConfig"]["ExtraHosts"] == ["db.internal:10.1.2.3", "v6:fd00::1", "api:fd00::2"]
    assert body["HostConfig"]["Tmpfs"] == {"/run": "", "/scratch": "size=8m,mode=1777"}
    assert body["StopSignal"] == "SIGINT"
    ulimits = [
        {"Name": "nofile", "Soft": 1024, "Hard": 2048},
        {"Name": "nproc", "Soft": 64, "Hard": -1},
    ]
    assert body["HostConfig"]["Ulimits"] == ulimits
    assert body["HostConfig"]["Init"] is True
    assert body["HostConfig"]["GroupAdd"] == ["audio", "1234"]
    host, config = option_views(labels)
    assert host == {
        "CapDrop": ["CAP_CHOWN", "CAP_NET_RAW"],
        "ExtraHosts": ["db.internal:10.1.2.3", "v6:fd00::1", "api:fd00::2"],
        "Tmpfs": {"/run": "", "/scratch": "size=8m,mode=1777"},
        "Init": True,
        "GroupAdd": ["audio", "1234"],
        "Ulimits": ulimits,
    }
    assert config == {"StopSignal": "SIGINT"}


def test_without_options_nothing_is_added() -> None:
    assert option_labels({"Image": "busybox"}, {}) == {}
    assert option_views({}) == (NONE, {})
    spec = container_spec(_assignment({}), "hst-1", "sha256:abc")
    body = compat_create_body(spec)
    assert body["HostConfig"]["CapDrop"] == list(DROPPED_CAPABILITIES)
    assert "ExtraHosts" not in body["HostConfig"] and "Tmpfs" not in body["HostConfig"]
    assert "StopSignal" not in body
    assert not {"Init", "GroupAdd", "Ulimits"} & set(body["HostConfig"])


def test_limits_not_asked_for_stay_at_every_cells_defaults() -> None:
    # Given any ulimit, podman would take the host's for the others (above its hard limits).
    labels = option_labels({}, {"Ulimits": [{"Name": "core", "Soft": 0, "Hard": 0}]})
    spec = container_spec(_assignment(labels), "hst-1", "sha256:abc")
    assert compat_create_body(spec)["HostConfig"]["Ulimits"] == [
        {"Name": "nofile", "Soft": 1024, "Hard": 1024},
        {"Name": "nproc", "Soft": 4096, "Hard": 4096},
        {"Name": "core", "Soft": 0, "Hard": 0},
    ]


def test_cap_drop_all_drops_every_capability() -> None:
    assert eo.parse_cap_drop(["all", "NET_RAW"]) == ("ALL", "CAP_NET_RAW")
    labels = option_labels({}, {"CapDrop": ["ALL"]})
    spec = container_spec(_assignment(labels), "hst-1", "sha256:abc")
    assert compat_create_body(spec)["HostConfig"]["CapDrop"] == ["ALL"]


@pytest.mark.parametrize(
    ("raw", "stored"),
    [("SIGTERM", None), ("term", None), ("15", None), ("SIGINT", "SIGINT"), ("9", "SIGKILL"),
     ("usr1", "SIGUSR1"), ("RTMIN+3", "37")],
)  # fmt: skip
def test_the_stop_signal_is_kept_by_name_and_sigterm_is_the_default(
    raw: str, stored: str | None
) -> None:
    labels = option_labels({"StopSignal": raw}, {})
    assert labels.get(eo.STOP_SIGNAL_LABEL) == stored
    if stored is not None:
        assert eo.from_labels(labels).stop_signal == stored


@pytest.mark.parametrize(
    ("body", "host", "words"),
    [
        ({"StopSignal": "SIGNOPE"}, {}, "Invalid signal: SIGNOPE"),
        ({"StopSignal": 2}, {}, "--stop-signal: a signal name or number"),
        ({}, {"CapDrop": "NET_RAW"}, "--cap-drop: a list"),
        ({}, {"CapDrop": [""]}, "not a capability name"),
        ({}, {"CapDrop": ["CAP_FLY"]}, "--cap-drop CAP_FLY: unknown capability"),
        ({}, {"ExtraHosts": ["db"]}, "--add-host db: not NAME:ADDRESS"),
        ({}, {"ExtraHosts": ["-db-:10.0.0.1"]}, "--add-host -db-:10.0.0.1: not NAME:ADDRESS"),
        ({}, {"ExtraHosts": ["db:nope"]}, "invalid IP address 'nope'"),
        ({}, {"ExtraHosts": ["db:host-gateway"]}, "host-gateway is not supported"),
        ({}, {"ExtraHosts": [f"h{i}.example:10.0.0.{i}" for i in range(20)]}, "too many entries"),
        ({}, {"Tmpfs": ["/t"]}, "--tmpfs: HostConfig.Tmpfs must map"),
        ({}, {"Tmpfs": {"/": ""}}, "--tmpfs /: the path must be absolute and not /"),
        ({}, {"Tmpfs": {"/a:b": ""}}, "the path must be absolute"),
        ({}, {"Tmpfs": {"/t": 5}}, "its options must be a string"),
        ({}, {"Tmpfs": {"/t": "size=big"}}, "option 'size=big' is not supported"),
        ({}, {"Tmpfs": {"/t": "mode=999"}}, "option 'mode=999'"),
        ({}, {"Tmpfs": {"/t": "remount"}}, "option 'remount'"),
        ({}, {"Init": "yes"}, "--init: true or false"),
        ({}, {"GroupAdd": ["wheel group"]}, "--group-add wheel group: not a group"),
        ({}, {"GroupAdd": [7]}, "--group-add 7: not a group"),
        ({}, {"Ulimits": [{"Name": "files", "Soft": 1, "Hard": 1}]}, "--ulimit files: unknown"),
        ({}, {"Ulimits": [{"Name": "nofile", "Soft": 9, "Hard": 8}]}, "soft limit is above"),
        ({}, {"Ulimits": [{"Name": "nofile", "Soft": -1, "Hard": 8}]}, "soft limit is above"),
        ({}, {"Ulimits": [{"Name": "nofile", "Soft": "1", "Hard": 8}]}, "whole numbers"),
        ({}, {"Ulimits": [{"Name": "core", "Soft": -2, "Hard": 8}]}, "whole numbers"),
        ({}, {"Ulimits": ["nofile=1"]}, "not NAME=SOFT[:HARD]"),
    ],
)
def test_a_bad_option_is_refused_naming_it(
    body: dict[str, Any], host: dict[str, Any], words: str
) -> None:
    with pytest.raises(Refused) as err:
        option_labels(body, host)
    assert err.value.status == 400
    assert words in err.value.message


@pytest.mark.parametrize(
    "labels",
    [
        {eo.CAP_DROP_LABEL: "CAP_FLY"},
        {eo.EXTRA_HOSTS_LABEL: "not json"},
        {eo.EXTRA_HOSTS_LABEL: '[["db", "nope"]]'},
        {eo.TMPFS_LABEL: '{"relative": ""}'},
        {eo.STOP_SIGNAL_LABEL: "SIGINT; rm -rf /"},
        {eo.GROUP_ADD_LABEL: "wheel group"},
        {eo.ULIMITS_LABEL: "nofile=x:y"},
        {eo.ULIMITS_LABEL: "nofile=9:8"},
    ],
)
def test_the_agent_checks_the_labels_again(labels: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        container_spec(_assignment(labels), "hst-1", "sha256:abc")
    assert option_views(labels) == (NONE, {})
