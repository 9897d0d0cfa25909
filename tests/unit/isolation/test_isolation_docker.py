"""The Docker endpoint's way to ask for a class: `--runtime runsc` or the label
`cellplane.isolation`; an unknown runtime is refused as Docker refuses one."""

from __future__ import annotations

from typing import Any

import pytest

from cellplane.dockerapi.mapping import Refused, cell_fields
from cellplane.services.schemas import CellCreate


def _body(host: dict[str, Any] | None = None, labels: dict[str, str] | None = None) -> Any:
    return {"Image": "busybox", "HostConfig": host or {}, "Labels": labels or {}}


@pytest.mark.parametrize(
    ("host", "labels", "expected"),
    [
        ({}, {}, None),
        ({"Runtime": "runsc"}, {}, "sandbox"),
        ({"Runtime": "runc"}, {}, "standard"),
        ({}, {"cellplane.isolation": "sandbox"}, "sandbox"),
        ({"Runtime": "runsc"}, {"cellplane.isolation": "sandbox", "app": "x"}, "sandbox"),
    ],
)
def test_runtime_or_label_chooses_the_class(
    host: dict[str, Any], labels: dict[str, str], expected: str | None
) -> None:
    fields = cell_fields("c", _body(host, labels))
    assert fields.get("isolation") == expected
    assert "cellplane.isolation" not in fields["labels"]
    assert CellCreate.model_validate(fields).isolation == expected


@pytest.mark.parametrize(
    ("host", "labels", "words"),
    [
        ({"Runtime": "kata"}, {}, "unknown or invalid runtime name: kata"),
        ({}, {"cellplane.isolation": "vm"}, "unknown isolation class"),
        ({"Runtime": "runc"}, {"cellplane.isolation": "sandbox"}, "disagree"),
    ],
)
def test_unknown_runtimes_and_classes_are_refused(
    host: dict[str, Any], labels: dict[str, str], words: str
) -> None:
    with pytest.raises(Refused) as refused:
        cell_fields("c", _body(host, labels))
    assert refused.value.status == 400
    assert words in refused.value.message
