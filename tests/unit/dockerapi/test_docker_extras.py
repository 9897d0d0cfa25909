"""The pure parts of `docker cp`, `stats` and `update` (dockerapi.extras_views)."""

from __future__ import annotations

import base64
import io
import json
import tarfile

import pytest

from cellplane.dockerapi.extras_views import (
    TarChecker,
    check_container_path,
    kill_signal,
    path_stat_header,
    read_only_refusal,
    stats_view,
    update_fields,
)
from cellplane.dockerapi.mapping import Refused


def _tar(*members: tarfile.TarInfo, fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for m in members:
            data = b"x" * m.size if m.isfile() else None
            tar.addfile(m, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, size: int = 3) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _check(data: bytes, chunk: int) -> TarChecker:
    checker = TarChecker()
    for i in range(0, len(data), chunk):
        checker.feed(data[i : i + chunk])
    return checker


@pytest.mark.parametrize("chunk", [1, 7, 512, 1 << 20])
def test_a_clean_archive_passes_in_any_chunking(chunk: int) -> None:
    data = _tar(
        _file("a.txt", 700),
        _file("dir/./b.txt", 0),
        _file("dir/sub/../c.txt"),
        _link("dir/l", "/etc/passwd", tarfile.SYMTYPE),  # a symlink: extracted inside, as Docker
        _link("dir/h", "a.txt", tarfile.LNKTYPE),
    )
    assert _check(data, chunk).members == 5


@pytest.mark.parametrize(
    "member",
    [
        _file("../evil"),
        _file("a/../../evil"),
        _file("/etc/evil"),
        _link("h", "../../etc/shadow", tarfile.LNKTYPE),
    ],
)
def test_a_member_leaving_the_destination_is_refused_by_name(member: tarfile.TarInfo) -> None:
    data = _tar(_file("ok.txt"), member)
    with pytest.raises(ValueError, match=r"leaves the destination|points outside"):
        _check(data, 100)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names_are_read_from_gnu_and_pax_headers(fmt: int) -> None:
    long_ok = "d/" + "n" * 150 + "/f.txt"
    assert _check(_tar(_file(long_ok), fmt=fmt), 333).members == 1
    long_bad = "d/" + "../" * 60 + "evil"
    with pytest.raises(ValueError, match="leaves the destination"):
        _check(_tar(_file(long_bad), fmt=fmt), 333)


def test_garbage_is_not_a_tar() -> None:
    with pytest.raises(ValueError, match="not a tar archive"):
        _check(b"\x00" * 10 + b"hello" * 200, 512)


def test_path_stat_header_is_base64_json_with_dockers_fields() -> None:
    header = path_stat_header(
        {"name": "f", "size": 5, "mode": 420, "mtime": "2026-01-01T00:00:00Z"}
    )
    assert json.loads(base64.b64decode(header)) == {
        "name": "f",
        "size": 5,
        "mode": 420,
        "mtime": "2026-01-01T00:00:00Z",
        "linkTarget": "",
    }


@pytest.mark.parametrize("bad", ["", "relative/path", "/a\x00b"])
def test_container_paths_must_be_absolute(bad: str) -> None:
    with pytest.raises(Refused) as e:
        check_container_path(bad)
    assert e.value.status == 400


def test_read_only_root_refuses_but_a_writable_volume_does_not() -> None:
    cell = {
        "read_only": True,
        "volumes": [
            {"volume": "data", "path": "/data", "read_only": False},
            {"volume": "conf", "path": "/conf", "read_only": True},
        ],
    }
    refused = read_only_refusal(cell, "/tmp")
    assert refused is not None and refused.status == 403
    assert "read-only" in refused.message
    assert read_only_refusal(cell, "/data/sub") is None
    assert read_only_refusal(cell, "/conf") is not None
    assert read_only_refusal(cell, "/database") is not None
    assert read_only_refusal({"read_only": False}, "/tmp") is None


def test_stats_view_has_dockers_shape_with_the_containers_id_and_name() -> None:
    sample = {
        "read": "2026-12-04T00:00:01Z",
        "preread": "2026-12-04T00:00:00Z",
        "cpu_stats": {
            "cpu_usage": {"total_usage": 500, "percpu_usage": [500]},
            "system_cpu_usage": 9000,
            "online_cpus": 2,
        },
        "memory_stats": {"usage": 1234, "limit": 64 * 1024 * 1024},
        "pids_stats": {"current": 2},
        "networks": {"eth0": {"rx_bytes": 10, "tx_bytes": 20}},
        "name": "cp-cel_x",
        "id": "engine-id",
    }
    view = stats_view(sample, "a" * 64, "web", 64 * 1024 * 1024)
    assert view["id"] == "a" * 64 and view["name"] == "/web"
    assert view["cpu_stats"]["cpu_usage"]["total_usage"] == 500
    assert view["cpu_stats"]["online_cpus"] == 2
    assert view["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert view["memory_stats"] == {
        "usage": 1234,
        "max_usage": 0,
        "stats": {},
        "limit": 64 * 1024 * 1024,
    }
    assert view["networks"] == {"eth0": {"rx_bytes": 10, "tx_bytes": 20}}
    assert view["pids_stats"] == {"current": 2, "limit": 0}
    assert view["read"] == "2026-12-04T00:00:01Z"


def test_stats_view_reports_the_cells_limit_over_the_engines() -> None:
    # podman 4.3 reports the limit of the container's creation after a live update
    stale = {"memory_stats": {"usage": 1, "limit": 64 * 1024 * 1024}}
    assert stats_view(stale, "i", "n", 96 * 1024 * 1024)["memory_stats"]["limit"] == 96 * 1024**2
    assert stats_view(stale, "i", "n", 0)["memory_stats"]["limit"] == 64 * 1024 * 1024
    assert stats_view({}, "i", "n", 0)["memory_stats"]["limit"] == 0


def test_update_fields_reads_cpus_and_memory() -> None:
    cli = {  # what docker 28's `update --cpus 0.5 -m 128m` sends, zeros and all
        "NanoCpus": 500_000_000,
        "Memory": 128 * 1024 * 1024,
        "MemorySwap": 0,
        "CpuShares": 0,
        "BlkioWeight": 0,
        "Devices": None,
        "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
    }
    assert update_fields(cli) == {"cpu": 0.5, "memory_mb": 128}
    assert update_fields({"CpuQuota": 25_000, "CpuPeriod": 100_000}) == {"cpu": 0.25}
    assert update_fields({"CpuQuota": 50_000}) == {"cpu": 0.5}
    assert update_fields({"RestartPolicy": {"Name": "always"}}) == {
        "restart": {"Name": "always", "MaximumRetryCount": 0}
    }


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"CpuShares": 512, "BlkioWeight": 10}, "BlkioWeight, CpuShares"),
        ({"Memory": 1024}, "Minimum memory"),
        ({"Memory": 64 * 1024 * 1024, "MemorySwap": 128 * 1024 * 1024}, "--memory-swap"),
        ({"NanoCpus": -1}, "negative"),
        ([], "JSON object"),
    ],
)
def test_update_fields_refuses_what_it_does_not_apply(body: object, words: str) -> None:
    with pytest.raises(Refused) as e:
        update_fields(body)
    assert e.value.status == 400 and words in e.value.message


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("", 9),  # the default: SIGKILL
        ("KILL", 9),
        ("sigkill", 9),
        ("9", 9),
        ("hup", 1),
        ("SIGHUP", 1),
        ("Usr1", 10),
        ("SIGTERM", 15),
        ("15", 15),
        ("IOT", 6),  # aliases dockerd knows too
        ("CLD", 17),
        ("RTMIN", 34),
        ("RTMIN+3", 37),
        ("SIGRTMAX-1", 63),
        ("RTMAX", 64),
        ("64", 64),
    ],
)
def test_kill_signal_reads_names_and_numbers_as_dockerd(raw: str, number: int) -> None:
    assert kill_signal(raw) == number


@pytest.mark.parametrize(
    "raw",
    ["0", "65", "-1", "NOPE", "SIG", " ", "RTMIN+0", "RTMIN+16", "RTMAX-15", "SIG_DFL", "9x"],
)
def test_kill_signal_refuses_what_is_no_signal_by_name(raw: str) -> None:
    with pytest.raises(Refused) as e:
        kill_signal(raw)
    assert (e.value.status, str(e.value)) == (400, f"Invalid signal: {raw}")
