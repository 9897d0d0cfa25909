"""Fixtures for the cluster executor's unit tests (the same catalog as tests/unit/clusters)."""

from __future__ import annotations

import pytest

from cellplane.clusters import Catalog, default_catalog_paths


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The shipped catalog, without operator folders from the environment."""
    return Catalog.load(default_catalog_paths(environ={}))
