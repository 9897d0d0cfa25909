"""What the endpoint reads of a registry's API: the tags of a repository (`docker pull
--all-tags`: pages, a bearer challenge, plain HTTP for an insecure registry) and a manifest's
digest (`docker push`/`pull`), against httpx's mock transport; and `docker push`'s progress."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from cellplane.dockerapi.push_progress import PushProgress
from cellplane.dockerapi.registry_api import (
    MANIFEST_TYPES,
    MAX_TAGS,
    RegistryReadError,
    list_tags,
    manifest_digest,
)
from cellplane.registries import Registry

REG = Registry("reg.example:5000")


def _auth(user: str, password: str) -> str:
    doc = {"username": user, "password": password, "serveraddress": REG.host}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def test_pages_are_followed_and_the_tags_sorted() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if "last=" not in str(request.url):
            link = '</v2/team/app/tags/list?n=200&last=b>; rel="next"'
            return httpx.Response(200, json={"tags": ["b", "a"]}, headers={"Link": link})
        return httpx.Response(200, json={"name": "team/app", "tags": ["c"]})

    tags = list_tags(REG, "team/app", None, transport=httpx.MockTransport(answer))
    assert tags == ["a", "b", "c"]
    assert seen == [
        "https://reg.example:5000/v2/team/app/tags/list?n=200",
        "https://reg.example:5000/v2/team/app/tags/list?n=200&last=b",
    ]


def test_a_bearer_challenge_gets_a_token_with_the_clients_credentials() -> None:
    tokens: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            tokens.append(request)
            return httpx.Response(200, json={"token": "tok-1"})
        if request.headers.get("Authorization") != "Bearer tok-1":
            challenge = 'Bearer realm="https://auth.example/token",service="reg",scope="x"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200, json={"tags": ["1"]})

    auth = _auth("alice", "s3cret")
    assert list_tags(REG, "app", auth, transport=httpx.MockTransport(answer)) == ["1"]
    (asked,) = tokens
    assert asked.url.params["service"] == "reg" and asked.url.params["scope"] == "x"
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert asked.headers["Authorization"] == expected


def test_an_insecure_registry_without_https_is_asked_over_http() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            raise httpx.ConnectError("wrong version number", request=request)
        return httpx.Response(200, json={"tags": ["x"]})

    insecure = Registry("127.0.0.1:5000", insecure=True)
    assert list_tags(insecure, "app", None, transport=httpx.MockTransport(answer)) == ["x"]
    with pytest.raises(RegistryReadError, match="cannot be reached"):
        list_tags(REG, "app", None, transport=httpx.MockTransport(answer))  # https only


@pytest.mark.parametrize(
    ("status", "words"),
    [(404, "repository app not found"), (500, "answered 500"), (401, "answered 401")],
)
def test_a_refusal_is_named(status: int, words: str) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(status, json={}))
    with pytest.raises(RegistryReadError, match=words):
        list_tags(REG, "app", None, transport=transport)


def test_at_most_max_tags_are_taken() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("last", "0"))
        link = f'</v2/app/tags/list?n=200&last={page + 200}>; rel="next"'
        tags = [f"t{page + k:05d}" for k in range(200)]
        return httpx.Response(200, json={"tags": tags}, headers={"Link": link})

    tags = list_tags(REG, "app", None, transport=httpx.MockTransport(answer))
    assert len(tags) == MAX_TAGS and tags[0] == "t00000"


DIGEST = "sha256:" + "ab" * 32


def test_a_manifests_digest_and_size_are_read_with_a_head_asking_for_image_manifests() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "auth.example":
            return httpx.Response(200, json={"access_token": "tok-2"})
        if request.headers.get("Authorization") != "Bearer tok-2":
            challenge = 'Bearer realm="https://auth.example/token",service="reg"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        headers = {"Docker-Content-Digest": DIGEST, "Content-Length": "527"}
        return httpx.Response(200, headers=headers)

    got = manifest_digest(REG, "team/app", "1", None, transport=httpx.MockTransport(answer))
    assert got == (DIGEST, 527)
    asked = [r for r in seen if r.url.host == REG.host.split(":")[0]]
    assert [(r.method, r.url.path) for r in asked] == [("HEAD", "/v2/team/app/manifests/1")] * 2
    accepted = asked[-1].headers["Accept"].split(", ")
    assert accepted == list(MANIFEST_TYPES)
    assert "application/vnd.oci.image.manifest.v1+json" in accepted


@pytest.mark.parametrize(
    ("status", "headers", "words"),
    [
        (404, {}, "team/app:1 not found"),
        (500, {}, "answered 500 for the manifest of team/app:1"),
        (200, {"Content-Length": "5"}, "gave no digest"),
        (200, {"Docker-Content-Digest": "md5:x", "Content-Length": "5"}, "gave no digest"),
    ],
)
def test_a_manifest_the_registry_does_not_give_is_named(
    status: int, headers: dict[str, str], words: str
) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(status, headers=headers))
    with pytest.raises(RegistryReadError, match=words):
        manifest_digest(REG, "team/app", "1", None, transport=transport)


def test_push_progress_speaks_dockers_per_layer_words_and_ends_with_the_digest() -> None:
    """podman's copy report (one line per blob as it begins, then the manifest) in dockerd's
    words: each layer by its short id Preparing and Pushing, all Pushed once the manifest is
    written, then the digest line and `aux`; what Docker does not say is dropped."""
    a, b = "a" * 64, "0123456789ab" + "c" * 52
    engine = [
        "Getting image source signatures",
        f"Copying blob sha256:{a}",
        f"Copying blob {b[:12]}",  # podman's short form
        f"Copying blob sha256:{a}",  # said twice (a retry): once
        "Copying config sha256:" + "d" * 64,
        "Writing manifest to image destination",
        "Storing signatures",
    ]
    progress = PushProgress()
    out = [line for text in engine for line in progress.feed(text)]
    out += progress.finish("1", DIGEST, 527)
    assert [(d.get("id"), d.get("status")) for d in out] == [
        ("aaaaaaaaaaaa", "Preparing"),
        ("aaaaaaaaaaaa", "Pushing"),
        ("0123456789ab", "Preparing"),
        ("0123456789ab", "Pushing"),
        ("aaaaaaaaaaaa", "Pushed"),
        ("0123456789ab", "Pushed"),
        (None, f"1: digest: {DIGEST} size: 527"),
        (None, None),
    ]
    assert out[-1] == {"progressDetail": {}, "aux": {"Tag": "1", "Digest": DIGEST, "Size": 527}}
    # A report without the manifest's line still ends with every layer pushed.
    early = PushProgress()
    early.feed(f"Copying blob sha256:{a}")
    assert [d.get("status") for d in early.finish("v2", DIGEST, 1)][:2] == [
        "Pushed",
        f"v2: digest: {DIGEST} size: 1",
    ]
