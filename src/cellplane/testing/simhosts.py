"""Simulated hosts: thousands of agents in a few processes, for scale tests and benchmarks.

A test and benchmark tool, never used by the product. Each simulated host speaks the real agent
protocol over HTTP (`docs/agent-protocol.md`): it joins with a join token, heartbeats, long-polls
its assignments and reports status in batches, reading and writing the messages with
`wire.agent_plain` as the agent does. What it runs is decided by the agent's own pure reconcile
(`agent.reconcile`) against an in-memory engine (`SimHost`) in which containers are created,
started, stopped and removed instantly.

The agents of one process share one event loop and one `aiohttp.ClientSession` (one connection
pool): no thread per agent. (httpx's pool looks at every open connection on each request: with
a thousand hosts, each holding a long poll and a heartbeat connection, that was most of a core.) `SimHosts` spreads the hosts over several processes (multiprocessing, so
that both cores of a small machine are used) and says when they have all joined.

    python -m cellplane.testing.simhosts --count 1000 --server URL --join-token-file F

runs until interrupted and prints the processes' counters on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import multiprocessing
import queue
import signal
import ssl
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from json import loads as json_loads
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from cellplane.agent.reconcile import (
    GENERATION_LABEL,
    Action,
    Memory,
    is_stale,
    observed_state,
    reconcile,
)
from cellplane.agent.spec import CELL_LABEL, HOST_LABEL, container_name
from cellplane.drivers.base import ContainerInfo
from cellplane.wire import agent_plain as wire

__all__ = ["SimHost", "SimHosts", "SimSpec", "host_names", "main"]


@dataclasses.dataclass(frozen=True)
class SimSpec:
    """What to simulate. Capacity is the allocatable capacity each host registers with."""

    server: str
    join_token: str
    count: int
    prefix: str = "sim"
    processes: int = 2
    cpu: float = 64.0
    memory_mb: int = 256 * 1024
    disk_gb: int = 2000
    zones: int = 0  # 0: no zone; else hosts are spread over zones z0..z{n-1}
    heartbeat_s: float = 2.0  # as the agent (`AgentConfig.heartbeat_s`)
    poll_wait_s: float = 25.0  # as the agent's long poll
    register_parallel: int = 32  # registrations in flight per process
    ca_file: str | None = None  # the deployment's root certificate, for an https server

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be at least 1, not {self.count}")
        if self.processes < 1:
            raise ValueError(f"processes must be at least 1, not {self.processes}")
        if not self.server.startswith(("http://", "https://")):
            raise ValueError(f"server must be an http:// or https:// URL, not {self.server!r}")
        if not self.join_token:
            raise ValueError("a join token is required")
        if self.cpu <= 0 or self.memory_mb <= 0 or self.disk_gb <= 0:
            raise ValueError("cpu, memory_mb and disk_gb must be positive")


def host_names(spec: SimSpec) -> list[list[str]]:
    """The host names, dealt round-robin to the processes (never an empty share)."""
    names = [f"{spec.prefix}-{i:05d}" for i in range(spec.count)]
    n = min(spec.processes, spec.count)
    return [names[k::n] for k in range(n)]


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat()


def _event(kind: str, message: str, now: float) -> dict[str, Any]:
    return {"at": _iso(now), "type": kind, "message": message}


class SimHost:
    """One simulated host: the agent's state and an in-memory engine. No I/O: the assignments
    come in, the status report items go out, the time is an argument."""

    def __init__(self, name: str, index: int = 0) -> None:
        self.name = name
        self.index = index
        self.host_id = ""
        self.revision = 0
        self.desired: dict[str, wire.CellAssignment] = {}
        self.containers: dict[str, ContainerInfo] = {}  # cell id -> its container
        self.memory = Memory()
        self.full_revision = 0
        self.fenced_sent = 0
        self.synced = False
        self._reported: dict[str, tuple[Any, ...]] = {}
        self._serial = 0

    def register_request(self, spec: SimSpec) -> dict[str, Any]:
        body = wire.RegisterRequest(
            api_version=wire.API_VERSION,
            join_token=spec.join_token,
            name=self.name,
            address=f"10.{(self.index >> 16) & 255}.{(self.index >> 8) & 255}.{self.index & 255}",
            capacity=wire.HostCapacity(
                cpu=spec.cpu, memory_mb=spec.memory_mb, disk_gb=spec.disk_gb, cores=4, cpu_ratio=16
            ),
            labels={"sim": "1"},
            zone=f"z{self.index % spec.zones}" if spec.zones else None,
            engine=wire.EngineHealthReport(state="UP"),
            isolation=["standard"],
        )
        out: dict[str, Any] = wire.dump(body, exclude_none=True)
        return out

    # --- the engine ---

    def _new_container(self, cell: wire.CellAssignment, now: float) -> ContainerInfo:
        self._serial += 1
        cid = hashlib.sha256(f"{self.name}/{cell.cell_id}/{self._serial}".encode()).hexdigest()
        n = len(self.containers) + 2
        return ContainerInfo(
            id=cid,
            name=container_name(cell.cell_id),
            labels={
                CELL_LABEL: cell.cell_id,
                HOST_LABEL: self.host_id,
                GENERATION_LABEL: str(cell.generation),
            },
            state="running",
            running=True,
            started_at=_iso(now),
            address=f"10.200.{(n >> 8) & 255}.{n & 255}",
        )

    def _run(self, a: Action, now: float, out: list[dict[str, Any]]) -> None:
        cell = self.desired.get(a.cell_id)
        info = self.containers.get(a.cell_id)
        events: list[dict[str, Any]] = []
        if a.kind == "REMOVE_ORPHAN":
            if info is not None and info.id == a.container_id:
                del self.containers[a.cell_id]
            return
        if cell is None:
            return
        if a.kind == "REMOVE":
            if info is not None:
                events.append(_event("stopped", "stopping for deletion", now))
            self.containers.pop(a.cell_id, None)
            self.desired.pop(a.cell_id, None)
            self._reported.pop(a.cell_id, None)
            self.memory.seen_container.discard(a.cell_id)
            self.memory.ended.pop(a.cell_id, None)
            events.append(_event("removed", "", now))
            out.append({"cell_id": a.cell_id, "removed": True, "events": events})
            return
        if a.kind == "END":
            self.memory.ended[a.cell_id] = cell.restart_requested_at
            out.append(
                {"cell_id": a.cell_id, "state": "FAILED", "ended": True, "message": "vanished"}
            )
            return
        if a.kind == "CREATE":
            info = self._new_container(cell, now)
            events += [
                _event("image-ready", cell.image.id, now),
                _event("created", info.id[:12], now),
                _event("started", "", now),
            ]
        elif info is None:
            return
        elif a.kind in ("START", "RESTART"):
            info = dataclasses.replace(
                info, running=True, state="running", started_at=_iso(now), exit_code=None
            )
            events.append(
                _event("started", "restarted on request" if a.kind == "RESTART" else "", now)
            )
        elif a.kind == "STOP":
            info = dataclasses.replace(
                info, running=False, state="exited", exit_code=0, finished_at=_iso(now)
            )
            events.append(_event("stopped", "stopped on request", now))
        self.memory.unlimited.pop(a.cell_id, None)  # limits are set with every start here
        self.memory.action_succeeded(a.cell_id)
        self.memory.seen_container.add(a.cell_id)
        self.memory.last_running[a.cell_id] = info.running
        self.containers[a.cell_id] = info
        self._observe(cell, info, out, events)

    def _observe(
        self,
        cell: wire.CellAssignment,
        info: ContainerInfo | None,
        out: list[dict[str, Any]],
        events: list[dict[str, Any]] | None = None,
    ) -> None:
        """A report of the cell's observed state, unless the same truth was already sent."""
        report: dict[str, Any] = {
            "cell_id": cell.cell_id,
            "state": observed_state(cell, info),
            "generation": cell.generation,
        }
        if info is not None:
            report["container_id"] = info.id
            report["exit_code"] = None if info.running else info.exit_code
            if info.running and info.address:
                report["address"] = info.address
        report["restarts"] = cell.restarts
        key = tuple(sorted((k, str(v)) for k, v in report.items()))
        if not events and self._reported.get(cell.cell_id) == key:
            return
        self._reported[cell.cell_id] = key
        out.append({**report, "events": events} if events else report)

    # --- the protocol ---

    def apply(self, data: wire.Assignments, now: float) -> list[dict[str, Any]]:
        """Take an assignments answer, run what the reconcile asks for; the report items."""
        if data.full:
            self.desired = {c.cell_id: c for c in data.cells}
            self.synced = True
            self.full_revision = data.revision
        else:
            for c in data.cells:
                self.desired[c.cell_id] = c
        self.revision = data.revision
        out: list[dict[str, Any]] = []
        acted = set()
        # The agent reconciles again when an action finishes (a stale container removed is
        # then created anew): passes until nothing is left to do, here at once.
        for _ in range(4):
            observed = {k: v for k, v in self.containers.items() if k in self.desired}
            orphans = [v for k, v in self.containers.items() if k not in self.desired]
            actions = reconcile(
                dict(self.desired),
                observed,
                orphans if data.full else [],
                self.memory,
                now,
                full_sync=self.synced and data.full,
            )
            if not actions:
                break
            for a in actions:
                acted.add(a.cell_id)
                self._run(a, now, out)
        for c in data.cells:
            if c.cell_id not in acted and c.cell_id in self.desired:
                self._observe(c, self.containers.get(c.cell_id), out)
        if (
            self.synced
            and self.full_revision > self.fenced_sent
            and all(k in self.desired for k in self.containers)
            and not any(is_stale(self.desired[k], i) for k, i in self.containers.items())
        ):
            self.fenced_sent = self.full_revision
            out.append({"fenced": self.full_revision})
        return out

    def running(self) -> int:
        return sum(1 for i in self.containers.values() if i.running)


