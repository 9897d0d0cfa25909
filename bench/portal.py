"""Portal pages at scale: server time of the dashboard, the cells list and a cell page with N cells.

Run `python bench/portal.py --cells 1000`; prints one JSON object on stdout (progress on stderr).

Set-up, in process (no podman, no sockets): a migrated and seeded SQLite database in a temporary
directory, the server app (`create_app`) with the portal mounted, one registered host big enough
for every cell, and N cells created through `POST /v1/projects/default/cells` and placed by the
scheduler (`schedule_pending`), so they have a host and a task each. The cells are real rows
made by the real services; no agent runs, so no container exists and they stay SCHEDULED (the
pages read the same rows whatever the state). A user signs in to the portal through the real
issuer (authorization code + PKCE, the login form).

Measured: server time of each request, from the moment the app is called until the last byte of
the body is handed over (an ASGI wrapper around the whole app, so the server's middleware is
included; the test client's own work is not). Each page `--reps` times after `--warmup` untimed
requests: `/portal/projects/default/` (dashboard: quota bars and 10 recent tasks),
`/portal/projects/default/cells` (the first page of 100 cells), `/portal/cells/{id}`,
`/portal/projects/default/tasks` (the tasks page: the last 200 tasks) and, signed in as a
tenant admin, `/portal/audit` (the first page of 50 audit events; every create above wrote one).

Baseline, same run, same database: the REST API's requests for the same data, with the
bootstrap admin's token: `GET /v1/projects/default/quota` + `GET /v1/projects/default/tasks?
limit=10` (the dashboard's two reads, timed as one), `GET /v1/projects/default/cells?limit=100`,
`GET /v1/cells/{id}`, `GET /v1/projects/default/tasks?limit=200`, `GET /v1/audit?limit=50`.
Target (issue 16): p50 <= 100 ms per page.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cellplane.api.app import create_app
from cellplane.controller.scheduling import schedule_pending
from cellplane.ids import utcnow
from cellplane.portal import install
from cellplane.services.bootstrap import seed
from cellplane.services.context import Services
from cellplane.state.db import Database, migrate

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

BASE = "https://bench.test"
PASSWORD = "bench-portal-password"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


class ServerTime:
    """ASGI wrapper: seconds from the call to the last body byte, per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - started

        await self.app(scope, receive, timed)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _hidden(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in _HIDDEN.findall(page)}


