"""`docker push`'s progress in Docker's words, from the engine's report of its copy.

podman's push (containers/image, writing to a pipe rather than a terminal) reports one line per
blob as it begins copying it (`Copying blob sha256:<hex>`, whether the registry has it already or
not), then `Copying config ...` and `Writing manifest to image destination` once every blob is
there. dockerd reports per layer, by its short id: `Preparing`, `Pushing`, then `Pushed` (or
`Layer already exists`), and ends with the manifest's digest and size, in a status line and in
`aux` (what docker-py and scripts read). So a blob's first line gives its `Preparing` and
`Pushing`, the manifest's writing gives every layer's `Pushed`, and `finish` the digest. The
engine's report does not say which blobs the registry had: each is `Pushed`.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["PushProgress"]

_BLOB: Final = re.compile(r"Copying blob (?:sha256:)?([0-9a-f]{12,64})\b")
_MANIFEST: Final = "Writing manifest"


def _layer(status: str, short_id: str) -> dict[str, Any]:
    return {"status": status, "progressDetail": {}, "id": short_id}


class PushProgress:
    """The Docker progress lines of one push, fed the engine's lines one by one."""

    def __init__(self) -> None:
        self.layers: list[str] = []  # short ids, in the order the engine began them
        self._pushed = 0  # how many of them were reported pushed

    def feed(self, text: str) -> list[dict[str, Any]]:
        """The lines to send for the engine's line `text` (none for what Docker does not say)."""
        text = text.strip()
        found = _BLOB.match(text)
        if found is not None:
            short_id = found.group(1)[:12]
            if short_id in self.layers:
                return []
            self.layers.append(short_id)
            return [_layer("Preparing", short_id), _layer("Pushing", short_id)]
        if text.startswith(_MANIFEST):
            return self._all_pushed()
        return []

    def _all_pushed(self) -> list[dict[str, Any]]:
        done = [_layer("Pushed", short_id) for short_id in self.layers[self._pushed :]]
        self._pushed = len(self.layers)
        return done

    def finish(self, tag: str, digest: str, size: int) -> list[dict[str, Any]]:
        """The end of a push that worked: layers not yet reported pushed, then the manifest's
        digest and size, as dockerd ends it."""
        return [
            *self._all_pushed(),
            {"status": f"{tag}: digest: {digest} size: {size}"},
            {"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": size}},
        ]