# --- one process: many agents on one event loop -------------------------------------------------


@dataclasses.dataclass
class Counters:
    registered: int = 0
    polls: int = 0
    reports: int = 0
    report_items: int = 0
    heartbeats: int = 0
    errors: int = 0
    running: int = 0
    last_error: str = ""


class _Unavailable(Exception):
    pass


class _Process:
    """The agents of one process, sharing one HTTP client."""

    def __init__(self, spec: SimSpec, names: list[str], first_index: int) -> None:
        self.spec = spec
        self.hosts = [SimHost(n, first_index + i * spec.processes) for i, n in enumerate(names)]
        self.counters = Counters()
        self.tokens: dict[str, str] = {}
        self.stop = asyncio.Event()

    async def _call(
        self,
        http: aiohttp.ClientSession,
        host: SimHost,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float = 60.0,
    ) -> Any:
        """The answer's JSON (None when it has no body)."""
        headers = {"Authorization": f"Bearer {self.tokens[host.name]}"} if host.host_id else {}
        try:
            async with http.request(
                method,
                self.spec.server.rstrip("/") + url,
                headers=headers,
                json=json,
                params=params,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as r:
                body = await r.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise _Unavailable(f"{method} {url}: {type(e).__name__}: {e}") from e
        if r.status >= 500 or r.status == 429:
            raise _Unavailable(f"{method} {url}: HTTP {r.status}")
        if r.status >= 400:
            text = body[:300].decode(errors="replace")
            raise RuntimeError(f"{method} {url}: HTTP {r.status}: {text}")
        return json_loads(body) if body else None

    def _failed(self, e: BaseException) -> None:
        self.counters.errors += 1
        self.counters.last_error = str(e)[:300]

    async def _register(
        self, http: aiohttp.ClientSession, host: SimHost, gate: asyncio.Semaphore
    ) -> None:
        delay = 0.2
        async with gate:
            while not self.stop.is_set():
                try:
                    answer = wire.parse(
                        wire.RegisterAnswer,
                        await self._call(
                            http,
                            host,
                            "POST",
                            "/v1/agent/register",
                            json=host.register_request(self.spec),
                        ),
                    )
                    self.tokens[host.name] = answer.host_token
                    host.host_id = answer.host_id
                    self.counters.registered += 1
                    return
                except _Unavailable as e:
                    self._failed(e)
                    await self._sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def _report(self, http: aiohttp.ClientSession, host: SimHost, items: list[Any]) -> None:
        body = {"api_version": wire.API_VERSION, "cells": items}
        delay = 0.2
        while not self.stop.is_set():
            try:
                await self._call(
                    http, host, "POST", f"/v1/agent/hosts/{host.host_id}/status", json=body
                )
                self.counters.reports += 1
                self.counters.report_items += len(items)
                return
            except _Unavailable as e:
                self._failed(e)
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _poll(self, http: aiohttp.ClientSession, host: SimHost) -> None:
        revision, delay = 0, 0.2
        wait = self.spec.poll_wait_s
        while not self.stop.is_set():
            try:
                answer = await self._call(
                    http,
                    host,
                    "GET",
                    f"/v1/agent/hosts/{host.host_id}/assignments",
                    params={"revision": revision, "wait": wait},
                    timeout=wait + 15,
                )
                data = wire.parse(wire.Assignments, answer)
            except _Unavailable as e:
                self._failed(e)
                revision = 0  # after an outage, a full view again (as the agent)
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            except (RuntimeError, wire.ProtocolError) as e:
                self._failed(e)
                await self._sleep(2.0)
                continue
            delay = 0.2
            self.counters.polls += 1
            before = host.running()
            items = host.apply(data, time.time())
            self.counters.running += host.running() - before
            revision = data.revision
            if items:
                await self._report(http, host, items)

    async def _heartbeat(self, http: aiohttp.ClientSession, host: SimHost) -> None:
        body = {"api_version": wire.API_VERSION}
        # Spread over the interval: a thousand hosts do not beat in step.
        await self._sleep(self.spec.heartbeat_s * ((host.index * 0.618) % 1.0))
        while not self.stop.is_set():
            try:
                await self._call(
                    http, host, "POST", f"/v1/agent/hosts/{host.host_id}/heartbeat", json=body
                )
                self.counters.heartbeats += 1
            except (_Unavailable, RuntimeError) as e:
                self._failed(e)
            await self._sleep(self.spec.heartbeat_s)

    async def run(self, ready: Callable[[Counters], None], stopped: Callable[[], bool]) -> None:
        tls = ssl.create_default_context(cafile=self.spec.ca_file) if self.spec.ca_file else None
        # No bound on connections: each host holds a long poll and may beat beside it.
        connector = aiohttp.TCPConnector(limit=0, ssl=tls if tls is not None else True)
        async with aiohttp.ClientSession(connector=connector) as http:
            gate = asyncio.Semaphore(self.spec.register_parallel)
            await asyncio.gather(*(self._register(http, h, gate) for h in self.hosts))
            ready(self.counters)
            tasks = [asyncio.create_task(self._poll(http, h)) for h in self.hosts]
            tasks += [asyncio.create_task(self._heartbeat(http, h)) for h in self.hosts]
            while not stopped():
                await asyncio.sleep(0.2)
            self.stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _process_main(
    spec: SimSpec, names: list[str], first_index: int, out: Any, stop: MpEvent
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through `stop`
    proc = _Process(spec, names, first_index)
    try:
        asyncio.run(proc.run(lambda c: out.put(("ready", dataclasses.asdict(c))), stop.is_set))
    except BaseException as e:  # reported to the parent, which raises
        out.put(("error", f"{type(e).__name__}: {e}"))
        return
    out.put(("done", dataclasses.asdict(proc.counters)))


class SimHosts:
    """`spec.count` simulated hosts in `spec.processes` processes. `start()` returns once every
    host joined; `stop()` ends them and returns the summed counters."""

    def __init__(self, spec: SimSpec) -> None:
        self.spec = spec
        ctx = multiprocessing.get_context("spawn")
        self._out = ctx.Queue()
        self._stop = ctx.Event()
        shares = host_names(spec)
        self._procs = [
            ctx.Process(
                target=_process_main,
                args=(spec, share, k, self._out, self._stop),
                name=f"cp-simhosts-{k}",
                daemon=True,
            )
            for k, share in enumerate(shares)
        ]
        self.counters: dict[str, Any] = {}
        self._stopped = False

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def start(self, timeout: float = 300.0) -> SimHosts:
        for p in self._procs:
            p.start()
        deadline = time.monotonic() + timeout
        ready = 0
        while ready < len(self._procs):
            try:
                kind, data = self._out.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"{ready} of {len(self._procs)} processes joined") from None
                dead = [p.name for p in self._procs if p.exitcode is not None]
                if dead:
                    self.stop()
                    raise RuntimeError(f"simulated host processes exited: {dead}") from None
                continue
            if kind == "error":
                self.stop()
                raise RuntimeError(f"a simulated host process failed: {data}")
            ready += 1
        return self

    def stop(self) -> dict[str, Any]:
        if self._stopped:
            return self.counters
        self._stopped = True
        self._stop.set()
        totals: dict[str, Any] = {}
        for p in self._procs:
            if p.pid is not None:
                p.join(30)
            if p.is_alive():
                p.kill()
                p.join(5)
        with contextlib.suppress(queue.Empty, OSError, ValueError):
            while True:
                kind, data = self._out.get(timeout=0.2)
                if kind != "done":
                    continue
                for k, v in data.items():
                    if isinstance(v, int):
                        totals[k] = totals.get(k, 0) + v
                    elif v:
                        totals[k] = v
        self.counters = totals
        return totals

    def __enter__(self) -> SimHosts:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cellplane.testing.simhosts", description=__doc__)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--server", required=True)
    p.add_argument("--join-token-file", type=Path, required=True)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--prefix", default="sim")
    p.add_argument("--zones", type=int, default=0)
    a = p.parse_args(argv)
    try:
        token = a.join_token_file.read_text().strip()
        spec = SimSpec(
            server=a.server,
            join_token=token,
            count=a.count,
            processes=a.processes,
            prefix=a.prefix,
            zones=a.zones,
        )
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sim = SimHosts(spec)
    sim.start()
    print(f"{spec.count} simulated hosts joined {spec.server}; Ctrl-C stops them", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(1)
    print(sim.stop(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
