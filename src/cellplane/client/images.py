"""Images: list, show, upload (streamed from disk), delete. A part of `cellplane.client.Client`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from cellplane.client._base import BaseClient, JSONDict

__all__ = ["ImagesApi"]

_UPLOAD_CHUNK = 256 * 1024


class ImagesApi(BaseClient):
    """The image routes of the API."""

    def list_images(self, *, limit: int | None = None, cursor: str | None = None) -> JSONDict:
        return self._page("/v1/images", (), limit, cursor)

    def iter_images(self) -> Iterator[JSONDict]:
        return self._iter("/v1/images")

    def get_image(self, id_or_name: str) -> JSONDict:
        return self._json("GET", f"/v1/images/{id_or_name}")

    def upload_image(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        progress: Callable[[int], None] | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        """Upload a docker-archive/OCI tarball, streamed from disk; returns the Image.

        `progress` is called with the byte count of each chunk sent (again from
        zero if a retry re-sends the file).
        """
        file_path = Path(path)
        size = file_path.stat().st_size

        def chunks() -> Iterator[bytes]:
            with file_path.open("rb") as handle:
                while chunk := handle.read(_UPLOAD_CHUNK):
                    if progress is not None:
                        progress(len(chunk))
                    yield chunk

        return self._json(
            "POST",
            "/v1/images",
            params=[("name", name)],
            content=chunks,
            # An explicit length: the server can refuse an oversized upload up front.
            headers={"Content-Type": "application/x-tar", "Content-Length": str(size)},
            idempotency_key=idempotency_key,
            timeout=httpx.Timeout(self._timeout, write=max(self._timeout, 300.0)),
        )

    def delete_image(self, id_or_name: str) -> None:
        self._send("DELETE", f"/v1/images/{id_or_name}")
