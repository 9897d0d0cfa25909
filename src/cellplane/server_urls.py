"""Several server URLs (replicas on one PostgreSQL): parsing, and the order to fail over in.

Pure: shared by the SDK (`client._base`), its configuration (`servers: [...]`, a comma-separated
``CELLPLANE_SERVER`` or ``--server``) and the agent (`agent.server_client`). A caller sends to
`ServerRotation.current`; after a connection error there it calls `failed` with the URL it used
and sends to the next one, round the list; every replica serves the whole API, so any will do.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["ServerRotation", "parse_servers"]


def parse_servers(value: str | Iterable[str]) -> list[str]:
    """``"https://a:7400, https://b:7400"`` (or a list) -> the URLs, without trailing ``/``,
    in order, each once. ValueError naming the entry that is not an http(s) URL with a host."""
    items = value.split(",") if isinstance(value, str) else list(value)
    urls: list[str] = []
    for raw in items:
        if not isinstance(raw, str):
            raise ValueError(f"server URL {raw!r} is not a string")
        url = raw.strip().rstrip("/")
        if not url:
            continue
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError:
            raise ValueError(f"server URL {url!r} is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server URL {url!r} must be http:// or https:// with a host")
        if parts.query or parts.fragment:
            raise ValueError(f"server URL {url!r} must not carry a query or a fragment")
        if url not in urls:
            urls.append(url)
    if not urls:
        raise ValueError("no server URL given")
    return urls


class ServerRotation:
    """The server to use now, and the next one after a failure there."""

    def __init__(self, urls: Iterable[str]) -> None:
        self.urls = parse_servers(urls)
        self._index = 0

    @property
    def current(self) -> str:
        return self.urls[self._index]

    def __len__(self) -> int:
        return len(self.urls)

    def failed(self, url: str) -> str:
        """``url`` did not answer: move on to the next one (only if ``url`` is still the
        current one, so that two requests failing on one server skip one server, not two);
        returns the server to use now."""
        if url.rstrip("/") == self.current:
            self._index = (self._index + 1) % len(self.urls)
        return self.current
