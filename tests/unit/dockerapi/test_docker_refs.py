"""How a container reference names a cell of the endpoint's project (`base.match_ref`): by
name (either form of it), cell id, Docker id or a unique prefix of one. Pure."""

from __future__ import annotations

import pytest

from cellplane.dockerapi.base import match_ref
from cellplane.dockerapi.mapping import Refused
from cellplane.dockerapi.views import docker_id

REFS = [("cel-aaa", "web"), ("cel-bbb", "my-db"), ("cel-ccc", "cache")]


def _shared_prefix() -> tuple[str, list[tuple[str, str]]]:
    """Two cells whose Docker ids share their first hex digit, and that digit."""
    first: dict[str, str] = {}
    for n in range(100):
        cid = f"cel-{n}"
        head = docker_id(cid)[0]
        if head in first:
            return head, [(first[head], "one"), (cid, "two")]
        first[head] = cid
    raise AssertionError("unreachable: 100 ids over 16 hex digits")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("web", "cel-aaa"),
        ("/web", "cel-aaa"),  # as docker-py and the API's own Names send it
        ("my_db", "cel-bbb"),  # Docker's '_' for the cell name's '-'
        ("my-db", "cel-bbb"),
        ("cel-ccc", "cel-ccc"),
        (docker_id("cel-ccc"), "cel-ccc"),
        (docker_id("cel-bbb")[:12], "cel-bbb"),  # what `docker ps` shows
    ],
)
def test_a_reference_names_one_cell(ref: str, expected: str) -> None:
    assert match_ref(ref, REFS) == expected


@pytest.mark.parametrize("ref", ["", "/", "nope", "cel-zzz", "webx", docker_id("cel-zzz")])
def test_a_reference_to_nothing_is_dockers_404_naming_it(ref: str) -> None:
    with pytest.raises(Refused) as err:
        match_ref(ref, REFS)
    assert err.value.status == 404
    assert err.value.message == f"No such container: {ref.removeprefix('/')}"


def test_an_ambiguous_prefix_is_a_400_and_an_exact_name_wins_over_prefixes() -> None:
    head, refs = _shared_prefix()
    with pytest.raises(Refused) as err:
        match_ref(head, refs)
    assert (err.value.status, err.value.message) == (
        400,
        f"multiple IDs found with provided prefix: {head}",
    )
    # A cell named like another's id prefix is found by its name, as Docker does.
    assert match_ref(head, [*refs, ("cel-named", head)]) == "cel-named"


def test_no_cells_no_match() -> None:
    with pytest.raises(Refused):
        match_ref("web", [])
