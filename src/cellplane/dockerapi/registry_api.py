"""What the endpoint reads of an operator's registry itself: the tags of a repository, for
`docker pull --all-tags`, and the digest and size of a manifest, which `docker push` and `pull`
report (`<tag>: digest: sha256:... size: N`).

The registry's own API (distribution's `GET /v2/<name>/tags/list`, `HEAD
/v2/<name>/manifests/<reference>`), as dockerd asks it: tag pages followed by their `Link:
<...>; rel="next"` header; a registry that answers 401 with a `Bearer` challenge is asked for a
token at its realm (with the client's or the operator's credentials, or anonymously), then asked
again. An `insecure` registry is tried over HTTPS without checking its certificate, then over
plain HTTP, as podman's `--tls-verify=false` does.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Final, TypeVar
from urllib.parse import urljoin

import httpx

from cellplane.registries import Registry

__all__ = ["MANIFEST_TYPES", "MAX_TAGS", "RegistryReadError", "list_tags", "manifest_digest"]

#: The most tags one `pull --all-tags` takes (a bound on the pages read and the pulls made).
MAX_TAGS: Final = 1000
_PAGE: Final = 200
_NEXT: Final = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_CHALLENGE: Final = re.compile(r'(\w+)="([^"]*)"')
#: The manifest types a digest is asked for, as dockerd's push reports it: the image manifest
#: podman pushed (Docker's schema 2 or OCI's), or a list of them.
MANIFEST_TYPES: Final = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
_DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
T = TypeVar("T")


class RegistryReadError(RuntimeError):
    """What was asked of the registry could not be read; the message says why."""


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
        raise RegistryReadError(f"the registry's challenge names no realm: {challenge[:200]}")
    creds = _basic(auth)
    r = client.get(realm, params=params, auth=creds)
    if r.status_code != 200:
        raise RegistryReadError(f"the registry's token service refused ({r.status_code})")
    body = r.json()
    token = body.get("token") or body.get("access_token")
    if not token:
        raise RegistryReadError("the registry's token service gave no token")
    return str(token)


def _send(
    client: httpx.Client,
    method: str,
    url: str,
    headers: dict[str, str],
    auth: str | None,
) -> httpx.Response:
    """`method url` with the registry's authentication: a `Bearer` challenge is answered with
    a token (kept in `headers` for the next requests), a `Basic` one with the credentials."""
    r = client.request(method, url, headers=headers)
    challenge = r.headers.get("WWW-Authenticate", "")
    if (
        r.status_code == 401
        and challenge.lower().startswith("bearer")
        and "Authorization" not in headers
    ):
        headers["Authorization"] = f"Bearer {_token(client, challenge, auth)}"
        return client.request(method, url, headers=headers)
    if r.status_code == 401 and challenge.lower().startswith("basic") and auth:
        creds = _basic(auth)
        if creds is not None and client.auth is None:
            client.auth = httpx.BasicAuth(*creds)
            return client.request(method, url, headers=headers)
    return r


def _answered(r: httpx.Response, missing: str, what: str) -> httpx.Response:
    """`r` if the registry answered 200; RegistryReadError naming `missing` (404) or `what`."""
    if r.status_code == 404:
        raise RegistryReadError(f"{missing} not found")
    if r.status_code != 200:
        raise RegistryReadError(f"the registry answered {r.status_code} for {what}")
    return r


def _pages(client: httpx.Client, base: str, repository: str, auth: str | None) -> list[str]:
    url: str | None = f"{base}/v2/{repository}/tags/list?n={_PAGE}"
    headers: dict[str, str] = {}
    tags: list[str] = []
    while url is not None and len(tags) < MAX_TAGS:
        r = _answered(
            _send(client, "GET", url, headers, auth),
            f"repository {repository}",
            f"the tags of {repository}",
        )
        tags += [str(t) for t in (r.json().get("tags") or [])]
        found = _NEXT.search(r.headers.get("Link", ""))
        url = urljoin(base, found.group(1)) if found else None
    return tags[:MAX_TAGS]


def _manifest(
    client: httpx.Client, base: str, repository: str, reference: str, auth: str | None
) -> tuple[str, int]:
    url = f"{base}/v2/{repository}/manifests/{reference}"
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    r = _answered(
        _send(client, "HEAD", url, headers, auth),
        f"{repository}:{reference}",
        f"the manifest of {repository}:{reference}",
    )
    digest = r.headers.get("Docker-Content-Digest", "")
    size = r.headers.get("Content-Length", "")
    if not _DIGEST.fullmatch(digest) or not size.isdigit():
        raise RegistryReadError(f"the registry gave no digest for {repository}:{reference}")
    return digest, int(size)


def _over(
    registry: Registry,
    what: str,
    ask: Callable[[httpx.Client, str], T],
    timeout: float,
    transport: httpx.BaseTransport | None,
) -> T:
    """`ask(client, base URL)` of `registry`: over HTTPS, then plain HTTP for an insecure
    registry that does not speak TLS; RegistryReadError naming `what` otherwise."""
    schemes = ("https", "http") if registry.insecure else ("https",)
    last: Exception | None = None
    for scheme in schemes:
        try:
            verify = not registry.insecure
            with httpx.Client(verify=verify, timeout=timeout, transport=transport) as client:
                return ask(client, f"{scheme}://{registry.host}")
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            last = exc  # no HTTPS there: plain HTTP next (an insecure registry only)
        except (httpx.HTTPError, ValueError) as exc:
            raise RegistryReadError(f"{what} could not be read: {exc}") from exc
    raise RegistryReadError(f"registry {registry.host} cannot be reached: {last}")


def list_tags(
    registry: Registry,
    repository: str,
    auth: str | None,
    *,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> list[str]:
    """The tags of `repository` (a path in `registry`), sorted; RegistryReadError naming what
    failed. `auth`: the `X-Registry-Auth` value to use (the client's, or the operator's file);
    `transport`: httpx's (tests)."""

    def ask(client: httpx.Client, base: str) -> list[str]:
        return sorted(set(_pages(client, base, repository, auth)))

    return _over(registry, f"the tags of {repository}", ask, timeout, transport)


def manifest_digest(
    registry: Registry,
    repository: str,
    reference: str,
    auth: str | None,
    *,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> tuple[str, int]:
    """The digest and size (bytes) of the manifest `reference` (a tag) of `repository`, as the
    registry serves it; RegistryReadError naming what failed."""

    def ask(client: httpx.Client, base: str) -> tuple[str, int]:
        return _manifest(client, base, repository, reference, auth)

    return _over(registry, f"the manifest of {repository}:{reference}", ask, timeout, transport)
