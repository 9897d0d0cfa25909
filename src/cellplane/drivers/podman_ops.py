"""Container operations beyond the life cycle, on a Docker-API engine: copy files in and out
(the archive API), resource usage (stats), processes (top), the whole file system (export), pause
and unpause, signals.

`ContainerOps` is what the host agent needs for them (`agent.container_ops`); `PodmanOps` gives
it to `PodmanDriver` (a mixin over its SDK client). An engine without them (the fake driver) is
answered 501 by the agent. Archives and stats are streamed: the engine's response is read in
chunks as the caller consumes them, never whole.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import requests

from cellplane.drivers import errors
from cellplane.drivers.podman_errors import translated

__all__ = ["ContainerOps", "PathNotFound", "PodmanOps", "decode_path_stat"]

CHUNK = 1 << 16
STAT_HEADER = "X-Docker-Container-Path-Stat"


class PathNotFound(errors.PermanentDriverError):
    """The path asked for does not exist in the container."""


def decode_path_stat(header: str | None) -> dict[str, Any]:
    """The engine's base64 JSON path stat header; {} when absent or unreadable."""
    if not header:
        return {}
    try:
        data = json.loads(base64.b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@runtime_checkable
class ContainerOps(Protocol):
    def archive_stat(self, container_id: str, path: str) -> dict[str, Any]:
        """The path's stat (name, size, mode, mtime, linkTarget); PathNotFound if missing."""

    def archive_get(self, container_id: str, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        """The path's stat and a tar of it, as the engine streams it."""

    def archive_put(
        self, container_id: str, path: str, data: Iterable[bytes], no_overwrite_dir_non_dir: bool
    ) -> None:
        """Extract the tar `data` (streamed) into the directory `path` of the container."""

    def stats(self, container_id: str, stream: bool) -> Iterator[dict[str, Any]]:
        """The engine's stats samples (Docker's shape), one, or one a second while `stream`."""

    def top(self, container_id: str, ps_args: str) -> dict[str, Any]:
        """{"Titles": [...], "Processes": [[...], ...]} of the container's processes."""

    def changes(self, container_id: str) -> list[dict[str, Any]]:
        """The container's filesystem changes: [{"Path": ..., "Kind": 0 changed|1 added|2 deleted}]."""

    def export(self, container_id: str) -> Iterator[bytes]:
        """A tar of the container's whole file system, as the engine streams it."""

    def pause(self, container_id: str) -> None:
        """Freeze every process of the container (cgroup freezer)."""

    def unpause(self, container_id: str) -> None:
        """Thaw a paused container."""


def _message(res: requests.Response) -> str:
    try:
        data = res.json()
    except ValueError:
        return res.text[:500] or res.reason or str(res.status_code)
    if isinstance(data, dict):
        return str(data.get("message") or data.get("cause") or data)[:500]
    return str(data)[:500]


def _raise_for(res: requests.Response, path: str = "") -> None:
    """Map an engine's refusal: a missing container, a missing path, anything else."""
    if res.status_code < 400:
        return
    text = _message(res)
    low = text.lower()
    if res.status_code == 404 and ("no such container" in low or not path):
        raise errors.ContainerNotFound(text)
    if res.status_code == 404 or "no such file" in low:
        raise PathNotFound(text)
    if res.status_code >= 500 and "state improper" not in low and "not running" not in low:
        raise errors.TemporaryDriverError(text)
    raise errors.PermanentDriverError(text)


def _chunks(res: requests.Response) -> Iterator[bytes]:
    try:
        yield from res.raw.stream(CHUNK, decode_content=False)
    except (requests.RequestException, OSError) as exc:
        raise errors.TemporaryDriverError(f"the engine's stream broke: {exc}") from exc
    finally:
        res.close()


def _lines(res: requests.Response) -> Iterator[dict[str, Any]]:
    try:
        for line in res.iter_lines(chunk_size=CHUNK):
            if line.strip():
                data = json.loads(line)
                if isinstance(data, dict):
                    yield data
    except (requests.RequestException, OSError, ValueError) as exc:
        raise errors.TemporaryDriverError(f"the engine's stats stream broke: {exc}") from exc
    finally:
        res.close()


class PodmanOps:
    """`ContainerOps` over the driver's docker SDK client (`self._untyped`)."""

    _untyped: Any

    def _call(self, method: str, path: str, container_id: str, **kwargs: Any) -> Any:
        api = self._untyped
        try:
            return getattr(api, method)(api._url(path, container_id), **kwargs)
        except (requests.RequestException, OSError) as exc:
            raise errors.TemporaryDriverError(f"the engine did not answer: {exc}") from exc

    def archive_stat(self, container_id: str, path: str) -> dict[str, Any]:
        res = self._call(
            "head",
            "/containers/{0}/archive",
            container_id,
            params={"path": path},
            timeout=self._untyped.timeout,
        )
        _raise_for(res, path)
        return decode_path_stat(res.headers.get(STAT_HEADER))

    def archive_get(self, container_id: str, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        res = self._call(
            "_get", "/containers/{0}/archive", container_id, params={"path": path}, stream=True
        )
        try:
            _raise_for(res, path)
        except errors.DriverError:
            res.close()
            raise
        return decode_path_stat(res.headers.get(STAT_HEADER)), _chunks(res)

    def archive_put(
        self, container_id: str, path: str, data: Iterable[bytes], no_overwrite_dir_non_dir: bool
    ) -> None:
        params = {"path": path, "noOverwriteDirNonDir": "1" if no_overwrite_dir_non_dir else "0"}
        res = self._call(
            "_put",
            "/containers/{0}/archive",
            container_id,
            params=params,
            data=iter(data),
            headers={"Content-Type": "application/x-tar"},
        )
        _raise_for(res, path)

    def stats(self, container_id: str, stream: bool) -> Iterator[dict[str, Any]]:
        res = self._call(
            "_get",
            "/containers/{0}/stats",
            container_id,
            params={"stream": "1" if stream else "0"},
            stream=True,
        )
        try:
            _raise_for(res)
        except errors.DriverError:
            res.close()
            raise
        if stream:  # a sample a second, for as long as the caller reads
            api = self._untyped
            api._disable_socket_timeout(api._get_raw_response_socket(res))
        return _lines(res)

    def top(self, container_id: str, ps_args: str) -> dict[str, Any]:
        params = {"ps_args": ps_args} if ps_args else {}
        res = self._call("_get", "/containers/{0}/top", container_id, params=params)
        _raise_for(res)
        data = res.json()
        return data if isinstance(data, dict) else {}

    def changes(self, container_id: str) -> list[dict[str, Any]]:
        res = self._call("_get", "/containers/{0}/changes", container_id)
        _raise_for(res)
        data = res.json()
        return [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []

    def export(self, container_id: str) -> Iterator[bytes]:
        res = self._call("_get", "/containers/{0}/export", container_id, stream=True)
        try:
            _raise_for(res)
        except errors.DriverError:
            res.close()
            raise
        return _chunks(res)

    def pause(self, container_id: str) -> None:
        _raise_for(self._call("_post", "/containers/{0}/pause", container_id))

    def unpause(self, container_id: str) -> None:
        _raise_for(self._call("_post", "/containers/{0}/unpause", container_id))

    def signal(self, container_id: str, number: int) -> None:
        res = self._call(
            "_post", "/containers/{0}/kill", container_id, params={"signal": str(number)}
        )
        _raise_for(res)

    def commit_image(
        self, container: str, reference: str, *, comment: str, author: str, pause: bool,
        changes: list[str] | None = None,
    ) -> str:  # fmt: skip
        """The container's file system and configuration as the image `reference` (`docker
        commit`); its id. `pause`: frozen meanwhile, as dockerd does by default. `changes`:
        Dockerfile instructions the engine applies to the configuration (`--change`)."""
        repository, _, tag = reference.rpartition(":")
        with translated("container"):
            made = self._untyped.commit(
                container, repository=repository, tag=tag, message=comment or None,
                author=author or None, pause=pause, changes=changes or None,
            )  # fmt: skip
        return str(made.get("Id") or made.get("id") or "")

    def _thawed(self, container_id: str, call: Callable[[], object]) -> None:
        """A stop or kill (`call`, on the SDK). The engine refuses both on a paused container
        ("container state improper"): it is thawed first and asked again, as dockerd does."""
        try:
            with translated("container"):
                call()
        except errors.ContainerNotFound:
            raise
        except errors.DriverError as exc:
            if "improper" not in str(exc).lower() or self._status(container_id) != "paused":
                raise
            self.unpause(container_id)
            with translated("container"):
                call()

    def _status(self, container_id: str) -> str:
        res = self._call("_get", "/containers/{0}/json", container_id)
        _raise_for(res)
        return str((res.json().get("State") or {}).get("Status") or "")
