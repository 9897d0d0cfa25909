"""A burst of wrong-password logins and API reads against a real server (issue 7, item 1).

Before the fix, 40 parallel wrong-password grants exhausted the database pool: each request
held its read session's connection while its failure path waited for a second one; the
answers were 500s, /readyz hung and the controller's passes failed. Here 100 parallel
wrong-password grants and 100 parallel API reads run at once against a server whose pool has
no overflow at all (one connection per worker thread, plus the background reserve): every
answer is 400/401/429 or 200, /readyz stays ready throughout, and the controller keeps passing.
The server runs with CELLPLANE_DB_STRICT=1 (tests/conftest.py), so a request path taking a
second connection would also fail loudly.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from cellplane.testing.harness import Deployment

pytestmark = pytest.mark.integration


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    # A small pool with no overflow, and every grant reaching the password check (the request
    # rate limit and the per-address failure throttle raised out of the way): the most
    # pressure the database can get from this burst.
    for name, value in {
        "CELLPLANE_API_THREADS": "8",
        "CELLPLANE_BACKGROUND_THREADS": "2",
        "CELLPLANE_DB_POOL_OVERFLOW": "0",
        "CELLPLANE_DB_POOL_TIMEOUT_S": "20",
        "CELLPLANE_OIDC_RATE_PER_S": "1000",
        "CELLPLANE_OIDC_RATE_BURST": "1000",
        "CELLPLANE_OIDC_SOURCE_MAX_FAILURES": "1000",
    }.items():
        monkeypatch.setenv(name, value)
    d = Deployment(log_level="info")
    try:
        d.start_server()
        yield d
    finally:
        d.close()


def _passes(metrics: str) -> float:
    found = re.search(
        r'^cellplane_reconcile_duration_seconds_count\{loop="schedule"\} (\S+)$', metrics, re.M
    )
    return float(found.group(1)) if found else 0.0


async def _burst(d: Deployment) -> tuple[Counter[int], Counter[int], list[float], float, float]:
    admin = {"Authorization": f"Bearer {d.admin_token}"}
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=d.url, timeout=60, limits=limits) as c:
        before = _passes((await c.get("/metrics")).text)
        stop = asyncio.Event()
        ready: list[float] = []

        async def poll_ready() -> None:
            async with httpx.AsyncClient(base_url=d.url, timeout=15) as probe:
                while not stop.is_set():
                    started = time.monotonic()
                    r = await probe.get("/readyz")
                    assert r.status_code == 200, r.text
                    ready.append(time.monotonic() - started)
                    await asyncio.sleep(0.1)

        async def grant(i: int) -> int:
            r = await c.post(
                "/identity/default/token",
                data={
                    "grant_type": "password",
                    "client_id": "cellplane-cli",
                    "username": "admin" if i % 2 else f"nobody-{i}",
                    "password": f"wrong-{i}",
                },
            )
            return r.status_code

        async def read(i: int) -> int:
            path = "/v1/projects/default/cells" if i % 2 else "/v1/whoami"
            return (await c.get(path, headers=admin)).status_code

        poller = asyncio.create_task(poll_ready())
        await asyncio.sleep(0.2)
        results = await asyncio.gather(
            *(grant(i) for i in range(100)), *(read(i) for i in range(100))
        )
        stop.set()
        await poller
        grants, reads = Counter(results[:100]), Counter(results[100:])
        # The controller keeps passing (its timer is 5 s): wait for a pass after the burst.
        burst_end = _passes((await c.get("/metrics")).text)
        deadline = time.monotonic() + 20
        after = burst_end
        while after <= before and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            after = _passes((await c.get("/metrics")).text)
        return grants, reads, ready, before, after


def test_wrong_password_burst_and_reads_never_exhaust_the_pool(server: Deployment) -> None:
    grants, reads, ready, before, after = asyncio.run(_burst(server))
    log = server.log_tail("server.log", 20000)
    assert set(grants) <= {400, 401, 429}, (grants, log[-3000:])
    assert set(reads) == {200}, (reads, log[-3000:])
    assert ready and max(ready) < 10, ready
    assert after > before, (before, after, log[-3000:])
    for bad in ("QueuePool limit", "SecondConnectionError", "scheduling pass failed", "Traceback"):
        assert bad not in log, log[-3000:]
