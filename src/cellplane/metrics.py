"""Prometheus metrics of the server, on a registry of its own (exposed at `/metrics`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "DOCKER_WAITS",
    "LEADER",
    "LEADER_EPOCH",
    "RECONCILE_SECONDS",
    "REGISTRY",
    "REQUEST_SECONDS",
    "TASK_SECONDS",
    "register_cell_states",
]

REGISTRY = CollectorRegistry(auto_describe=True)

REQUEST_SECONDS = Histogram(
    "cellplane_http_request_duration_seconds",
    "HTTP request latency by route",
    ["method", "route", "status"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RECONCILE_SECONDS = Histogram(
    "cellplane_reconcile_duration_seconds",
    "Duration of one pass of a controller loop",
    ["loop"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
LEADER = Gauge(
    "cellplane_leader",
    "1 while this server replica runs the controllers (the leader), else 0",
    registry=REGISTRY,
)
LEADER_EPOCH = Gauge(
    "cellplane_leader_epoch",
    "The leadership epoch this replica took when it last became the leader (0: never)",
    registry=REGISTRY,
)
DOCKER_WAITS = Gauge(
    "cellplane_docker_waits",
    "Docker `wait` requests the endpoints hold open (each ends with its container or its client)",
    registry=REGISTRY,
)
TASK_SECONDS = Histogram(
    "cellplane_task_duration_seconds",
    "Duration of finished tasks, from creation to a terminal state",
    ["kind", "state"],
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


class _CellStates(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        g = GaugeMetricFamily("cellplane_cells", "Cells by observed state", labels=["state"])
        for state, n in sorted(self._counts().items()):
            g.add_metric([state], n)
        yield g


_registered: list[_CellStates] = []


def register_cell_states(counts: Callable[[], dict[str, int]]) -> None:
    """Point the cells-by-state gauge at the running server's database (read at scrape time)."""
    for c in _registered:
        REGISTRY.unregister(c)
    _registered.clear()
    c = _CellStates(counts)
    REGISTRY.register(c)
    _registered.append(c)
