"""The host directories an operator lets cells bind-mount (`CELLPLANE_ALLOWED_HOST_PATHS`), pure.

The setting lists absolute paths, separated by `:` or `,` (none, the default: no host path may
be mounted at all):

    CELLPLANE_ALLOWED_HOST_PATHS="/srv/shared:/data/exports"

A cell may mount a host path that is one of them or lies below one: `/srv/shared/app` is allowed
by `/srv/shared`, `/srv/shared2` is not. The check is made twice:

- on the server (`allowed_root`), on the path as the client wrote it, normalised: no relative
  path and no `..` component is accepted at all (`normalise`), so the text alone decides;
- on the cell's host (`resolve_under`), where the path is resolved (symbolic links followed) and
  must still lie under the listed directory that admitted it, itself resolved. The server sends
  that directory with the mount (`MountAssignment.host_root`): a link inside an allowed directory
  that points out of it is refused there, and a path the operator no longer lists (the setting
  changed since) arrives without one and is refused too. Host directories are never created.
"""

from __future__ import annotations

import os
import posixpath
import re

__all__ = [
    "SETTING",
    "HostPathError",
    "allowed_root",
    "normalise",
    "not_allowed_message",
    "parse_allowed",
    "resolve_under",
]

#: The environment variable operators set (named in refusals).
SETTING = "CELLPLANE_ALLOWED_HOST_PATHS"
_MAX_PATH = 4096


class HostPathError(ValueError):
    """A host path that is not a usable absolute path, or leaves its allowed directory."""


def normalise(path: str) -> str:
    """`path` as one absolute, normalised path (`//a/./b/` -> `/a/b`); HostPathError for a
    relative path, a `..` component, a NUL byte or an over-long path."""
    if not isinstance(path, str) or not path:
        raise HostPathError("a host path must be a non-empty absolute path")
    if "\x00" in path:
        raise HostPathError("a host path must not contain a NUL byte")
    if len(path) > _MAX_PATH:
        raise HostPathError(f"a host path is at most {_MAX_PATH} characters")
    if not path.startswith("/"):
        raise HostPathError(f"host path {path!r} is not absolute")
    if ".." in path.split("/"):
        raise HostPathError(f"host path {path!r} must not contain '..'")
    # POSIX keeps two leading slashes as they are ("//a"): one is meant.
    return "/" + posixpath.normpath(path).lstrip("/")


def parse_allowed(text: str) -> tuple[str, ...]:
    """The setting's directories, normalised, in order, each once; HostPathError naming an
    entry that is not an absolute path."""
    out: list[str] = []
    for entry in re.split(r"[:,]", text or ""):
        entry = entry.strip()
        if not entry:
            continue
        try:
            path = normalise(entry)
        except HostPathError as exc:
            raise HostPathError(f"{SETTING}: {exc}") from exc
        if path not in out:
            out.append(path)
    return tuple(out)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def allowed_root(path: str, allowed: tuple[str, ...] | list[str]) -> str | None:
    """The listed directory that admits `path` (normalised first: HostPathError if it is not a
    usable absolute path), the longest one; None when none does."""
    norm = normalise(path)
    roots = [r for r in allowed if _under(norm, r)]
    return max(roots, key=len) if roots else None


def not_allowed_message(path: str) -> str:
    """The refusal of a host path no listed directory admits."""
    return (
        f"host path {path!r} is not allowed: the operator's allowed host paths "
        f"({SETTING}) do not include it"
    )


def resolve_under(path: str, root: str | None) -> str:
    """The real path (links followed) of `path` on this host, which must exist and lie under
    the real path of `root` (the listed directory that admitted it); HostPathError otherwise."""
    if not root:
        raise HostPathError(not_allowed_message(path))
    norm = normalise(path)
    if not _under(norm, normalise(root)):
        raise HostPathError(not_allowed_message(path))
    real = os.path.realpath(norm)
    if not os.path.exists(real):
        raise HostPathError(
            f"host path {path!r} does not exist on this host (host directories are not created)"
        )
    real_root = os.path.realpath(normalise(root))
    if not _under(real, real_root):
        raise HostPathError(
            f"host path {path!r} resolves to {real!r}, outside the allowed directory {root!r}"
        )
    return real
