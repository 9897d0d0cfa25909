"""An in-memory Cellplane server speaking docs/api.md, as an httpx.MockTransport handler.

Used by the SDK tests here and, loaded by path, by the CLI tests in
tests/unit/cli. It keeps just enough behaviour to make the client's logic
observable: idempotency keys, pagination, problem documents, task event
streams, and injected failures (`fail_next`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["Failure", "FakeApi"]

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_CELL_STEPS = ["SCHEDULE", "PREPARE_IMAGE", "CREATE", "START", "RUNNING"]
_STOP_STEPS = ["STOP"]
_START_STEPS = ["SCHEDULE", "START", "RUNNING"]
_DELETE_STEPS = ["STOP", "DELETE"]


@dataclass
class Failure:
    """One injected failure, consumed by the next matching request.

    status: answer this status (a problem) instead of handling the request.
    error: raise this transport error instead of answering.
    after_commit: handle the request (state changes happen), then raise `error`:
        the answer is lost on the way back, as on a dropped connection.
    """

    status: int | None = None
    error: type[httpx.TransportError] | None = None
    after_commit: bool = False
    method: str | None = None


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> httpx.Response:
    body = {
        "type": f"https://cellplane.dev/problems/{kind}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return httpx.Response(
        status, content=json.dumps(body), headers={"Content-Type": "application/problem+json"}
    )


@dataclass
class FakeApi:
    token: str = "secret-token"
    page_size: int = 2
    requests: list[httpx.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    fail_next: list[Failure] = field(default_factory=list)
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)  # by name
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    flavors: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # task id -> the successive snapshots the event stream sends
    task_history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # how many snapshots the event stream sends before closing early (None: all)
    stream_cut: int | None = None
    idempotency: dict[str, tuple[str, httpx.Response]] = field(default_factory=dict)
    logs: dict[str, list[str]] = field(default_factory=dict)
    _seq: int = 0

    def __post_init__(self) -> None:
        self.projects["default"] = {"id": "prj-1", "name": "default", "tenant": "default"}
        for name, cpu, mem, disk in (("SMALL", 1.0, 512, 1), ("MEDIUM", 2.0, 2048, 10)):
            self.flavors[name] = {"name": name, "cpu": cpu, "memory_mb": mem, "disk_gb": disk}
        for i, name in enumerate(("node-a", "node-b"), start=1):
            self.hosts[f"hst-{i}"] = {
                "id": f"hst-{i}",
                "name": name,
                "address": f"10.0.0.{i}",
                "state": "READY",
                "labels": {},
                "zone": "z1",
                "capacity": {"cpu": 2, "memory_mb": 4096, "disk_gb": 50},
                "usage": {"cpu": 1, "memory_mb": 512, "disk_gb": 1, "cells": 1},
                "last_heartbeat": "2024-01-01T00:00:00Z",
            }

    # -- plumbing -----------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self._seq}"

    def requests_to(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.requests.append(request)
        self.bodies.append(body)
        failure = None
        if self.fail_next and self.fail_next[0].method in (None, request.method):
            failure = self.fail_next.pop(0)
        if failure is not None and not failure.after_commit:
            if failure.error is not None:
                raise failure.error("injected", request=request)
            assert failure.status is not None
            return problem(failure.status, "unavailable", "Service unavailable", "try again")
        response = self._handle(request, body)
        if failure is not None and failure.error is not None:
            raise failure.error("injected after commit", request=request)
        return response

    def _handle(self, request: httpx.Request, body: bytes) -> httpx.Response:
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return problem(401, "unauthorized", "Unauthorized", "missing or bad bearer token")
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key is not None:
            fingerprint = f"{request.url.path}?{request.url.query.decode()} {body!r}"
            if key in self.idempotency:
                seen, answer = self.idempotency[key]
                if seen != fingerprint:
                    return problem(
                        422,
                        "idempotency-mismatch",
                        "Idempotency key reused",
                        "the key was used with a different request",
                    )
                return httpx.Response(
                    answer.status_code, content=answer.content, headers=answer.headers
                )
            response = self._route(request, body)
            response.read()
            self.idempotency[key] = (fingerprint, response)
            return response
        return self._route(request, body)

    def _route(self, request: httpx.Request, body: bytes) -> httpx.Response:
        for method, pattern, handler in self._routes():
            match = re.fullmatch(pattern, request.url.path)
            if match and method == request.method:
                return handler(request, body, *match.groups())
        return problem(404, "not-found", "Not found", f"no route {request.url.path}")

    def _routes(self) -> list[tuple[str, str, Callable[..., httpx.Response]]]:
        return [
            ("GET", r"/v1/whoami", self.whoami),
            ("GET", r"/v1/hosts", self.list_of(lambda r: list(self.hosts.values()))),
            ("GET", r"/v1/hosts/([^/]+)", self.get_from(self.hosts, "host")),
            ("POST", r"/v1/hosts/([^/]+)/maintenance", self.maintenance),
            ("POST", r"/v1/hosts/([^/]+)/drain", self.drain),
            ("GET", r"/v1/flavors", self.list_of(lambda r: list(self.flavors.values()))),
            ("GET", r"/v1/images", self.list_of(lambda r: list(self.images.values()))),
            ("POST", r"/v1/images", self.upload_image),
            ("DELETE", r"/v1/images/([^/]+)", self.delete_image),
            ("GET", r"/v1/projects", self.list_of(lambda r: list(self.projects.values()))),
            ("POST", r"/v1/projects", self.create_project),
            ("DELETE", r"/v1/projects/([^/]+)", self.delete_project),
            ("POST", r"/v1/projects/([^/]+)/cells", self.create_cell),
            ("GET", r"/v1/projects/([^/]+)/cells", self.list_of(self._cells_matching)),
            ("GET", r"/v1/cells/([^/]+)", self.get_from(self.cells, "cell")),
            ("DELETE", r"/v1/cells/([^/]+)", self.delete_cell),
            ("POST", r"/v1/cells/([^/]+)/(start|stop|restart)", self.cell_action),
            ("POST", r"/v1/cells/([^/]+)/move", self.cell_move),
            ("GET", r"/v1/cells/([^/]+)/logs", self.cell_logs),
            ("POST", r"/v1/cells/([^/]+)/exec", self.cell_exec),
            ("POST", r"/v1/projects/([^/]+)/volumes", self.create_volume),
            ("GET", r"/v1/projects/([^/]+)/volumes", self.list_of(self._volumes_matching)),
            ("GET", r"/v1/volumes/([^/]+)", self.get_from(self.volumes, "volume")),
            ("DELETE", r"/v1/volumes/([^/]+)", self.delete_volume),
            ("POST", r"/v1/projects/([^/]+)/networks", self.create_network),
            ("GET", r"/v1/projects/([^/]+)/networks", self.list_networks),
            ("DELETE", r"/v1/projects/([^/]+)/networks/([^/]+)", self.delete_network),
            ("POST", r"/v1/cells/([^/]+)/networks", self.connect_cell_network),
            ("DELETE", r"/v1/cells/([^/]+)/networks/([^/]+)", self.disconnect_cell_network),
            ("GET", r"/v1/tasks/([^/]+)", self.get_task),
            ("GET", r"/v1/tasks/([^/]+)/events", self.task_events),
        ]

    # -- generic handlers -----------------------------------------------------

    def list_of(
        self, source: Callable[[httpx.Request], list[dict[str, Any]]]
    ) -> Callable[..., httpx.Response]:
        def handler(request: httpx.Request, body: bytes, *groups: str) -> httpx.Response:
            items = source(request)
            offset = int(request.url.params.get("cursor") or 0)
            limit = int(request.url.params.get("limit") or self.page_size)
            page = items[offset : offset + limit]
            more = offset + limit < len(items)
            return httpx.Response(
                200, json={"items": page, "next_cursor": str(offset + limit) if more else None}
            )

        return handler

    def get_from(
        self, store: dict[str, dict[str, Any]], kind: str
    ) -> Callable[..., httpx.Response]:
        def handler(request: httpx.Request, body: bytes, item_id: str) -> httpx.Response:
            if item_id not in store:
                return problem(404, "not-found", "Not found", f"{kind} {item_id} does not exist")
            return httpx.Response(200, json=store[item_id])

        return handler

    def _cells_matching(self, request: httpx.Request) -> list[dict[str, Any]]:
        project = request.url.path.split("/")[3]
        params = request.url.params
        labels = [label.split("=", 1) for label in params.get_list("label")]
        result = []
        for cell in self.cells.values():
            if cell["project"] != project:
                continue
            if params.get("name") and cell["name"] != params["name"]:
                continue
            if params.get("state") and cell["state"] != params["state"]:
                continue
            if any(cell["labels"].get(k) != v for k, v in labels):
                continue
            result.append(cell)
        return result

    def _volumes_matching(self, request: httpx.Request) -> list[dict[str, Any]]:
        project = request.url.path.split("/")[3]
        name = request.url.params.get("name")
        return [
            v
            for v in self.volumes.values()
            if v["project"] == project and (not name or v["name"] == name)
        ]

    # -- tasks ----------------------------------------------------------------

    def make_task(
        self, kind: str, entity: dict[str, str], steps: list[str], fail_at: str | None = None
    ) -> dict[str, Any]:
        """Record a task's whole life; return its first (QUEUED) snapshot."""
        task_id = self._id("tsk")
        snapshots = []
        current = [{"name": s, "state": "QUEUED", "error": None} for s in steps]

        def snap(state: str, progress: int, error: str | None = None) -> None:
            snapshots.append(
                {
                    "id": task_id,
                    "kind": kind,
                    "state": state,
                    "entity": entity,
                    "progress": progress,
                    "steps": [dict(s) for s in current],
                    "error": error,
                    "created_at": "2024-01-01T00:00:00Z",
                }
            )

        snap("QUEUED", 0)
        for i, step in enumerate(current):
            step["state"] = "STARTED"
            snap("STARTED", 100 * i // len(current))
            if step["name"] == fail_at:
                step["state"] = "ERROR"
                step["error"] = "image not found"
                for rest in current[i + 1 :]:
                    rest["state"] = "SKIPPED"
                snap("ERROR", 100 * i // len(current), f"{step['name']} failed: image not found")
                break
            step["state"] = "COMPLETED"
        else:
            snap("COMPLETED", 100)
        self.task_history[task_id] = snapshots
        return snapshots[0]

    def get_task(self, request: httpx.Request, body: bytes, task_id: str) -> httpx.Response:
        if task_id not in self.task_history:
            return problem(404, "not-found", "Not found", f"task {task_id} does not exist")
        history = self.task_history[task_id]
        # Without a cut the task is over; with one, it is stuck where the stream stopped.
        index = -1 if self.stream_cut is None else min(self.stream_cut, len(history)) - 1
        return httpx.Response(200, json=history[index])

    def task_events(self, request: httpx.Request, body: bytes, task_id: str) -> httpx.Response:
        if task_id not in self.task_history:
            return problem(404, "not-found", "Not found", f"task {task_id} does not exist")
        history = self.task_history[task_id]
        if self.stream_cut is not None:
            history = history[: self.stream_cut]
        chunks = [": keep-alive\n\n"]
        chunks += [f"event: task\ndata: {json.dumps(t)}\n\n" for t in history]
        return httpx.Response(
            200,
            content="".join(chunks).encode(),
            headers={"Content-Type": "text/event-stream"},
        )

    def accepted(self, task: dict[str, Any]) -> httpx.Response:
        return httpx.Response(202, json=task, headers={"Location": f"/v1/tasks/{task['id']}"})

    # -- resources ------------------------------------------------------------

    def whoami(self, request: httpx.Request, body: bytes) -> httpx.Response:
        return httpx.Response(200, json={"subject": "admin", "tenant": "default", "roles": []})

    def maintenance(self, request: httpx.Request, body: bytes, host_id: str) -> httpx.Response:
        if host_id not in self.hosts:
            return problem(404, "not-found", "Not found", f"host {host_id} does not exist")
        enabled = json.loads(body)["enabled"]
        self.hosts[host_id]["state"] = "MAINTENANCE" if enabled else "READY"
        return httpx.Response(200, json=self.hosts[host_id])

    def upload_image(self, request: httpx.Request, body: bytes) -> httpx.Response:
        name = request.url.params["name"]
        image_id = self._id("img")
        image: dict[str, Any] = {
            "id": image_id,
            "name": name,
            "kind": "archive",
            "size_bytes": len(body),
            "refs": [],
            "created_at": "2024-01-01T00:00:00Z",
        }
        self.images[image_id] = image
        return httpx.Response(201, json=image)

    def delete_image(self, request: httpx.Request, body: bytes, ref: str) -> httpx.Response:
        for image_id, image in list(self.images.items()):
            if ref in (image_id, image["name"]):
                del self.images[image_id]
                return httpx.Response(204)
        return problem(404, "not-found", "Not found", f"image {ref} does not exist")

    def create_project(self, request: httpx.Request, body: bytes) -> httpx.Response:
        name = json.loads(body)["name"]
        if name in self.projects:
            return problem(409, "conflict", "Conflict", f"project {name} exists")
        self.projects[name] = {"id": self._id("prj"), "name": name, "tenant": "default"}
        return httpx.Response(201, json=self.projects[name])

    def delete_project(self, request: httpx.Request, body: bytes, name: str) -> httpx.Response:
        if name not in self.projects:
            return problem(404, "not-found", "Not found", f"project {name!r} does not exist")
        cells = sorted(c["name"] for c in self.cells.values() if c.get("project") == name)
        if cells:
            return problem(409, "conflict", "Conflict", f"project {name!r} still has cells {cells}")
        del self.projects[name]
        return httpx.Response(204)

    def create_cell(self, request: httpx.Request, body: bytes, project: str) -> httpx.Response:
        spec = json.loads(body)
        name = spec.get("name", "")
        if not _DNS_LABEL.match(name):
            return problem(
                422,
                "validation",
                "Invalid request",
                "name: must be a DNS label\n(a-z, 0-9, '-', 1-63 chars)",
                errors=[{"field": "name", "message": "must be a DNS label"}],
            )
        if any(c["name"] == name and c["project"] == project for c in self.cells.values()):
            return problem(409, "conflict", "Conflict", f"a cell named {name} exists")
        cell_id = self._id("cel")
        failed = spec["image"] == "missing"
        self.cells[cell_id] = {
            "id": cell_id,
            "name": name,
            "project": project,
            "tenant": "default",
            "image": spec["image"],
            "flavor": spec.get("flavor"),
            "cpu": spec.get("cpu", 1.0),
            "memory_mb": spec.get("memory_mb", 512),
            "disk_gb": 1,
            "command": spec.get("command"),
            "env": spec.get("env", {}),
            "labels": spec.get("labels", {}),
            "ports": spec.get("ports", []),
            "volumes": spec.get("volumes", []),
            "restart": spec.get("restart", {"policy": "never", "max_retries": None}),
            "desired_state": "RUNNING",
            "state": "FAILED" if failed else "RUNNING",
            "host": None if failed else "hst-1",
            "address": None if failed else "10.89.0.5",
            "exit_code": None,
            "restarts": 0,
            "container_id": None,
            "events": [{"at": "2024-01-01T00:00:00Z", "type": "created", "message": "ok"}],
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
        }
        self.logs[cell_id] = [f"line {i}" for i in range(1, 6)]
        entity = {"kind": "cell", "id": cell_id}
        fail_at = "PREPARE_IMAGE" if failed else None
        return self.accepted(self.make_task("CREATE_CELL", entity, _CELL_STEPS, fail_at))

    def cell_action(
        self, request: httpx.Request, body: bytes, cell_id: str, action: str
    ) -> httpx.Response:
        if cell_id not in self.cells:
            return problem(404, "not-found", "Not found", f"cell {cell_id} does not exist")
        steps = {"start": _START_STEPS, "stop": _STOP_STEPS, "restart": _STOP_STEPS + _START_STEPS}
        self.cells[cell_id]["state"] = "STOPPED" if action == "stop" else "RUNNING"
        entity = {"kind": "cell", "id": cell_id}
        return self.accepted(self.make_task(f"{action.upper()}_CELL", entity, steps[action]))

    def cell_move(self, request: httpx.Request, body: bytes, cell_id: str) -> httpx.Response:
        if cell_id not in self.cells:
            return problem(404, "not-found", "Not found", f"cell {cell_id} does not exist")
        target = json.loads(body)["host"]
        if target not in self.hosts and target not in {h["name"] for h in self.hosts.values()}:
            return problem(404, "not-found", "Not found", f"host {target!r} does not exist")
        entity = {"kind": "cell", "id": cell_id}
        return self.accepted(self.make_task("MOVE_CELL", entity, _CELL_STEPS))

    def drain(self, request: httpx.Request, body: bytes, host_id: str) -> httpx.Response:
        if host_id not in self.hosts:
            return problem(404, "not-found", "Not found", f"host {host_id} does not exist")
        self.hosts[host_id]["state"] = "MAINTENANCE"
        cells = [c["name"] for c in self.cells.values() if c.get("host") == host_id]
        steps = ["MAINTENANCE", *(f"MOVE {n}" for n in cells)]
        return self.accepted(self.make_task("DRAIN_HOST", {"kind": "host", "id": host_id}, steps))

    def delete_cell(self, request: httpx.Request, body: bytes, cell_id: str) -> httpx.Response:
        if cell_id not in self.cells:
            return problem(404, "not-found", "Not found", f"cell {cell_id} does not exist")
        del self.cells[cell_id]
        entity = {"kind": "cell", "id": cell_id}
        return self.accepted(self.make_task("DELETE_CELL", entity, _DELETE_STEPS))

    def cell_logs(self, request: httpx.Request, body: bytes, cell_id: str) -> httpx.Response:
        if cell_id not in self.cells:
            return problem(404, "not-found", "Not found", f"cell {cell_id} does not exist")
        lines = self.logs[cell_id]
        tail = request.url.params.get("tail")
        if tail is not None:
            lines = lines[-int(tail) :] if int(tail) else []
        text = "".join(line + "\n" for line in lines)
        return httpx.Response(200, text=text, headers={"Content-Type": "text/plain"})

    def cell_exec(self, request: httpx.Request, body: bytes, cell_id: str) -> httpx.Response:
        if cell_id not in self.cells:
            return problem(404, "not-found", "Not found", f"cell {cell_id} does not exist")
        command = json.loads(body)["command"]
        code = 7 if command[0] == "fail" else 0
        return httpx.Response(200, json={"exit_code": code, "output": " ".join(command) + "\n"})

    def create_volume(self, request: httpx.Request, body: bytes, project: str) -> httpx.Response:
        spec = json.loads(body)
        volume = {
            "id": self._id("vol"),
            "name": spec["name"],
            "project": project,
            "size_gb": spec.get("size_gb", 1),
            "host": None,
            "attached_to": [],
            "created_at": "2024-01-01T00:00:00Z",
        }
        self.volumes[volume["id"]] = volume
        return httpx.Response(201, json=volume)

    def create_network(self, request: httpx.Request, body: bytes, project: str) -> httpx.Response:
        name = json.loads(body)["name"]
        if name in self.networks:
            return problem(409, "conflict", "Conflict", f"a network named {name!r} exists")
        net = {
            "id": self._id("net"),
            "name": name,
            "project": project,
            "subnet": f"10.128.{len(self.networks)}.0/24",
            "vni": 4097 + len(self.networks),
            "cells": 0,
            "engine_name": "cp-net",
            "created_at": "2024-01-01T00:00:00Z",
        }
        self.networks[name] = net
        return httpx.Response(201, json=net)

    def list_networks(self, request: httpx.Request, body: bytes, project: str) -> httpx.Response:
        return httpx.Response(
            200, json={"items": list(self.networks.values()), "next_cursor": None}
        )

    def delete_network(
        self, request: httpx.Request, body: bytes, project: str, name: str
    ) -> httpx.Response:
        net = self.networks.get(name)
        if net is None:
            return problem(404, "not-found", "Not found", f"network {name!r} does not exist")
        if net["cells"]:
            return problem(409, "conflict", "Conflict", f"network {name!r} is used by cells")
        del self.networks[name]
        return httpx.Response(204)

    def connect_cell_network(
        self, request: httpx.Request, body: bytes, cell_id: str
    ) -> httpx.Response:
        cell = self.cells[cell_id]
        nets = cell.setdefault("networks", [{"name": "default", "address": "10.128.0.2"}])
        nets.append({"name": json.loads(body)["network"], "address": "10.128.9.2"})
        return httpx.Response(200, json=cell)

    def disconnect_cell_network(
        self, request: httpx.Request, body: bytes, cell_id: str, name: str
    ) -> httpx.Response:
        cell = self.cells[cell_id]
        nets = [n for n in cell.get("networks") or [] if n["name"] != name]
        if not nets:
            return problem(409, "conflict", "Conflict", "the cell's only network")
        cell["networks"] = nets
        return httpx.Response(200, json=cell)

    def delete_volume(self, request: httpx.Request, body: bytes, volume_id: str) -> httpx.Response:
        volume = self.volumes.get(volume_id)
        if volume is None:
            return problem(404, "not-found", "Not found", f"volume {volume_id} does not exist")
        if volume["attached_to"]:
            return problem(
                409, "conflict", "Volume in use", f"attached to {', '.join(volume['attached_to'])}"
            )
        del self.volumes[volume_id]
        return httpx.Response(204)
