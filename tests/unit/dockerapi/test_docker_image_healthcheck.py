"""The image's HEALTHCHECK as the container's check (`healthchecks.merged`,
`image_archive.image_healthcheck`): dockerd's merge of a create's `Healthcheck` with the image's,
and the image's read from its archive. Pure but for the archive written to a temporary dir."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from cellplane.dockerapi.healthchecks import healthcheck_fields, merged
from cellplane.dockerapi.image_archive import image_healthcheck

S = 1_000_000_000
IMAGE = {
    "Test": ["CMD-SHELL", "wget -q -O- localhost:8080/health || exit 1"],
    "Interval": 5 * S,
    "Timeout": 2 * S,
    "StartPeriod": 10 * S,
    "Retries": 4,
}


def test_no_check_in_the_create_runs_the_images() -> None:
    assert merged(None, IMAGE) == IMAGE
    assert healthcheck_fields(merged(None, IMAGE)) == {
        "command": ["wget -q -O- localhost:8080/health || exit 1"],
        "shell": True,
        "interval_s": 5.0,
        "timeout_s": 2.0,
        "start_period_s": 10.0,
        "retries": 4,
    }


def test_the_creates_own_command_keeps_the_images_durations_it_left_zero() -> None:
    # docker run --health-cmd 'true' --health-retries 9: the CLI sends the rest as 0.
    given = {"Test": ["CMD-SHELL", "true"], "Interval": 0, "Timeout": 0, "Retries": 9}
    fields = healthcheck_fields(merged(given, IMAGE))
    assert fields is not None
    assert (fields["command"], fields["retries"]) == (["true"], 9)
    assert (fields["interval_s"], fields["timeout_s"], fields["start_period_s"]) == (5, 2, 10)


def test_durations_alone_change_the_images_check() -> None:
    # docker run --health-interval 1s: no command of its own, the image's runs every second.
    fields = healthcheck_fields(merged({"Test": [], "Interval": 1 * S}, IMAGE))
    assert fields is not None
    assert fields["command"] == ["wget -q -O- localhost:8080/health || exit 1"]
    assert (fields["interval_s"], fields["retries"]) == (1.0, 4)


def test_no_healthcheck_runs_none_even_with_the_images() -> None:
    assert healthcheck_fields(merged({"Test": ["NONE"]}, IMAGE)) is None


@pytest.mark.parametrize("image", [None, "CMD true", ["x"]])
def test_without_an_image_check_the_creates_is_as_it_was(image: Any) -> None:
    given = {"Test": ["CMD", "true"], "Interval": 3 * S}
    assert merged(given, image) == given
    assert merged(None, image) is None


def _archive(tmp_path: Path, config: dict[str, Any]) -> Path:
    """A docker-archive holding only its manifest and config (what `image_config` reads)."""
    raw = json.dumps({"architecture": "amd64", "os": "linux", "config": config}).encode()
    name = f"{hashlib.sha256(raw).hexdigest()}.json"
    manifest = json.dumps([{"Config": name, "RepoTags": ["x:1"], "Layers": []}]).encode()
    path = tmp_path / f"img-{len(list(tmp_path.iterdir()))}.tar"
    with tarfile.open(path, "w") as tf:
        for member, data in ((name, raw), ("manifest.json", manifest)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_the_images_check_is_read_from_its_archive(tmp_path: Path) -> None:
    with_check = _archive(tmp_path, {"Cmd": ["httpd"], "Healthcheck": IMAGE})
    assert image_healthcheck(with_check) == IMAGE
    assert image_healthcheck(_archive(tmp_path, {"Cmd": ["sh"]})) is None
    assert image_healthcheck(tmp_path / "gone.tar") is None
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a tar")
    assert image_healthcheck(broken) is None


def test_an_archive_written_again_is_read_again(tmp_path: Path) -> None:
    path = _archive(tmp_path, {"Healthcheck": IMAGE})
    assert image_healthcheck(path) == IMAGE
    other = _archive(tmp_path, {"Healthcheck": {**IMAGE, "Retries": 7}})
    os.replace(other, path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    check = image_healthcheck(path)
    assert check is not None and check["Retries"] == 7
