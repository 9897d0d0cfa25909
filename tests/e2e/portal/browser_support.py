"""Helpers of the portal's browser tests (imported by path as `browser_support`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PASSWORD = "portal-e2e-password"
#: Screenshots of the main pages, kept in the repository and shown in the README.
SHOTS = Path(__file__).resolve().parents[3] / "docs" / "portal"


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, url: str, user: str) -> None:
    """Through the portal's login page and the issuer's own form, as a person would."""
    page.goto(f"{url}/portal/")
    page.get_by_label("Tenant").fill("default")
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/portal/projects/default/")
