"""Container drivers: the narrow interface between the host agent and an engine.

The agent imports from here: the `Driver` Protocol and its value types (`base`), the
error taxonomy (`errors`), the real implementation over podman (`podman.PodmanDriver`),
the agent's own engine process (`engine.PodmanService`) and, for unit tests only, the
in-memory `fake.FakeDriver`.
"""

from __future__ import annotations

from cellplane.drivers.base import (
    ContainerInfo,
    ContainerSpec,
    Driver,
    ExecResult,
    MountSpec,
    NetworkSpec,
    PortSpec,
)
from cellplane.drivers.engine import PodmanService
from cellplane.drivers.errors import (
    AddressesExhausted,
    ContainerNotFound,
    DriverError,
    ImageNotFound,
    NameConflict,
    NetworkNotFound,
    PermanentDriverError,
    TemporaryDriverError,
    VolumeInUse,
)
from cellplane.drivers.fake import FakeDriver
from cellplane.drivers.podman import PodmanDriver, map_engine_error

__all__ = [
    "AddressesExhausted",
    "ContainerInfo",
    "ContainerNotFound",
    "ContainerSpec",
    "Driver",
    "DriverError",
    "ExecResult",
    "FakeDriver",
    "ImageNotFound",
    "MountSpec",
    "NameConflict",
    "NetworkNotFound",
    "NetworkSpec",
    "PermanentDriverError",
    "PodmanDriver",
    "PodmanService",
    "PortSpec",
    "TemporaryDriverError",
    "VolumeInUse",
    "map_engine_error",
]
