"""`/v1/projects/{p}/docker-endpoints`: one endpoint per project on a free port, refusals that
change nothing, the audit trail. (The listener itself: tests/integration/dockerapi.)"""

from __future__ import annotations

import socket

from cellplane_platform_support import Platform
from sqlalchemy import select

from cellplane.state.identity_models import AuditEvent
from cellplane.state.models import DockerEndpoint

PATH = "/v1/projects/default/docker-endpoints"


def _count(plat: Platform) -> int:
    with plat.svc.db.reader() as s:
        return len(s.scalars(select(DockerEndpoint.id)).all())


def test_create_list_delete(plat: Platform) -> None:
    r = plat.client.post(PATH, json={}, headers=plat.admin)
    assert r.status_code == 201, r.text
    ep = r.json()
    assert ep["project"] == "default" and 1024 <= ep["port"] <= 65535
    assert ep["docker_host"].endswith(f":{ep['port']}") and ep["docker_host"].startswith("tcp://")
    listed = plat.client.get(PATH, headers=plat.admin).json()["items"]
    assert [e["id"] for e in listed] == [ep["id"]]
    # One per project: a second is refused and changes nothing.
    again = plat.client.post(PATH, json={}, headers=plat.admin)
    assert again.status_code == 409 and "has a Docker endpoint already" in again.json()["detail"]
    assert _count(plat) == 1
    assert plat.client.delete(PATH, headers=plat.admin).status_code == 204
    assert plat.client.get(PATH, headers=plat.admin).json()["items"] == []
    gone = plat.client.delete(PATH, headers=plat.admin)
    assert gone.status_code == 404 and "no Docker endpoint" in gone.json()["detail"]
    with plat.svc.db.reader() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent))]
    assert f"POST {PATH.replace('default', '{project}')}" in actions


def test_bad_ports_are_refused_and_change_nothing(plat: Platform) -> None:
    for body, status in (({"port": 80}, 422), ({"port": "x"}, 422), ({"extra": 1}, 422)):
        r = plat.client.post(PATH, json=body, headers=plat.admin)
        assert r.status_code == status, (body, r.text)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = plat.client.post(PATH, json={"port": port}, headers=plat.admin)
        assert r.status_code == 409 and f"port {port}" in r.json()["detail"]
    r = plat.client.post("/v1/projects/nope/docker-endpoints", json={}, headers=plat.admin)
    assert r.status_code == 404
    assert _count(plat) == 0
    assert plat.client.post(PATH, json={}).status_code == 401
