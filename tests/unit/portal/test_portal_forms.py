"""The portal's forms read into the API's request models, errors keyed by form field (pure)."""

from __future__ import annotations

from cellplane.errors import FieldError
from cellplane.portal.forms import cell_body, errors_of, field_of, quota_body


def test_a_full_wizard_form_becomes_a_cell_create() -> None:
    body, errors = cell_body(
        {
            "name": "web",
            "image": "busybox",
            "cpu": "0.25",
            "memory_mb": "64",
            "command": "sh -c 'echo hi; sleep 5'",
            "env": "A=1\n\nB=x=y\n",
            "ports": "8080:80\n53/udp",
            "volumes": "data:/srv:ro\nlogs:/var/log",
            "restart": "on-failure",
            "max_retries": "3",
        }
    )
    assert errors == {} and body is not None
    assert body.command == ["sh", "-c", "echo hi; sleep 5"]
    assert body.env == {"A": "1", "B": "x=y"}
    assert [(p.host_port, p.container_port, p.protocol) for p in body.ports] == [
        (8080, 80, "tcp"),
        (None, 53, "udp"),
    ]
    assert [(v.volume, v.path, v.read_only) for v in body.volumes] == [
        ("data", "/srv", True),
        ("logs", "/var/log", False),
    ]
    assert body.restart.policy == "on-failure" and body.restart.max_retries == 3


def test_each_malformed_field_is_reported_at_its_own_field() -> None:
    body, errors = cell_body(
        {
            "name": "web",
            "image": "busybox",
            "cpu": "two",
            "memory_mb": "1.5",
            "env": "NOEQUALS",
            "ports": "80:http",
            "volumes": "data",
            "command": "sh -c 'unterminated",
        }
    )
    assert body is None
    assert errors["cpu"] == ["must be a number"]
    assert errors["memory_mb"] == ["must be a whole number"]
    assert errors["env"] == ["line 1: 'NOEQUALS' is not KEY=value"]
    assert "is not [host:]container" in errors["ports"][0]
    assert "is not volume:/path" in errors["volumes"][0]
    assert errors["command"][0].startswith("cannot split into arguments")


def test_the_models_own_errors_land_at_the_form_fields() -> None:
    body, errors = cell_body(
        {
            "name": "Not_A_Label",
            "image": "busybox",
            "memory_mb": "2",
            "ports": "70000",
            "volumes": "data:relative",
            "restart": "sometimes",
        }
    )
    assert body is None
    assert set(errors) == {"name", "memory_mb", "ports", "volumes", "restart"}
    assert "greater than or equal to 6" in errors["memory_mb"][0]


def test_service_error_paths_map_to_form_fields() -> None:
    assert field_of("ports.0.container_port") == "ports"
    assert field_of("restart.max_retries") == "max_retries"
    assert field_of("image") == "image"
    assert field_of("something.else") == ""
    errors = errors_of([FieldError("image", "image 'x' does not exist"), FieldError("q", "bad")])
    assert errors == {"image": ["image 'x' does not exist"], "": ["bad"]}


def test_quota_form_empty_means_no_limit_and_bad_values_are_refused() -> None:
    limits, errors = quota_body({"cpu": "2.5", "memory_mb": "", "cells": "10"})
    assert errors == {} and limits is not None
    assert (limits.cpu, limits.memory_mb, limits.cells) == (2.5, None, 10)
    limits, errors = quota_body({"cells": "-1", "disk_gb": "lots"})
    assert limits is None and errors == {"disk_gb": ["must be a whole number"]}
    limits, errors = quota_body({"cells": "-1"})
    assert limits is None and "greater than or equal to 0" in errors["cells"][0]
