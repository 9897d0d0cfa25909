"""Errors raised by container drivers, shaped by what the caller should do next.

The host agent catches these around every driver call: a `TemporaryDriverError` means
"retry later, with backoff"; a `PermanentDriverError` means "this request will never
work as given; report the cell as failed". The engine's own exceptions (docker SDK,
requests, sockets) never leave a driver: `cellplane.drivers.podman.map_engine_error`
turns them into the most specific class below, in one place.

    DriverError
    ├── TemporaryDriverError      engine unreachable, timed out, internal failure
    │   └── AddressesExhausted    the container's network has no free address (IPAM)
    └── PermanentDriverError      the request is wrong for the current state
        ├── ContainerNotFound
        ├── ImageNotFound
        ├── NetworkNotFound
        ├── NameConflict          a container with that name already exists
        └── VolumeInUse           a container still mounts the volume
"""

from __future__ import annotations

__all__ = [
    "AddressesExhausted",
    "ContainerNotFound",
    "DriverError",
    "ImageNotFound",
    "NameConflict",
    "NetworkNotFound",
    "PermanentDriverError",
    "TemporaryDriverError",
    "VolumeInUse",
]


class DriverError(Exception):
    """Base of every error a driver raises."""


class TemporaryDriverError(DriverError):
    """The engine could not answer now (unreachable, timeout, internal error): retry later."""


class AddressesExhausted(TemporaryDriverError):
    """The network a container joins has no free address left (the engine's IPAM).

    Temporary: an address comes free when another container of the network goes away; but the
    user must be told at once, since nothing will change until then.
    """


class PermanentDriverError(DriverError):
    """The request cannot succeed as given; retrying the same call will fail the same way."""


class ContainerNotFound(PermanentDriverError):
    """No container with that id or name exists."""


class ImageNotFound(PermanentDriverError):
    """The image reference is not in the engine's local storage."""


class NetworkNotFound(PermanentDriverError):
    """The network a container should join does not exist."""


class NameConflict(PermanentDriverError):
    """A container with the requested name already exists."""


class VolumeInUse(PermanentDriverError):
    """A volume cannot be removed while a container still mounts it."""
