"""Leader failover: kill -9 the leading server replica while clients create cells.

Run `python bench/leader_failover.py` (as the PostgreSQL tests: as root, PostgreSQL 15 binaries
installed); prints one JSON object on stdout (progress on stderr).

A private PostgreSQL in a temporary directory (`cellplane.testing.postgres`), `--replicas`
`cellplane server` processes on it and one agent with its podman engine, every one of them
given all the replicas' URLs (`cellplane.testing.replicas`). `--clients` client threads create
small cells (busybox sleeping) one after another through the SDK, each request with its own
Idempotency-Key, retried with that same key until it is acknowledged (as a client that lost an
answer does). After `--warmup` seconds the leader is killed with SIGKILL; the clients carry on
for `--after` seconds more; then every acknowledged cell must be RUNNING.

- `takeover_s`: from the kill until a surviving replica says it leads (GET /v1/system/leader,
  polled every 0.05 s) (target <= 10 s);
- `first_placed_after_s`: from the kill until the first cell asked for after it is placed;
- `duplicate_placements`: cells placed more than once ("scheduled" events) plus cell names made
  twice (a retried create that made a second cell) plus cells with more than one container in
  the engine (target 0);
- `lost_requests`: creates never acknowledged, plus acknowledged cells missing or not RUNNING
  120 s after the clients stopped (target 0).

Baseline, same run: `place_s_before_p50`, the median time from a create to its placement before
the kill (what a placement costs without a takeover), and `lock_idle_s`, after which
PostgreSQL frees the lock of a leader that went silent without dying.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, log, percentile

SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--after", type=float, default=10.0)
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between a client's creates")
    args = ap.parse_args()

    import httpx
    from sqlalchemy import create_engine, text

    from cellplane.client import CellplaneError
    from cellplane.client.errors import CellplaneConnectionError
    from cellplane.controller.leader import LOCK_IDLE_S
    from cellplane.testing.busybox import build_busybox_archive
    from cellplane.testing.postgres import PostgresServer, find_bindir
    from cellplane.testing.replicas import Replicas

    bindir = find_bindir()
    if bindir is None:
        emit({"error": "PostgreSQL server binaries not found"})
        return 1
    pg = PostgresServer(bindir)
    pg.start()
    r: Replicas | None = None
    try:
        url = pg.create_database("bench")
        r = Replicas(url, count=args.replicas)
        r.start()
        with r.client() as c:
            c.upload_image("busybox", build_busybox_archive(r.deployment.data_dir / "img"))
        log(f"{args.replicas} replicas and an agent up")

        stop = threading.Event()
        lock = threading.Lock()
        acked: dict[str, tuple[float, str]] = {}  # name -> (asked at, cell id)
        lost: list[str] = []
        killed_at: list[float] = []

        def client_loop(n: int) -> None:
            with r.client(timeout=20, retries=2) as c:  # type: ignore[union-attr]
                i = 0
                while not stop.is_set():
                    name = f"lf-{n}-{i}"
                    key = str(uuid.uuid4())
                    asked = time.monotonic()
                    deadline = asked + 60
                    while True:
                        try:
                            task = c.create_cell(
                                "default",
                                name,
                                "busybox",
                                command=SLEEP,
                                cpu=0.01,
                                memory_mb=16,
                                idempotency_key=key,
                            )
                            with lock:
                                acked[name] = (asked, str(task["entity"]["id"]))
                            break
                        except (CellplaneConnectionError, CellplaneError) as exc:
                            status = getattr(exc, "status", None)
                            if status is not None and status < 500:
                                log(f"{name}: refused: {exc}")
                                with lock:
                                    lost.append(name)
                                break
                            if time.monotonic() > deadline:
                                with lock:
                                    lost.append(name)
                                break
                            time.sleep(0.2)  # retried with the same key
                    i += 1
                    time.sleep(args.pause)

        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(args.warmup)
        leaders = r.leading()
        if len(leaders) != 1:
            raise RuntimeError(f"expected one leader before the kill, saw {leaders}")
        victim = leaders[0]
        log(f"killing the leader, replica {victim}")
        killed_at.append(time.monotonic())
        r.kill(victim)
        takeover_s: float | None = None
        headers = {"Authorization": f"Bearer {r.token}"}
        while takeover_s is None and time.monotonic() - killed_at[0] < 60:
            for i, u in enumerate(r.urls):
                if i == victim:
                    continue
                try:
                    ans = httpx.get(f"{u}/v1/system/leader", headers=headers, timeout=2).json()
                except (httpx.HTTPError, ValueError):
                    continue
                if ans.get("leading"):
                    takeover_s = time.monotonic() - killed_at[0]
                    log(f"replica {i} leads after {takeover_s:.2f} s (epoch {ans['epoch']})")
                    break
            time.sleep(0.05)
        time.sleep(args.after)
        stop.set()
        for t in threads:
            t.join()
        log(f"{len(acked)} cells acknowledged, {len(lost)} requests not; waiting for RUNNING")

        engine = create_engine(url)
        try:
            deadline = time.monotonic() + 120
            not_running: list[str] = []
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    states = dict(conn.execute(text("SELECT id, state FROM cells")).all())
                not_running = [n for n, (_, cid) in acked.items() if states.get(cid) != "RUNNING"]
                if not not_running:
                    break
                time.sleep(1)
            with engine.connect() as conn:
                scheduled = Counter(
                    row[0]
                    for row in conn.execute(
                        text("SELECT cell_id FROM cell_events WHERE type = 'scheduled'")
                    )
                )
                placed_at = {
                    row[0]: row[1]
                    for row in conn.execute(
                        text(
                            "SELECT cell_id, min(at) FROM cell_events "
                            "WHERE type = 'scheduled' GROUP BY cell_id"
                        )
                    )
                }
                created_at = dict(conn.execute(text("SELECT id, created_at FROM cells")).all())
                names = Counter(row[0] for row in conn.execute(text("SELECT name FROM cells")))
        finally:
            engine.dispose()
        containers = _containers_per_cell(r.deployment.engine_url)
        twice_placed = sum(1 for n in scheduled.values() if n > 1)
        twice_named = sum(1 for n in names.values() if n > 1)
        twice_run = sum(1 for n in containers.values() if n > 1)
        before = [
            (placed_at[cid] - created_at[cid]).total_seconds()
            for asked, cid in acked.values()
            if asked < killed_at[0] and cid in placed_at
        ]
        after = [
            (asked, cid)
            for asked, cid in acked.values()
            if asked >= killed_at[0] and cid in placed_at
        ]
        first_after: float | None = None
        if after:
            kill_wall = time.time() - (time.monotonic() - killed_at[0])
            first = min(placed_at[cid].timestamp() for _, cid in after)
            first_after = round(first - kill_wall, 3)
        emit(
            {
                "replicas": args.replicas,
                "clients": args.clients,
                "cells_acknowledged": len(acked),
                "takeover_s": None if takeover_s is None else round(takeover_s, 3),
                "first_placed_after_s": first_after,
                "duplicate_placements": twice_placed + twice_named + twice_run,
                "duplicate_detail": {
                    "placed_twice": twice_placed,
                    "named_twice": twice_named,
                    "containers_twice": twice_run,
                },
                "lost_requests": len(lost) + len(not_running),
                "lost_detail": {"unacknowledged": len(lost), "not_running": len(not_running)},
                "place_s_before_p50": round(percentile(before, 50), 3) if before else None,
                "lock_idle_s": LOCK_IDLE_S,
                "database": "postgresql",
            }
        )
        return 0
    finally:
        if r is not None:
            r.close()
        pg.stop()


def _containers_per_cell(engine_url: str) -> Counter[str]:
    """How many containers the agent's engine has for each cell (by the cell label)."""
    import docker

    api = docker.APIClient(base_url=engine_url)
    try:
        out: Counter[str] = Counter()
        for c in api.containers(all=True):
            cell = (c.get("Labels") or {}).get("cellplane.cell")
            if cell:
                out[cell] += 1
        return out
    finally:
        api.close()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    os.environ.setdefault("CELLPLANE_LOG_LEVEL", "warning")
    sys.exit(main())
