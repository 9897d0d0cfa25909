"""The agent's build steps (`agent.build.Builder`) over a recording engine: bases are loaded from
the catalogue only when missing and named as FROM names them, the engine's progress is relayed,
an error ends the build without an archive, and the archive's id comes last."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cellplane.agent.build import Builder
from cellplane.drivers.errors import PermanentDriverError


class Engine:
    def __init__(self, have: set[str], progress: list[dict[str, Any]]) -> None:
        self.have = have
        self.progress = progress
        self.calls: list[tuple[str, str]] = []

    def has_image(self, ref: str) -> bool:
        return ref in self.have

    def load_image(self, path: Path) -> list[str]:
        self.calls.append(("load", path.read_text()))
        return []

    def tag_image(self, ref: str, name: str) -> None:
        self.calls.append(("tag", f"{ref} {name}"))

    def build_image(self, context: Path, options: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.calls.append(("build", context.read_text()))
        yield from self.progress

    def save_image(self, ref: str, dest: Path) -> None:
        self.calls.append(("save", ref))
        dest.write_text("archive")


class Server:
    def __init__(self) -> None:
        self.downloads: list[str] = []

    def download_image(self, image_id: str, dest: Path) -> None:
        self.downloads.append(image_id)
        dest.write_text(f"image {image_id}")


def _run(builder: Builder, tmp_path: Path, bases: list[dict[str, str]]) -> list[dict[str, Any]]:
    builder.dir.mkdir(parents=True, exist_ok=True)
    ctx = tmp_path / "ctx.tar"
    ctx.write_text("context")
    spec = {"tag": "cp-build-x", "bases": bases}
    return [json.loads(line) for line in builder._run(ctx, spec)]


BASE = {"id": "img_1", "engine_ref": "sha256:aa", "name": "busybox"}


def test_a_missing_base_is_loaded_then_named_and_the_archive_comes_last(tmp_path: Path) -> None:
    engine = Engine(set(), [{"stream": "Step 1/1 : FROM busybox\n"}, {"aux": {"ID": "sha256:bb"}}])
    server = Server()
    lines = _run(Builder(engine, server, tmp_path), tmp_path, [BASE])
    assert server.downloads == ["img_1"]
    assert engine.calls[:3] == [
        ("load", "image img_1"),
        ("tag", "sha256:aa busybox"),
        ("build", "context"),
    ]
    assert engine.calls[3] == ("save", "sha256:bb")
    assert lines[1] == {"stream": "Step 1/1 : FROM busybox\n"}
    build_id = lines[-1]["cellplane_build"]
    assert lines[-1]["image"] == "sha256:bb"
    assert (tmp_path / "builds" / f"{build_id}.tar").read_text() == "archive"
    assert sorted(p.name for p in (tmp_path / "builds").iterdir()) == [f"{build_id}.tar"]


def test_a_present_base_is_not_downloaded_and_an_error_ends_the_build(tmp_path: Path) -> None:
    failure = {"errorDetail": {"message": "exit status 7"}, "error": "exit status 7"}
    engine = Engine({"sha256:aa"}, [{"stream": "Step 2/2 : RUN false\n"}, failure])
    server = Server()
    lines = _run(Builder(engine, server, tmp_path), tmp_path, [BASE])
    assert server.downloads == []
    assert lines[-1] == failure
    assert not any("cellplane_build" in line for line in lines)
    assert [c for c, _ in engine.calls] == ["tag", "build"]


def test_a_base_that_cannot_be_prepared_is_a_docker_error(tmp_path: Path) -> None:
    class Refusing(Engine):
        def tag_image(self, ref: str, name: str) -> None:
            raise PermanentDriverError("no such image")

    lines = _run(Builder(Refusing({"sha256:aa"}, []), Server(), tmp_path), tmp_path, [BASE])
    assert lines[-1]["error"] == "preparing the base image: no such image"


def test_an_agent_starting_removes_what_an_earlier_run_left(tmp_path: Path) -> None:
    (tmp_path / "builds").mkdir()
    (tmp_path / "builds" / "bdeadbeef.tar").write_text("never fetched")
    Builder(Engine(set(), []), Server(), tmp_path)
    assert list((tmp_path / "builds").iterdir()) == []
