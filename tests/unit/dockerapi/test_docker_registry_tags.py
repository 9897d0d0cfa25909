"""`docker pull --all-tags`: the tags of a repository read from the registry's API (pages, a
bearer challenge, plain HTTP for an insecure registry), against httpx's mock transport."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from cellplane.dockerapi.registry_tags import MAX_TAGS, TagsError, list_tags
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
    with pytest.raises(TagsError, match="cannot be reached"):
        list_tags(REG, "app", None, transport=httpx.MockTransport(answer))  # https only


@pytest.mark.parametrize(
    ("status", "words"),
    [(404, "repository app not found"), (500, "answered 500"), (401, "answered 401")],
)
def test_a_refusal_is_named(status: int, words: str) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(status, json={}))
    with pytest.raises(TagsError, match=words):
        list_tags(REG, "app", None, transport=transport)


def test_at_most_max_tags_are_taken() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("last", "0"))
        link = f'</v2/app/tags/list?n=200&last={page + 200}>; rel="next"'
        tags = [f"t{page + k:05d}" for k in range(200)]
        return httpx.Response(200, json={"tags": tags}, headers={"Link": link})

    tags = list_tags(REG, "app", None, transport=httpx.MockTransport(answer))
    assert len(tags) == MAX_TAGS and tags[0] == "t00000"
