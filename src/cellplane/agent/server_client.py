"""The agent's client of the server API (register, heartbeat, assignments, status, image content).

The agent talks to the server only through these HTTP calls, in `cellplane up` as on a thousand hosts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

__all__ = ["ServerClient", "ServerUnavailable"]


class ServerUnavailable(Exception):
    """The server did not answer or answered 5xx: retry later."""


class ServerClient:
    def __init__(self, base_url: str, *, verify: bool | str = True) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            # The CA bundle costs ~5 MB of memory: load it only for an HTTPS server.
            verify=verify if self.base_url.startswith("https") else False,
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )
        self.host_id: str | None = None
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _call(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            r = self._http.request(method, url, headers=self._headers(), **kw)
        except httpx.HTTPError as e:
            raise ServerUnavailable(f"{method} {url}: {e}") from e
        if r.status_code >= 500:
            raise ServerUnavailable(f"{method} {url}: HTTP {r.status_code}")
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {url}: HTTP {r.status_code}: {r.text[:300]}")
        return r

    def register(self, body: dict[str, Any]) -> str:
        r = self._call("POST", "/v1/agent/register", json=body)
        data = r.json()
        self.host_id = str(data["host_id"])
        self._token = str(data["host_token"])
        return self.host_id

    def heartbeat(self) -> None:
        self._call("POST", f"/v1/agent/hosts/{self.host_id}/heartbeat")

    def assignments(self, revision: int, wait: float) -> dict[str, Any]:
        r = self._call(
            "GET",
            f"/v1/agent/hosts/{self.host_id}/assignments",
            params={"revision": revision, "wait": wait},
            timeout=wait + 15,
        )
        data: dict[str, Any] = r.json()
        return data

    def report(self, cells: list[dict[str, Any]]) -> None:
        self._call("POST", f"/v1/agent/hosts/{self.host_id}/status", json={"cells": cells})

    def download_image(self, image_id: str, dest: Path) -> None:
        tmp = dest.with_suffix(".part")
        try:
            with self._http.stream(
                "GET",
                f"/v1/agent/hosts/{self.host_id}/images/{image_id}/content",
                headers=self._headers(),
                timeout=300,
            ) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"image {image_id}: HTTP {r.status_code}")
                with tmp.open("wb") as f:
                    for chunk in r.iter_bytes(1 << 20):
                        f.write(chunk)
            tmp.replace(dest)
        except httpx.HTTPError as e:
            raise ServerUnavailable(f"image {image_id}: {e}") from e
        finally:
            tmp.unlink(missing_ok=True)