def sign_in(client: Any, user: str) -> None:
    r = client.get("/portal/login")
    r = client.post(
        "/portal/login",
        data={"csrf": _hidden(r.text)["csrf"], "tenant": "default", "next": "/portal/"},
    )
    r = client.get(r.headers["location"])
    action = html.unescape(re.search(r'action="([^"]+)"', r.text).group(1))  # type: ignore[union-attr]
    r = client.post(action, data={**_hidden(r.text), "username": user, "password": PASSWORD})
    r = client.get(r.headers["location"])
    if r.status_code != 303 or r.headers["location"] != "/portal/":
        raise SystemExit(f"portal sign-in failed: {r.status_code} {r.text[:300]}")


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def timed_gets(client: Any, timer: ServerTime, paths: list[str], reps: int, warmup: int,
               headers: dict[str, str] | None = None) -> dict[str, float]:  # fmt: skip
    """Server time of `paths` requested one after another, summed, `reps` times."""
    for _ in range(warmup):
        for p in paths:
            client.get(p, headers=headers)
    samples = []
    for _ in range(reps):
        total = 0.0
        for p in paths:
            r = client.get(p, headers=headers)
            if r.status_code != 200:
                raise SystemExit(f"{p}: {r.status_code} {r.text[:300]}")
            total += timer.last
        samples.append(total)
    return _stats(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="cp-bench-portal-") as tmp:
        url = f"sqlite:///{tmp}/cellplane.db"
        migrate(url)
        db = Database(url)
        svc = Services(db=db, data_dir=Path(tmp) / "data")
        seeded = seed(svc)
        admin = {"Authorization": f"Bearer {seeded.admin_token}"}
        app = create_app(svc, run_controllers=False)
        install(app)
        timer = ServerTime(app)
        with TestClient(timer, base_url=BASE, follow_redirects=False) as client:
            body = {
                "api_version": "agent/v1",
                "join_token": seeded.join_token,
                "name": "bench-host",
                "address": "10.0.0.1",
                "capacity": {"cpu": 100_000, "memory_mb": 100_000_000, "disk_gb": 1_000_000},
            }
            r = client.post("/v1/agent/register", json=body)
            assert r.status_code == 200, r.text
            host = r.json()
            beat = f"/v1/agent/hosts/{host['host_id']}/heartbeat"
            host_auth = {"Authorization": f"Bearer {host['host_token']}"}
            r = client.post(
                "/v1/users", json={"name": "bench", "password": PASSWORD}, headers=admin
            )
            assert r.status_code == 201, r.text
            for user, role in (("bench", "project-member"), ("benchadmin", "tenant-admin")):
                if user != "bench":
                    body = {"name": user, "password": PASSWORD}
                    r = client.post("/v1/users", json=body, headers=admin)
                    assert r.status_code == 201, r.text
                body = {"role": role, "user": user}
                r = client.post("/v1/role-assignments", json=body, headers=admin)
                assert r.status_code == 201, r.text
            log(f"creating {args.cells} cells")
            started = time.perf_counter()
            for i in range(args.cells):
                cell = {"name": f"c{i:05d}", "image": "host", "cpu": 0.01, "memory_mb": 16,
                        "command": ["sleep", "3600"], "labels": {"bench": "portal"}}  # fmt: skip
                r = client.post("/v1/projects/default/cells", json=cell, headers=admin)
                assert r.status_code == 202, r.text
                if i % 100 == 99:  # the host stays READY (no agent runs to beat for it)
                    client.post(beat, headers=host_auth)
                    schedule_pending(svc, utcnow())
            schedule_pending(svc, utcnow())
            log(f"created and placed in {time.perf_counter() - started:.1f} s")
            some = client.get("/v1/projects/default/cells?limit=1&name=c00500", headers=admin)
            cell_id = (some.json()["items"] or client.get(
                "/v1/projects/default/cells?limit=1", headers=admin).json()["items"])[0]["id"]  # fmt: skip
            sign_in(client, "bench")
            reps, warm = args.reps, args.warmup
            portal = {
                "dashboard": timed_gets(client, timer, ["/portal/projects/default/"], reps, warm),
                "cells_list": timed_gets(
                    client, timer, ["/portal/projects/default/cells"], reps, warm
                ),
                "cell_page": timed_gets(client, timer, [f"/portal/cells/{cell_id}"], reps, warm),
                "tasks_list": timed_gets(
                    client, timer, ["/portal/projects/default/tasks"], reps, warm
                ),
            }
            with TestClient(timer, base_url=BASE, follow_redirects=False) as operator:
                sign_in(operator, "benchadmin")
                portal["audit"] = timed_gets(operator, timer, ["/portal/audit"], reps, warm)
            api = {
                "dashboard": timed_gets(
                    client,
                    timer,
                    ["/v1/projects/default/quota", "/v1/projects/default/tasks?limit=10"],
                    reps,
                    warm,
                    admin,
                ),
                "cells_list": timed_gets(
                    client, timer, ["/v1/projects/default/cells?limit=100"], reps, warm, admin
                ),
                "cell_page": timed_gets(client, timer, [f"/v1/cells/{cell_id}"], reps, warm, admin),
                "tasks_list": timed_gets(
                    client, timer, ["/v1/projects/default/tasks?limit=200"], reps, warm, admin
                ),
                "audit": timed_gets(client, timer, ["/v1/audit?limit=50"], reps, warm, admin),
            }
        db.dispose()
    print(
        json.dumps(
            {
                "benchmark": "portal",
                "cells": args.cells,
                "cells_are": "rows made by the API and placed by the scheduler; no containers",
                "reps": args.reps,
                "portal": portal,
                "baseline_rest_api": api,
                "target_p50_ms": 100,
                "meets_target": all(v["p50_ms"] <= 100 for v in portal.values()),
            }
        )
    )


if __name__ == "__main__":
    main()
