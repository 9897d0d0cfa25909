"""Engine exceptions become `cellplane.drivers.errors` here, in one place (`map_engine_error`).

The podman driver wraps each engine call in `translated(resource)`; the mapping is pure (an
exception in, a `DriverError` out) and unit-tested without an engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import docker
import docker.errors
import requests
import urllib3.exceptions

from cellplane.drivers import errors

__all__ = ["Resource", "map_engine_error", "translated"]

Resource = Literal["container", "image", "network", "volume", "engine"]

# Podman reports these client errors as HTTP 500; retrying them cannot help.
_PERMANENT_MARKERS = (
    "being used",
    "in use",
    "state improper",
    "cannot be removed",
    "invalid",
    "not supported",
)

_NOT_FOUND: dict[Resource, type[errors.PermanentDriverError]] = {
    "container": errors.ContainerNotFound,
    "image": errors.ImageNotFound,
    "network": errors.NetworkNotFound,
}


def _engine_message(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation) if explanation else str(exc)


def map_engine_error(exc: BaseException, resource: Resource = "engine") -> errors.DriverError:
    """Translate an engine/SDK/transport exception into the most specific DriverError.

    `resource` is what the failed call was about; it decides what a bare 404 means.
    Podman answers several client errors with HTTP 500 (a name conflict, a missing
    network), so the engine's message is consulted before the status code.
    """
    if isinstance(exc, errors.DriverError):
        return exc
    message = _engine_message(exc)
    # APIError derives from requests' HTTPError, itself an OSError: test it first.
    if not isinstance(exc, docker.errors.DockerException):
        if isinstance(exc, requests.HTTPError):
            return errors.PermanentDriverError(message)
        if isinstance(exc, requests.RequestException | urllib3.exceptions.HTTPError | OSError):
            return errors.TemporaryDriverError(f"container engine unreachable: {message}")
        return errors.DriverError(message)

    text = message.lower()
    if "failed to find free ip" in text:  # netavark's IPAM, on start
        return errors.AddressesExhausted(message)
    if "already in use" in text and resource == "container":
        return errors.NameConflict(message)
    if "network not found" in text or "no such network" in text:
        return errors.NetworkNotFound(message)
    if isinstance(exc, docker.errors.ImageNotFound) or "no such image" in text:
        return errors.ImageNotFound(message)
    if "image not known" in text:  # podman's wording
        return errors.ImageNotFound(message)
    if "no such container" in text or "no container with name" in text:
        return errors.ContainerNotFound(message)
    if resource == "volume" and ("being used" in text or "in use" in text):
        return errors.VolumeInUse(message)

    status = getattr(exc, "status_code", None)
    if status == 404 and resource in _NOT_FOUND:
        return _NOT_FOUND[resource](message)
    if any(marker in text for marker in _PERMANENT_MARKERS):
        return errors.PermanentDriverError(message)
    if status is None or 400 <= status < 500:
        return errors.PermanentDriverError(message)
    # Remaining 5xx: engine-side trouble (locks, storage, runtime hiccups) worth a retry.
    return errors.TemporaryDriverError(message)


@contextmanager
def translated(resource: Resource) -> Iterator[None]:
    try:
        yield
    except (
        docker.errors.DockerException,
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        OSError,
    ) as exc:
        raise map_engine_error(exc, resource) from exc


def raw_chunks(res: requests.Response) -> Iterator[bytes]:
    """A streamed answer's bytes as they come (a log's, an archive's), the answer closed after."""
    try:
        yield from res.raw.stream(65536, decode_content=False)
    finally:
        res.close()


def guarded(stream: Iterator[bytes]) -> Iterator[bytes]:
    """`stream`, with the engine's errors while it is read translated as a container's."""
    with translated("container"):
        yield from stream
