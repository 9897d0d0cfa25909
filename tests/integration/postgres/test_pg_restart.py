"""PostgreSQL restarted under load: 8 clients create groups while the database server is
restarted (`pg_ctl restart -m fast`, every connection cut). The Cellplane server reconnects on
its own; no answer is a 500 (a write caught by the restart is 503 with Retry-After, nothing
changed); every acknowledged write is there afterwards, and each refused one, retried with its
Idempotency-Key as a client does, is made exactly once. No agent or engine is needed."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from cellplane.testing.harness import Deployment

from .conftest import PostgresServer

pytestmark = pytest.mark.integration

WRITERS = 8


@pytest.fixture
def server(pg: PostgresServer) -> Iterator[Deployment]:
    d = Deployment(database_url=pg.create_database("restart"))
    try:
        d.start_server()
        yield d
    finally:
        d.close()


def _names(http: httpx.Client) -> list[str]:
    r = http.get("/v1/groups", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [p["name"] for p in r.json()["items"]]


def test_postgres_restart_under_load_loses_no_acknowledged_write(
    pg: PostgresServer, server: Deployment
) -> None:
    http = httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=60,
    )
    before = set(_names(http))
    restarted = threading.Event()
    lock = threading.Lock()
    answers: dict[str, int] = {}  # project name -> status of its first attempt
    keys: dict[str, str] = {}
    statuses: list[int] = []
    odd: list[str] = []  # answers other than 201 and 503, for the failure message

    def writer(w: int) -> None:
        i = 0
        # Write until the restart is over, then 20 more each.
        extra = 20
        while extra > 0:
            name = f"pg-{w}-{i:03d}"
            key = str(uuid.uuid4())
            try:
                r = http.post("/v1/groups", json={"name": name}, headers={"Idempotency-Key": key})
                status = r.status_code
                if status not in (201, 503):
                    odd.append(f"{status} {r.text[:300]}")
            except httpx.TransportError as e:
                status = 0
                odd.append(f"transport {e!r}")
            with lock:
                answers[name], keys[name] = status, key
                statuses.append(status)
            i += 1
            if restarted.is_set():
                extra -= 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    try:
        while len(statuses) < 40:  # load is on
            threading.Event().wait(0.05)
        pg.run("pg_ctl", "-D", str(pg.data), "-l", str(pg.log), "-m", "fast", "-w", "restart")
    finally:
        restarted.set()
        for t in threads:
            t.join(120)

    codes = Counter(statuses)
    assert 500 not in codes and 0 not in codes, (codes, odd[:10], server.log_tail("server.log"))
    assert set(codes) <= {201, 503}, codes
    acked = {n for n, s in answers.items() if s == 201}
    listed = set(_names(http)) - before
    assert acked <= listed, sorted(acked - listed)  # no acknowledged write lost
    # A refused write changed nothing, or (its commit raced the cut) is found by its retry.
    for name, status in answers.items():
        if status != 201:
            r = http.post(
                "/v1/groups", json={"name": name}, headers={"Idempotency-Key": keys[name]}
            )
            assert r.status_code in (201, 409), r.text
    final = _names(http)
    assert len(final) == len(set(final))
    assert set(final) - before == set(answers)
    assert server.server_proc is not None and server.server_proc.poll() is None
    http.close()


def test_concurrent_project_creates_each_get_a_network(server: Deployment) -> None:
    """Each project gets its default network, with a subnet of its own, when 8 clients create
    projects at once (before: two picked the same free subnet, and the second was refused with
    409 "a network with this subnet already exists")."""
    http = httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=60,
    )
    names = [f"par-{i:02d}" for i in range(48)]

    def create(name: str) -> httpx.Response:
        return http.post("/v1/projects", json={"name": name})

    with ThreadPoolExecutor(WRITERS) as pool:
        answers = list(pool.map(create, names))
    assert Counter(r.status_code for r in answers) == {201: len(names)}, [
        r.text for r in answers if r.status_code != 201
    ][:3]
    r = http.get("/v1/projects", params={"limit": 1000})
    ids = [p["id"] for p in r.json()["items"] if p["name"] in names]
    assert len(ids) == len(names)
    http.close()
