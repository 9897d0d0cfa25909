"""Fixtures of the OIDC provider tests; helpers live in oidc_support.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from cellplane_platform_support import Platform
from oidc_support import BASE, Oidc

from cellplane.api.routes_identity import provider_of


@pytest.fixture
def oidc(plat: Platform) -> Iterator[Oidc]:
    plat.client.base_url = httpx.URL(BASE)
    provider = provider_of(plat.client.app)
    o = Oidc(plat, provider)
    provider.clock = lambda: time.time() + o.offset[0]
    yield o
