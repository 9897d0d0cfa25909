"""Hypothesis over every page and form of the portal (issue 14).

`test_every_page_and_form_survives_fuzzing` is the suite's bounded run: the portal mounted on a
fuzz server (a real server on a free port, no engine), as the `admin` user, a tenant admin, a
project member, a project viewer and an anonymous caller, forms with and without the session's
CSRF token (`cellplane.testing.fuzz_portal`). A longer run: `bench/fuzz.py --target portal`.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cellplane.testing.fuzz import FuzzServer
from cellplane.testing.fuzz_portal import PortalTarget, fuzz_portal, operations

# A bounded run, the same on any machine: rounds, not seconds.
ROUNDS = 2


@pytest.fixture(scope="module")
def target() -> Iterator[PortalTarget]:
    with FuzzServer() as server, PortalTarget(server) as t:
        yield t


def test_every_page_and_form_survives_fuzzing(target: PortalTarget) -> None:
    stats = fuzz_portal(target, 0, seed=14, rounds=ROUNDS)
    summary = stats.summary()
    assert summary["failures"] == {}, "\n\n".join(f"{k}\n{v}" for k, v in stats.failures.items())
    assert stats.server_errors == stats.bad_error_bodies == stats.state_changes == 0
    # Every route of the portal was sent, and all but a few answered past sign-in and lookup:
    # a page or form added to the portal is fuzzed without anyone listing it.
    assert summary["not_sent"] == []
    assert len(stats.covered) >= len(stats.operations) - 2, summary["not_covered"]
    assert stats.requests > 300


def test_the_operations_are_the_portals_routes(target: PortalTarget) -> None:
    ops = operations(target)
    assert ("GET", "/") in ops and ("POST", "/projects/{project}/cells/new") in ops
    assert len(ops) == sum(len((r.methods or set()) - {"HEAD"}) for r in target.routes)


def test_the_forms_are_read_from_the_pages(target: PortalTarget) -> None:
    """The fields each form is fuzzed with are what the portal's own pages show."""
    assert {"name", "image"} <= set(target.forms["/projects/{project}/cells/new"].fields)
    assert "file" in target.forms["/images/upload"].files
    assert "confirm" in target.forms["/volumes/{volume_id}/delete"].fields


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    target: PortalTarget,
) -> None:
    """The check the fuzzer makes of every form can fail: the same form with the token is
    carried out and moves the digest."""
    url = f"{target.base}/projects"
    before = target.server.digest()
    cookies = target.cookies("admin")
    r = httpx.post(url, data={"name": "csrf-probe"}, cookies=cookies)
    assert r.status_code == 403, r.text
    assert target.server.digest() == before
    csrf = target.session("admin")[1]
    r = httpx.post(url, data={"name": "csrf-probe", "csrf": csrf}, cookies=cookies)
    assert r.status_code == 303, r.text
    assert target.server.digest() != before
