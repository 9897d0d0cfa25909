"""map_engine_error: every engine/transport failure becomes the right DriverError."""

from __future__ import annotations

import docker.errors
import pytest
import requests
import urllib3.exceptions

from cellplane.drivers import errors
from cellplane.drivers.podman import Resource, map_engine_error


def api_error(status: int, explanation: str, cls: type = docker.errors.APIError) -> Exception:
    response = requests.Response()
    response.status_code = status
    exc: Exception = cls(f"{status} Server Error", response=response, explanation=explanation)
    return exc


@pytest.mark.parametrize(
    ("exc", "resource", "expected"),
    [
        # podman answers a duplicate name with HTTP 500
        (
            api_error(500, 'creating container storage: the container name "a" is already in use'),
            "container",
            errors.NameConflict,
        ),
        (
            api_error(409, 'Conflict. The container name "/a" is already in use'),
            "container",
            errors.NameConflict,
        ),
        (
            api_error(500, "unable to find network with name or ID n: network not found"),
            "container",
            errors.NetworkNotFound,
        ),
        (api_error(404, "network not found"), "network", errors.NetworkNotFound),
        (
            api_error(
                404,
                "no such image: docker.io/library/x: image not known",
                docker.errors.ImageNotFound,
            ),
            "container",
            errors.ImageNotFound,
        ),
        (api_error(404, "failed to find image x: No such image"), "image", errors.ImageNotFound),
        (
            api_error(404, 'no container with name or ID "c" found: no such container'),
            "container",
            errors.ContainerNotFound,
        ),
        (api_error(404, "gone"), "container", errors.ContainerNotFound),
        (
            api_error(409, "volume v is being used by the following container(s): c"),
            "volume",
            errors.VolumeInUse,
        ),
        (api_error(409, "remove v: volume is in use"), "volume", errors.VolumeInUse),
        (
            api_error(404, "no volume with name v found: no such volume"),
            "volume",
            errors.PermanentDriverError,
        ),
        (
            api_error(500, '"n" has associated containers: network is being used'),
            "network",
            errors.PermanentDriverError,
        ),
        (api_error(400, "invalid reference format"), "container", errors.PermanentDriverError),
        (
            api_error(500, "default network podman cannot be removed"),
            "network",
            errors.PermanentDriverError,
        ),
        (api_error(500, "database is locked"), "container", errors.TemporaryDriverError),
        (
            api_error(500, "IPAM error: failed to find free IP in range: 10.1.0.1 - 10.1.0.6"),
            "container",
            errors.AddressesExhausted,
        ),
        (api_error(503, "service unavailable"), "engine", errors.TemporaryDriverError),
        (requests.ConnectionError("connection refused"), "engine", errors.TemporaryDriverError),
        (requests.ReadTimeout("read timed out"), "container", errors.TemporaryDriverError),
        (urllib3.exceptions.ProtocolError("reset"), "container", errors.TemporaryDriverError),
        (FileNotFoundError(2, "no socket"), "engine", errors.TemporaryDriverError),
        (docker.errors.InvalidArgument("bad"), "container", errors.PermanentDriverError),
    ],
)
def test_maps_to_most_specific_class(
    exc: Exception, resource: Resource, expected: type[errors.DriverError]
) -> None:
    mapped = map_engine_error(exc, resource)
    assert type(mapped) is expected


def test_message_keeps_engine_explanation() -> None:
    mapped = map_engine_error(
        api_error(500, 'the container name "web" is already in use'), "container"
    )
    assert "web" in str(mapped)


def test_driver_errors_pass_through_unchanged() -> None:
    original = errors.ContainerNotFound("x")
    assert map_engine_error(original) is original


def test_already_in_use_outside_containers_is_not_a_name_conflict() -> None:
    mapped = map_engine_error(api_error(500, "port is already in use"), "network")
    assert not isinstance(mapped, errors.NameConflict)
    assert isinstance(mapped, errors.PermanentDriverError)


def test_taxonomy_tree() -> None:
    for cls in (
        errors.ContainerNotFound,
        errors.ImageNotFound,
        errors.NetworkNotFound,
        errors.NameConflict,
        errors.VolumeInUse,
    ):
        assert issubclass(cls, errors.PermanentDriverError)
    assert issubclass(errors.TemporaryDriverError, errors.DriverError)
    assert issubclass(errors.AddressesExhausted, errors.TemporaryDriverError)
    assert not issubclass(errors.TemporaryDriverError, errors.PermanentDriverError)
    assert sorted(errors.__all__) == sorted(
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.DriverError)
    )
