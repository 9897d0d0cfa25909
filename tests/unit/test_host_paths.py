"""The operator's allowed host paths (`cellplane.host_paths`): the server's check of a path as
written, and the agent's check of the same path resolved on its host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cellplane.host_paths import (
    SETTING,
    HostPathError,
    allowed_root,
    normalise,
    parse_allowed,
    resolve_under,
)
from cellplane.settings import ServerSettings

ALLOWED = ("/data", "/srv/shared/app")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("  ", ()),
        ("/data", ("/data",)),
        ("/data:/srv/x", ("/data", "/srv/x")),
        ("/data,/srv/x", ("/data", "/srv/x")),
        ("/data/, /srv//x/./ : /data", ("/data", "/srv/x")),  # normalised, each once
        ("//data", ("/data",)),
        ("/", ("/",)),
    ],
)
def test_the_setting_is_a_list_of_absolute_paths(text: str, expected: tuple[str, ...]) -> None:
    assert parse_allowed(text) == expected


@pytest.mark.parametrize("text", ["data", "/data:relative", "/data,./x", "/a/../b", "~/x"])
def test_a_setting_with_a_relative_or_dotted_entry_is_refused_naming_it(text: str) -> None:
    with pytest.raises(HostPathError, match=SETTING):
        parse_allowed(text)


def test_the_server_refuses_to_start_with_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SETTING, "/data:relative")
    with pytest.raises(ValueError, match="allowed_host_paths"):
        ServerSettings(data_dir=Path("/given"))
    monkeypatch.setenv(SETTING, "/data,/srv/x")
    assert parse_allowed(ServerSettings(data_dir=Path("/given")).allowed_host_paths) == (
        "/data",
        "/srv/x",
    )


@pytest.mark.parametrize(
    ("path", "root"),
    [
        ("/data", "/data"),
        ("/data/", "/data"),
        ("/data/x", "/data"),
        ("/data/x/y/", "/data"),
        ("/data/./x", "/data"),
        ("//data//x", "/data"),
        ("/srv/shared/app", "/srv/shared/app"),
        ("/srv/shared/app/logs", "/srv/shared/app"),
    ],
)
def test_a_path_at_or_below_a_listed_directory_is_allowed(path: str, root: str) -> None:
    assert allowed_root(path, ALLOWED) == root


@pytest.mark.parametrize(
    "path",
    [
        "/data2",  # a prefix of the text, not of the path
        "/data2/x",
        "/dat",
        "/datax/y",
        "/",
        "/etc",
        "/srv/shared",  # the parent of a listed directory
        "/srv/shared/app2",
        "/srv/shared/application",
    ],
)
def test_a_path_outside_every_listed_directory_is_not(path: str) -> None:
    assert allowed_root(path, ALLOWED) is None


@pytest.mark.parametrize(
    "path",
    ["data/x", "./data", "../data", "~/data", "", "/data/../etc", "/data/x/..", "/data/\x00x"],
)
def test_a_relative_or_dotted_path_is_refused_before_any_comparison(path: str) -> None:
    with pytest.raises(HostPathError):
        allowed_root(path, ALLOWED)


def test_nothing_is_allowed_without_a_list_and_everything_under_root() -> None:
    assert allowed_root("/data", ()) is None
    assert allowed_root("/etc/shadow", ("/",)) == "/"
    assert allowed_root("/data/x", ("/data", "/data/x")) == "/data/x"  # the closest


def test_normalise() -> None:
    assert normalise("//a/./b//") == "/a/b"
    assert normalise("/") == "/"
    assert normalise("/a.b/..c") == "/a.b/..c"  # only a whole `..` component is refused


def test_the_agent_resolves_the_path_and_keeps_it_under_its_directory(tmp_path: Path) -> None:
    root = tmp_path / "allowed"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "in-link").symlink_to(root / "sub")
    (root / "out-link").symlink_to(tmp_path / "outside")
    assert resolve_under(str(root / "sub"), str(root)) == str(root / "sub")
    assert resolve_under(str(root / "in-link"), str(root)) == str(root / "sub")
    with pytest.raises(HostPathError, match="outside the allowed directory"):
        resolve_under(str(root / "out-link"), str(root))
    with pytest.raises(HostPathError, match="does not exist on this host"):
        resolve_under(str(root / "missing"), str(root))
    assert not (root / "missing").exists()  # never created
    with pytest.raises(HostPathError, match=SETTING):
        resolve_under(str(root / "sub"), None)  # no listed directory admits it (any more)
    with pytest.raises(HostPathError, match=SETTING):
        resolve_under(str(tmp_path / "outside"), str(root))  # not under the root it names


def test_a_listed_directory_that_is_a_link_is_compared_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "x").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert resolve_under(str(link / "x"), str(link)) == os.path.realpath(real / "x")
