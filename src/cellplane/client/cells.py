"""Cells: create, list, lifecycle, logs and exec. A part of `cellplane.client.Client`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx

from cellplane.client._base import BaseClient, JSONDict, drop_none, label_params
from cellplane.client.errors import CellplaneConnectionError, CellplaneError

if TYPE_CHECKING:
    from cellplane.client.exec import ExecSession

__all__ = ["CellsApi"]


class CellsApi(BaseClient):
    """The cell routes of the API."""

    def create_cell(
        self,
        project: str,
        name: str,
        image: str,
        *,
        flavor: str | None = None,
        cpu: float | None = None,
        memory_mb: int | None = None,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        ports: Sequence[Mapping[str, Any]] | None = None,
        volumes: Sequence[Mapping[str, Any]] | None = None,
        restart: Mapping[str, Any] | None = None,
        start: bool = True,
        read_only: bool = False,
        pids_limit: int | None = None,
        placement: str | None = None,
        affinity: Sequence[Mapping[str, Any]] | None = None,
        isolation: str | None = None,
        network: str | None = None,
        networks: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        """Ask for a cell; returns the CREATE_CELL task (202). Unset fields use server defaults.

        `read_only`: a read-only root file system (writable volumes and /tmp, /run stay so);
        `pids_limit`: its own limit on processes and threads (None: the host's default);
        `placement`: "spread" or "binpack"; `affinity`: terms `{"selector": {k: v}, "anti":
        bool, "soft": bool}` placing the cell with (or away from) the cells they select;
        `isolation`: `standard` or `sandbox` (gVisor); None: the tenant's or project's minimum;
        `network`: the project network it joins (default: the project's own); `networks`:
        several, the first one first (not with `network`)."""
        body = drop_none(
            {
                "name": name,
                "image": image,
                "flavor": flavor,
                "cpu": cpu,
                "memory_mb": memory_mb,
                "command": None if command is None else list(command),
                "env": None if env is None else dict(env),
                "labels": None if labels is None else dict(labels),
                "ports": None if ports is None else [dict(p) for p in ports],
                "volumes": None if volumes is None else [dict(v) for v in volumes],
                "restart": None if restart is None else dict(restart),
                "start": start,
                "read_only": read_only or None,
                "pids_limit": pids_limit,
                "placement": placement,
                "affinity": None if affinity is None else [dict(a) for a in affinity],
                "isolation": isolation,
                "network": network,
                "networks": None if networks is None else list(networks),
            }
        )
        return self._json(
            "POST",
            f"/v1/projects/{project}/cells",
            json_body=body,
            idempotency_key=idempotency_key,
        )

    @staticmethod
    def _cell_query(
        labels: Mapping[str, str] | None, state: str | None, name: str | None
    ) -> list[tuple[str, str]]:
        query = label_params(labels)
        if state:
            query.append(("state", state))
        if name:
            query.append(("name", name))
        return query

    def list_cells(
        self,
        project: str,
        *,
        labels: Mapping[str, str] | None = None,
        state: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JSONDict:
        """One page of a project's cells: `{items, next_cursor}`."""
        query = self._cell_query(labels, state, name)
        return self._page(f"/v1/projects/{project}/cells", query, limit, cursor)

    def iter_cells(
        self,
        project: str,
        *,
        labels: Mapping[str, str] | None = None,
        state: str | None = None,
        name: str | None = None,
    ) -> Iterator[JSONDict]:
        """Every matching cell of a project, following `next_cursor`."""
        query = self._cell_query(labels, state, name)
        return self._iter(f"/v1/projects/{project}/cells", query)

    def find_cell(self, project: str, name: str) -> JSONDict | None:
        """The cell called `name` in `project`, or None."""
        # Compare names here too: exactness must not depend on how the server filters.
        return next((c for c in self.iter_cells(project, name=name) if c.get("name") == name), None)

    def get_cell(self, cell_id: str) -> JSONDict:
        return self._json("GET", f"/v1/cells/{cell_id}")

    def start_cell(self, cell_id: str, *, idempotency_key: str | None = None) -> JSONDict:
        """Returns the START task."""
        return self._json("POST", f"/v1/cells/{cell_id}/start", idempotency_key=idempotency_key)

    def stop_cell(
        self,
        cell_id: str,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        """Returns the STOP task; `timeout` is the grace period before SIGKILL, in seconds."""
        return self._json(
            "POST",
            f"/v1/cells/{cell_id}/stop",
            json_body=drop_none({"timeout": timeout}),
            idempotency_key=idempotency_key,
        )

    def restart_cell(
        self,
        cell_id: str,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        """Returns the restart task."""
        return self._json(
            "POST",
            f"/v1/cells/{cell_id}/restart",
            json_body=drop_none({"timeout": timeout}),
            idempotency_key=idempotency_key,
        )

    def move_cell(self, cell_id: str, host: str, *, idempotency_key: str | None = None) -> JSONDict:
        """Move the cell to `host` (name or id); returns the MOVE_CELL task."""
        return self._json(
            "POST",
            f"/v1/cells/{cell_id}/move",
            json_body={"host": host},
            idempotency_key=idempotency_key,
        )

    def delete_cell(self, cell_id: str) -> JSONDict:
        """Returns the DELETE task."""
        return self._json("DELETE", f"/v1/cells/{cell_id}")

    def cell_logs(
        self, cell_id: str, *, tail: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        """Yield log lines (without their newline); with `follow`, until the stream ends."""
        query: list[tuple[str, str]] = []
        if tail is not None:
            query.append(("tail", str(tail)))
        if follow:
            query.append(("follow", "true"))
        # A followed log may stay silent for hours; that is not a failure.
        timeout = httpx.Timeout(self._timeout, read=None) if follow else None
        headers = {"Accept": "text/plain"}
        with self._stream(
            f"/v1/cells/{cell_id}/logs", params=query, headers=headers, timeout=timeout
        ) as response:
            try:
                yield from response.iter_lines()
            except httpx.HTTPError as exc:
                raise CellplaneConnectionError(
                    "Connection lost", f"reading logs of {cell_id}: {exc or type(exc).__name__}"
                ) from exc

    def exec_cell(
        self, cell_id: str, command: Sequence[str], *, idempotency_key: str | None = None
    ) -> JSONDict:
        """Run a command in a running cell and collect its output: `{exit_code, output}`.
        `exec_stream` streams it instead, with stdin and a TTY."""
        return self._json(
            "POST",
            f"/v1/cells/{cell_id}/exec",
            json_body={"command": list(command)},
            idempotency_key=idempotency_key,
        )

    def exec_stream(
        self,
        cell_id: str,
        command: Sequence[str],
        *,
        stdin: bool = False,
        tty: bool = False,
        size: tuple[int, int] | None = None,
    ) -> ExecSession:
        """Start a command in a running cell with its streams attached (the WebSocket
        `GET /v1/cells/{id}/exec`, docs/exec.md): an `ExecSession` whose `output()` yields
        what it prints as it prints it, then `status` holds its exit code. `stdin` forwards
        `send_stdin`; `tty` gives it a terminal, of `size` (cols, rows) at once."""
        from cellplane.client import exec as exec_mod  # websockets: only for this method

        query: list[tuple[str, str]] = [("command", c) for c in command]
        query += [("stdin", "true" if stdin else "false"), ("tty", "true" if tty else "false")]
        if size is not None:
            query += [("cols", str(size[0])), ("rows", str(size[1]))]
        path = f"/v1/cells/{cell_id}/exec?{urlencode(query)}"
        renewed = False
        while True:
            url, headers, context = self._ws_target(path)
            try:
                return exec_mod.connect(
                    url, headers, context, stdin=stdin, tty=tty, timeout=self._timeout
                )
            except CellplaneError as exc:
                if exc.status != 401 or renewed:
                    raise
                renewed = True
                if not self._renew_after_401(headers.get("Authorization")):
                    raise
