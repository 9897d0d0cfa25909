"""/docs and /redoc work on a host with no network: every asset they name is served here, and
their Content-Security-Policy admits exactly those assets and the page's own inline script."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from cellplane_platform_support import Platform

_REFERENCES = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url: *'([^']+)'""")


def _references(html: str) -> list[str]:
    return [a or b for a, b in _REFERENCES.findall(html)]


def _directives(csp: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in csp.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_page_references_only_local_assets_that_exist(plat: Platform, page: str) -> None:
    r = plat.client.get(page)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    refs = _references(r.text)
    assert any(ref.endswith(".js") for ref in refs), refs
    assert "/openapi.json" in refs
    for ref in refs:
        assert ref.startswith("/"), f"{page} loads {ref} from elsewhere"
        assert "//" not in ref, ref
        asset = plat.client.get(ref)
        assert asset.status_code == 200, (ref, asset.status_code)
        assert asset.content, ref
    assert "http://" not in r.text and "https://" not in r.text
    if page == "/docs":  # Swagger UI would otherwise fetch a badge from a public validator
        assert '"validatorUrl": null' in r.text


def test_swagger_ui_is_a_version_that_renders_openapi_3_1(plat: Platform) -> None:
    version = plat.client.get("/openapi.json").json()["openapi"]
    assert version.startswith("3.1")
    js = plat.client.get("/docs/assets/swagger-ui-bundle.js").text
    # Swagger UI 4 refuses 3.1 documents ("openapi: 3.0.n" only); 5 added its OAS 3.1 plugin.
    assert "isOAS31" in js


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_csp_allows_the_page_and_nothing_else(plat: Platform, page: str) -> None:
    r = plat.client.get(page)
    csp = _directives(r.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["connect-src"] == ["'self'"]  # the page fetches /openapi.json, nothing else
    assert csp["frame-ancestors"] == ["'none'"]
    inline = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    allowed = set(csp["script-src"])
    digests = {base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in inline}
    # Own files, and exactly the page's inline scripts by hash: no 'unsafe-inline', no origin.
    assert allowed == {"'self'"} | {f"'sha256-{d}'" for d in digests}
    assert r.headers["x-frame-options"] == "DENY"


def test_api_answers_carry_no_docs_csp(plat: Platform) -> None:
    """The CSP is the pages' own: JSON answers and assets keep the guard's headers only."""
    r = plat.client.get("/healthz")
    assert "content-security-policy" not in r.headers
    assert r.headers["x-content-type-options"] == "nosniff"
