"""The portal's static files, fuzzed (issue 14).

`test_the_static_files_survive_fuzzing` is the suite's bounded run
(`cellplane.testing.fuzz_portal_static`): traversal paths, methods, `Range` and conditional
headers sent byte for byte to `/portal/static/...` of a fuzz server. A longer run:
`bench/fuzz.py --target portal-static`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cellplane.testing.fuzz import FuzzServer
from cellplane.testing.fuzz_portal_static import (
    STATIC,
    Raw,
    StaticTarget,
    _slices,
    fuzz_static,
    raw_request,
)

# A bounded run, the same on any machine: rounds, not seconds.
ROUNDS = 30


@pytest.fixture(scope="module")
def target() -> Iterator[StaticTarget]:
    with FuzzServer() as server, StaticTarget(server) as t:
        yield t


def test_the_static_files_survive_fuzzing(target: StaticTarget) -> None:
    stats = fuzz_static(target, 0, seed=14, rounds=ROUNDS)
    summary = stats.summary()
    assert summary["failures"] == {}, "\n\n".join(f"{k}\n{v}" for k, v in stats.failures.items())
    assert stats.server_errors == stats.bad_error_bodies == stats.leaks == stats.bad_headers == 0
    # Every static file was served whole, and ranges were served.
    assert summary["not_covered"] == []
    assert stats.statuses.get(206, 0) > 0 and stats.statuses.get(304, 0) > 0
    assert stats.kinds["traversal"] > 200
    assert stats.requests == ROUNDS * 50


@pytest.mark.parametrize(
    "path",
    [
        b"/portal/static/../app.py",
        b"/portal/static/%2e%2e/app.py",
        b"/portal/static/..%2fapp.py",
        b"/portal/static/..%5capp.py",
        b"/portal/static/%252e%252e/app.py",
        b"/portal/static//etc/passwd",
        b"/portal/static/%2fetc%2fpasswd",
        b"/portal/static/../../../../../../etc/passwd",
    ],
)
def test_traversal_never_reaches_a_file_outside(target: StaticTarget, path: bytes) -> None:
    r = raw_request(target.server.port, "GET", path, {})
    assert r.status in (400, 404), r
    assert not any(secret in r.body for secret in target.secrets.values())


def test_the_secrets_are_pieces_of_real_files(target: StaticTarget) -> None:
    """The leak check looks for what it should: the portal's sources and the CA's files."""
    app_py = (STATIC.parent / "app.py").read_bytes()
    assert any(s in app_py for s in target.secrets.values())
    assert any("identity" in name for name in target.secrets)


def test_a_served_file_has_its_type_and_length(target: StaticTarget) -> None:
    for name, content in target.files.items():
        r = raw_request(target.server.port, "GET", f"/portal/static/{name}".encode(), {})
        assert r.status == 200 and r.body == content
        assert r.headers["content-type"].split(";")[0] == target.content_type(name)
        assert r.headers["content-length"] == str(len(content))


def test_the_range_check_can_fail(target: StaticTarget) -> None:
    css = target.files["portal.css"]
    good = Raw(206, {"content-range": f"bytes 0-4/{len(css)}"}, css[:5])
    assert _slices(good, target.files) is None
    bad = Raw(206, {"content-range": f"bytes 0-4/{len(css)}"}, b"root:")
    assert _slices(bad, target.files) is not None
    r = raw_request(
        target.server.port, "GET", b"/portal/static/portal.css", {"Range": "bytes=0-0,5-9"}
    )
    assert r.status == 206 and _slices(r, target.files) is None
