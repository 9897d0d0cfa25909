"""Each shipped distro's cluster exports to a spec that re-creates the same cluster.

The real executor against the in-process server (the `ex` fixture, executor_support.py: a fake
agent thread plays the host, readiness probes pass at once, host binaries are assumed present).
"""

from __future__ import annotations

from typing import Any

import pytest
from cellplane_executor_support import cells, run
from cellplane_platform_support import Platform

from cellplane.clusters import Catalog, default_catalog_paths, parse_spec
from cellplane.controller.clusters import ClusterExecutor

DISTROS = sorted(Catalog.load(default_catalog_paths(environ={})).distros)


def _shape(plat: Platform, cluster_id: str) -> Any:
    view = plat.client.get(f"/v1/clusters/{cluster_id}", headers=plat.admin).json()
    now = cells(plat)
    nodes = [
        (
            n["name"],
            n["group"],
            n["roles"],
            n["state"],
            now[n["name"]].cpu,
            now[n["name"]].memory_mb,
        )
        for n in view["nodes"]
    ]
    return view["nodeGroups"], nodes, sorted(view["endpoints"]), view["state"]


@pytest.mark.parametrize("distro", DISTROS)
def test_export_and_reimport_each_shipped_distro(
    plat: Platform,
    ex: ClusterExecutor,
    distro: str,
) -> None:
    # Small nodes, so that every distro fits the test host (the published Mesos sizes do not).
    spec = plat.client.get("/v1/catalog/specs", headers=plat.admin).json()["items"]
    groups = next(
        s["spec"]["nodeGroups"]
        for s in spec
        if s["vendor"].lower() == distro.lower() or distro in s["path"].lower()
    )
    overrides = {g["name"]: {"cpuNum": 1, "memCapacityMB": 128} for g in groups}
    r = plat.client.post(
        "/v1/projects/default/clusters",
        json={"name": "rt", "distro": distro, "overrides": overrides},
        headers=plat.admin,
    )
    assert r.status_code == 202, r.text
    first = run(plat, ex, "rt")
    assert first is not None and first.state == "RUNNING", first and first.message
    before = _shape(plat, first.id)
    exported = plat.client.get(f"/v1/clusters/{first.id}/export", headers=plat.admin).json()
    assert parse_spec(exported) == parse_spec(first.spec)
    r = plat.client.delete(f"/v1/clusters/{first.id}", headers=plat.admin)
    assert r.status_code == 202, r.text
    assert run(plat, ex, "rt") is None
    r = plat.client.post(
        "/v1/projects/default/clusters",
        json={"name": "rt", "distro": distro, "spec": exported},
        headers=plat.admin,
    )
    assert r.status_code == 202, r.text
    second = run(plat, ex, "rt")
    assert second is not None and second.state == "RUNNING", second and second.message
    assert second.id != first.id
    assert _shape(plat, second.id) == before
