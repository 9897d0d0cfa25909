"""The tags of a repository in an operator's registry, for `docker pull --all-tags`.

The registry's own API (distribution's `GET /v2/<name>/tags/list`), as dockerd asks it: pages
followed by their `Link: <...>; rel="next"` header; a registry that answers 401 with a `Bearer`
challenge is asked for a token at its realm (with the client's or the operator's credentials,
or anonymously), then asked again. An `insecure` registry is tried over HTTPS without checking
its certificate, then over plain HTTP, as podman's `--tls-verify=false` does.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Final
from urllib.parse import urljoin

import httpx

from cellplane.registries import Registry

__all__ = ["MAX_TAGS", "TagsError", "list_tags"]

#: The most tags one `pull --all-tags` takes (a bound on the pages read and the pulls made).
MAX_TAGS: Final = 1000
_PAGE: Final = 200
_NEXT: Final = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_CHALLENGE: Final = re.compile(r'(\w+)="([^"]*)"')


class TagsError(RuntimeError):
    """The registry's tags could not be read; the message says why."""


def _basic(auth: str | None) -> tuple[str, str] | None:
    """(user, password) of an `X-Registry-Auth` value (base64 JSON), None without them."""
    if not auth:
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(auth + "=" * (-len(auth) % 4)))
    except ValueError:
        return None
    user, password = doc.get("username"), doc.get("password")
    return (str(user), str(password)) if user and password else None


def _token(client: httpx.Client, challenge: str, auth: str | None) -> str:
    """A bearer token for `challenge` (a `WWW-Authenticate: Bearer ...` value)."""
    params = dict(_CHALLENGE.findall(challenge))
    realm = params.pop("realm", "")
    if not realm:
        raise TagsError(f"the registry's challenge names no realm: {challenge[:200]}")
    creds = _basic(auth)
    r = client.get(realm, params=params, auth=creds)
    if r.status_code != 200:
        raise TagsError(f"the registry's token service refused ({r.status_code})")
    body = r.json()
    token = body.get("token") or body.get("access_token")
    if not token:
        raise TagsError("the registry's token service gave no token")
    return str(token)


def _pages(client: httpx.Client, base: str, repository: str, auth: str | None) -> list[str]:
    url: str | None = f"{base}/v2/{repository}/tags/list?n={_PAGE}"
    headers: dict[str, str] = {}
    tags: list[str] = []
    while url is not None and len(tags) < MAX_TAGS:
        r = client.get(url, headers=headers)
        challenge = r.headers.get("WWW-Authenticate", "")
        if r.status_code == 401 and challenge.lower().startswith("bearer") and not headers:
            headers = {"Authorization": f"Bearer {_token(client, challenge, auth)}"}
            continue
        if r.status_code == 401 and challenge.lower().startswith("basic") and auth:
            creds = _basic(auth)
            if creds is not None and client.auth is None:
                client.auth = httpx.BasicAuth(*creds)
                continue
        if r.status_code == 404:
            raise TagsError(f"repository {repository} not found")
        if r.status_code != 200:
            raise TagsError(f"the registry answered {r.status_code} for the tags of {repository}")
        tags += [str(t) for t in (r.json().get("tags") or [])]
        found = _NEXT.search(r.headers.get("Link", ""))
        url = urljoin(base, found.group(1)) if found else None
    return tags[:MAX_TAGS]


def list_tags(
    registry: Registry,
    repository: str,
    auth: str | None,
    *,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> list[str]:
    """The tags of `repository` (a path in `registry`), sorted; TagsError naming what failed.
    `auth`: the `X-Registry-Auth` value to use (the client's, or the operator's file);
    `transport`: httpx's (tests)."""
    schemes = ("https", "http") if registry.insecure else ("https",)
    last: Exception | None = None
    for scheme in schemes:
        try:
            verify = not registry.insecure
            with httpx.Client(verify=verify, timeout=timeout, transport=transport) as client:
                return sorted(set(_pages(client, f"{scheme}://{registry.host}", repository, auth)))
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            last = exc  # no HTTPS there: plain HTTP next (an insecure registry only)
        except (httpx.HTTPError, ValueError) as exc:
            raise TagsError(f"the tags of {repository} could not be read: {exc}") from exc
    raise TagsError(f"registry {registry.host} cannot be reached: {last}")
