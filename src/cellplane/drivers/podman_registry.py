"""Pull and push through podman's libpod API (`PodmanDriver.pull_image`/`push_image`).

libpod's endpoints, not the Docker-compatible ones: only they take `tlsVerify` per request (the
compatible API follows the machine's registries.conf, which the product never edits). Both stream
JSON lines (`{"stream": ...}`, `{"error": ...}`, at the end of a pull `{"images": [...], "id":
...}`), which are yielded as they come; an HTTP error answer becomes one `{"error": ...}` line.
The credentials are Docker's `X-Registry-Auth` value, passed through as the client sent it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from cellplane.drivers.podman_bodies import LIBPOD_PREFIX

__all__ = ["pull", "push"]

_TIMEOUT = 3600


def _lines(
    api: Any, path: str, params: dict[str, str], auth: str | None
) -> Iterator[dict[str, Any]]:
    headers = {"X-Registry-Auth": auth} if auth else {}
    response = api.post(
        f"{api.base_url}{LIBPOD_PREFIX}{path}",
        params=params,
        headers=headers,
        stream=True,
        timeout=_TIMEOUT,
    )
    try:
        if response.status_code >= 400:
            text = response.text
            try:
                message = str(json.loads(text).get("message") or text)
            except (ValueError, AttributeError):
                message = text
            yield {"error": message.strip() or f"HTTP {response.status_code}"}
            return
        for raw in response.iter_lines():
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {"stream": raw.decode("utf-8", "replace") + "\n"}
            if isinstance(doc, dict):
                yield doc
    finally:
        response.close()


def pull(
    api: Any, reference: str, *, tls_verify: bool, auth: str | None
) -> Iterator[dict[str, Any]]:
    """Pull `reference` (fully qualified) into the engine's storage."""
    params = {"reference": reference, "tlsVerify": str(tls_verify).lower(), "quiet": "false"}
    yield from _lines(api, "/images/pull", params, auth)


def push(api: Any, image: str, destination: str, *, tls_verify: bool,
         auth: str | None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Push the engine's image `image` to `destination` (a fully qualified reference)."""
    params = {"destination": destination, "tlsVerify": str(tls_verify).lower(), "quiet": "false"}
    yield from _lines(api, f"/images/{quote(image, safe='')}/push", params, auth)
