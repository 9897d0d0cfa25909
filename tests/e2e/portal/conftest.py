"""Fixtures of the portal's browser tests: a real deployment (`cellplane server` + `cellplane
agent` + podman, see `cellplane.testing.harness`) with the busybox image and three users, and
Debian's headless Chromium driven by Playwright (never `playwright install`: it downloads).

Screenshots of the main pages are written to docs/portal/ by the tests that reach them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import PASSWORD

from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment

CHROMIUM = "/usr/bin/chromium"
#: (user, role, scope): a developer, an operator and a viewer of the default project.
USERS = (("dev", "project-member"), ("ops", "system-admin"), ("viewer", "project-viewer"))


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        raise pytest.UsageError(f"the portal's browser tests need {reason} (make deps-test)")
    pytest.skip(f"{reason} not installed")


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    archive = build_busybox_archive(tmp_path_factory.mktemp("busybox"))
    d = Deployment()
    try:
        d.start()
        with d.client() as c:
            c.upload_image("busybox", archive)
            for name, role in USERS:
                c.create_user(name, password=PASSWORD)
                c.assign_role(role, user=name)
        yield d
    finally:
        d.close()


# Module scope, not session: while Playwright's sync API is active it keeps an event loop
# running in the main thread, and every later asyncio.run() in the same pytest run would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        _missing("Debian's chromium (/usr/bin/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright (the test extra)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page per test."""
    context = browser.new_context(viewport={"width": 1200, "height": 820})
    context.set_default_timeout(30_000)
    p = context.new_page()
    try:
        yield p
    finally:
        context.close()


@pytest.fixture(autouse=True)
def _needs_engine() -> None:
    if not (shutil.which("podman") and shutil.which("runc")):
        _missing("podman and runc")
