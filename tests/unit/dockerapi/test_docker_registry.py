"""The operator's registries (`CELLPLANE_REGISTRIES`) and what pull/push may name (pure)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from cellplane.dockerapi.image_archive import catalog_name, digest_name, repo_digests, repo_tags
from cellplane.dockerapi.mapping import Refused
from cellplane.dockerapi.registry import allowed, commit_changes
from cellplane.registries import (
    Registry,
    RegistryError,
    auth_header,
    parse_registries,
    registry_host,
    split_digest,
    split_reference,
)
from cellplane.settings import ServerSettings


def test_the_setting_lists_registries_with_their_options(tmp_path: Path) -> None:
    got = parse_registries(" 127.0.0.1:5000;insecure, registry.example.com;auth=/etc/reg.auth,")
    assert got == (
        Registry("127.0.0.1:5000", insecure=True),
        Registry("registry.example.com", auth_file=Path("/etc/reg.auth")),
    )
    assert parse_registries("") == ()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("busybox", "not a registry host"),  # a Docker Hub name, not a registry
        ("http://r.example.com", "not a registry host"),
        ("r.example.com/team", "not a registry host"),
        ("r.example.com;tls=off", "unknown option 'tls=off'"),
        ("r.example.com;auth=relative.txt", "unknown option"),
        ("r.example.com,r.example.com", "listed twice"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_entry(text: str, named: str) -> None:
    with pytest.raises(RegistryError, match=named):
        parse_registries(text)
    with pytest.raises(ValueError, match="registries:"):
        ServerSettings(data_dir=Path("/nonexistent"), registries=text)


def test_credentials_come_from_the_auth_file_when_used(tmp_path: Path) -> None:
    f = tmp_path / "auth"
    f.write_text("bot:s3cret:with-colon\n")
    assert Registry("r.example.com", auth_file=f).credentials() == ("bot", "s3cret:with-colon")
    f.write_text("no-colon")
    with pytest.raises(RegistryError, match="USER:PASSWORD"):
        Registry("r.example.com", auth_file=f).credentials()
    with pytest.raises(RegistryError, match="cannot be read"):
        Registry("r.example.com", auth_file=tmp_path / "missing").credentials()
    doc = json.loads(base64.urlsafe_b64decode(auth_header("u", "p", "r.example.com")))
    assert doc == {"username": "u", "password": "p", "serveraddress": "r.example.com"}


@pytest.mark.parametrize(
    ("ref", "host"),
    [
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000"),
        ("localhost/app", "localhost"),
        ("r.example.com/team/app", "r.example.com"),
        ("busybox", None),
        ("me/app:1", None),
        ("docker.io/library/busybox", None),
    ],
)
def test_the_registry_of_a_reference_is_read_as_docker_reads_it(ref: str, host: str | None) -> None:
    assert registry_host(ref) == host


def test_references_split_and_bad_ones_are_named() -> None:
    assert split_reference("127.0.0.1:5000/team/app:1.0") == ("127.0.0.1:5000", "team/app", "1.0")
    assert split_reference("127.0.0.1:5000/app") == ("127.0.0.1:5000", "app", "latest")
    with pytest.raises(RegistryError, match="invalid repository 'Team/App'"):
        split_reference("r.example.com/Team/App:1")
    with pytest.raises(RegistryError, match="by digest"):
        split_reference("r.example.com/app@sha256:" + "a" * 64)


def test_catalogue_names_keep_a_listed_registry_only() -> None:
    listed = ["127.0.0.1:5000"]
    assert catalog_name("127.0.0.1:5000/team/app:1", listed) == "127.0.0.1:5000/team/app:1"
    assert catalog_name("127.0.0.1:5000/app:latest", listed) == "127.0.0.1:5000/app"
    assert catalog_name("docker.io/library/app:2", listed) == "app:2"
    with pytest.raises(Refused, match=r"one-word names.*\(127\.0\.0\.1:5000\)"):
        catalog_name("10.0.0.1:5000/app", listed)
    with pytest.raises(Refused, match="one-word names"):
        catalog_name("127.0.0.1:5000/app")  # no registry listed


def test_pull_and_push_name_the_refused_registry_or_the_allowed_ones() -> None:
    regs = parse_registries("127.0.0.1:5000;insecure")
    assert allowed(regs, "127.0.0.1:5000/app:1").insecure
    with pytest.raises(Refused) as exc:
        allowed(regs, "10.1.2.3:5000/app:1")
    assert exc.value.status == 403
    assert "registry 10.1.2.3:5000 is not allowed" in str(exc.value)
    assert "127.0.0.1:5000" in str(exc.value)
    with pytest.raises(Refused, match=r"Docker Hub is not allowed.*\(127\.0\.0\.1:5000\)"):
        allowed(regs, "busybox:latest")
    with pytest.raises(Refused, match="none are configured"):
        allowed((), "127.0.0.1:5000/app:1")


def test_commit_changes_are_checked_and_passed_on_as_given() -> None:
    assert commit_changes(
        ["env A=1", "", 'CMD ["sh", "-c", "x, y"]', "WORKDIR /tmp\nUSER 1000"]
    ) == [
        "ENV A=1",
        'CMD ["sh", "-c", "x, y"]',
        "WORKDIR /tmp",
        "USER 1000",
    ]
    assert commit_changes([]) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("HEALTHCHECK CMD true", "HEALTHCHECK"),
        ("ONBUILD RUN true", "ONBUILD"),
        ("RUN rm -rf /", "RUN"),
        ("FROM scratch", "FROM"),
        ("ENV", "ENV needs an argument"),
        ("ENV A=1\nCOPY . /", "COPY"),
    ],
)
def test_a_commit_change_commit_does_not_apply_is_refused_by_name(change: str, named: str) -> None:
    with pytest.raises(Refused) as refused:
        commit_changes(["ENV OK=1", change])
    assert refused.value.status == 400 and named in refused.value.message


D = "sha256:" + "0123456789abcdef" * 4


def test_references_by_digest_split_and_name_a_catalogue_image() -> None:
    assert split_digest(f"127.0.0.1:5000/team/app@{D}") == ("127.0.0.1:5000", "team/app", D)
    # A tag beside the digest is dropped, as Docker drops it: the digest names the image.
    assert split_digest(f"127.0.0.1:5000/app:1@{D}") == ("127.0.0.1:5000", "app", D)
    assert digest_name(f" 127.0.0.1:5000/app:1@{D} ") == f"127.0.0.1:5000/app@{D}"
    names = ["127.0.0.1:5000/app:1", f"127.0.0.1:5000/app@{D}", "app"]
    assert repo_tags(names) == ["127.0.0.1:5000/app:1", "app:latest"]
    assert repo_digests(names) == [f"127.0.0.1:5000/app@{D}"]


@pytest.mark.parametrize(
    ("ref", "named"),
    [
        ("127.0.0.1:5000/app", "names no digest"),
        ("127.0.0.1:5000/app@sha256:abc", "invalid digest 'sha256:abc'"),
        ("127.0.0.1:5000/app@sha512:" + "a" * 128, "invalid digest"),
        ("127.0.0.1:5000/app@" + D.upper(), "invalid digest"),
        (f"127.0.0.1:5000/App@{D}", "invalid repository 'App'"),
        (f"app@{D}", "names no registry"),
    ],
)
def test_a_bad_reference_by_digest_is_named(ref: str, named: str) -> None:
    with pytest.raises(RegistryError, match=named.replace("(", r"\(")):
        split_digest(ref)
    with pytest.raises(Refused) as refused:
        digest_name(ref)
    assert refused.value.status == 400 and named in refused.value.message


def test_a_name_by_digest_longer_than_the_catalogue_keeps_is_refused() -> None:
    with pytest.raises(Refused, match="longer than 128"):
        digest_name(f"127.0.0.1:5000/{'a' * 60}@{D}")
