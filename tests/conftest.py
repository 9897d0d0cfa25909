"""Suite-wide rules: integration tests need real podman; in CI they must run, never skip.

Every Database the tests build (and every server process they start, which inherits the
environment) runs in strict mode: a thread checking out a second database connection while it
holds one raises `SecondConnectionError` (see cellplane.state.db), so a request path that could
exhaust the pool under load fails here rather than in production.
"""

from __future__ import annotations

import os
import shutil

import pytest

os.environ["CELLPLANE_DB_STRICT"] = "1"
# The LDAP tests use directories on this machine (a private slapd on a dynamic port; closed
# ports for failures), which the default LDAP host policy refuses; the policy's own tests
# clear this.
os.environ["CELLPLANE_LDAP_ALLOWED_HOSTS"] = "127.0.0.1:*"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shutil.which("podman") and shutil.which("runc"):
        return
    needs_engine = [i for i in items if i.get_closest_marker("integration")]
    if not needs_engine:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(
            "integration tests need podman and runc; CI must install them (make deps-test)"
        )
    skip = pytest.mark.skip(reason="podman/runc not installed (run `make deps-test`)")
    for item in needs_engine:
        item.add_marker(skip)
