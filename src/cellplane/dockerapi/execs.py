"""Exec on a Docker-compatible endpoint: `docker exec` (with `-i`, `-t`, `-d`) and docker-py's
`exec_run`.

`POST /containers/{id}/exec` makes an exec instance (kept in memory, per endpoint, so visible
only in its project; at most :data:`MAX_INSTANCES`, the oldest ended ones go first), `POST
/exec/{id}/start` runs it through the cell's host agent (`services.agent_proxy.open_exec`: the
same path, permission check and `cell.exec` audit event as `cellplane cell exec`), relaying
the hijacked connection: what the client sends is the command's stdin (with `AttachStdin`), its
half-close ends that stdin, and the output goes back in Docker's 8-byte-headed frames (raw with
a TTY). The exit code is recorded before the stream ends, so the CLI's `GET /exec/{id}/json`
that follows finds it. `POST /exec/{id}/resize` is the exec wire's resize.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cellplane.dockerapi.base import blocking, context, json_body, json_response, principal, resolve
from cellplane.dockerapi.mapping import Refused, console_size, parse_env
from cellplane.dockerapi.streams import RAW_STREAM, HalfClose
from cellplane.dockerapi.views import docker_id, docker_state
from cellplane.errors import Conflict
from cellplane.services import agent_proxy, cell_access
from cellplane.wire import exec as wire

__all__ = [
    "MAX_INSTANCES",
    "ExecInstance",
    "Execs",
    "HijackedClient",
    "docker_frame",
    "exec_fields",
    "routes",
    "size_param",
]

#: Exec instances an endpoint keeps; past that, the oldest that are not running are dropped.
MAX_INSTANCES = 1000
#: The exit code reported when the session broke before the command's status came (the host
#: agent was lost): the command's own code is unknown.
LOST = 255
_FRAME = struct.Struct(">BxxxI")


def docker_frame(stream: int, payload: bytes) -> bytes:
    """One frame of Docker's multiplexed stream: 1 stdout, 2 stderr."""
    return _FRAME.pack(stream, len(payload)) + payload


@dataclass
class ExecInstance:
    id: str
    cell_id: str
    container: str
    command: list[str]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    size: tuple[int, int] | None = None  # (cols, rows)
    user: str = ""  # exec -u (the container's default when empty)
    env: list[str] = field(default_factory=list)  # exec -e, "K=V"
    workdir: str = ""  # exec -w (the container's when empty)
    started: bool = False
    running: bool = False
    exit_code: int | None = None
    session: agent_proxy.AgentExec | None = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": self.tty,
                "entrypoint": self.command[0],
                "arguments": self.command[1:],
                "privileged": False,
                "user": self.user,
            },
            "OpenStdin": self.stdin,
            "OpenStderr": self.stderr,
            "OpenStdout": self.stdout,
            "CanRemove": False,
            "ContainerID": self.container,
            "DetachKeys": "",
            "Pid": 0,
        }


class HijackedClient(asyncio.Protocol):
    """The hijacked connection's reader (exec and attach): what the client sends (its stdin),
    then None at its half-close or when the connection is gone (`closed`)."""

    def __init__(self, tls: bool) -> None:
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.tls = tls

    def data_received(self, data: bytes) -> None:
        self.incoming.put_nowait(data)

    def eof_received(self) -> bool:
        self.incoming.put_nowait(None)
        return not self.tls  # under TLS, HalfClose keeps the connection writable

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self.incoming.put_nowait(None)


_NOT_YET = "is not supported on this endpoint yet"
#: Exec options the agent's exec path does not carry: refused when given, naming the option.
_UNSUPPORTED = {"DetachKeys": "exec --detach-keys"}
_MAX_ARGS = 1024
_MAX_PATH = 4096
#: `-u name|uid[:group|gid]`, as the engine takes it.
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})?")


def _process_options(body: dict[str, Any]) -> dict[str, Any]:
    """`-u`, `-e`, `-w` of an exec create body, checked; Refused (400) naming the bad one."""
    user, env, workdir = body.get("User") or "", body.get("Env") or [], body.get("WorkingDir") or ""
    if not isinstance(user, str) or (user and not _USER.fullmatch(user)):
        raise Refused(400, f"exec -u/--user {user!r}: a user name or uid, [:group or gid]")
    if not isinstance(env, list) or len(env) > _MAX_ARGS:
        raise Refused(400, f"exec -e/--env: Env must be a list of at most {_MAX_ARGS} strings")
    for item in env:
        if not isinstance(item, str) or "\0" in item:
            raise Refused(400, f"exec -e/--env: {item!r} is not a string")
    pairs = parse_env(env)  # a bare K (unset on the client) is left out, as Docker does
    if not isinstance(workdir, str) or (workdir and not workdir.startswith("/")):
        raise Refused(400, f"exec -w/--workdir {workdir!r}: the path must be absolute")
    if len(workdir) > _MAX_PATH or "\0" in workdir:
        raise Refused(400, f"exec -w/--workdir: longer than {_MAX_PATH} or not a path")
    return {"user": user, "env": [f"{k}={v}" for k, v in pairs.items()], "workdir": workdir}


def exec_fields(body: dict[str, Any]) -> dict[str, Any]:
    """An exec create body into :class:`ExecInstance` fields; :class:`Refused` naming what the
    endpoint does not do."""
    if body.get("Privileged"):
        raise Refused(403, "exec --privileged is not allowed on this endpoint")
    for key, option in _UNSUPPORTED.items():
        if body.get(key):
            raise Refused(400, f"{option} {_NOT_YET}")
    command = body.get("Cmd")
    if isinstance(command, str):
        command = [command]
    if not isinstance(command, list) or not command:
        raise Refused(400, "No exec command specified")
    if not all(isinstance(c, str) for c in command) or len(command) > _MAX_ARGS:
        raise Refused(400, f"Cmd must be a list of at most {_MAX_ARGS} strings")
    flags = {}
    for key, name in (
        ("AttachStdin", "stdin"),
        ("AttachStdout", "stdout"),
        ("AttachStderr", "stderr"),
        ("Tty", "tty"),
    ):
        value = body.get(key) or False
        if not isinstance(value, bool):
            raise Refused(400, f"{key} must be true or false")
        flags[name] = value
    return {
        "command": list(command),
        "size": console_size(body),
        **flags,
        **_process_options(body),
    }


def size_param(request: web.Request) -> tuple[int, int]:
    out = []
    for name in ("w", "h"):
        raw = request.query.get(name, "")
        if not raw.isdigit() or not 1 <= int(raw) <= wire.MAX_DIMENSION:
            raise Refused(400, f"invalid value for {name!r}: {raw!r} (1-{wire.MAX_DIMENSION})")
        out.append(int(raw))
    return out[0], out[1]


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body = await json_body(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    return body


class Execs:
    """One endpoint's exec instances and its exec routes (one per endpoint application)."""

    def __init__(self, limit: int = MAX_INSTANCES) -> None:
        self.limit = limit
        self.instances: OrderedDict[str, ExecInstance] = OrderedDict()

    def add(self, inst: ExecInstance) -> None:
        """Keep `inst`, dropping the oldest instances that are not running past the limit."""
        while len(self.instances) >= self.limit:
            idle = next((i for i in self.instances.values() if not i.running), None)
            if idle is None:
                raise Refused(409, f"too many execs are running on this endpoint ({self.limit})")
            del self.instances[idle.id]
        self.instances[inst.id] = inst

    def get(self, exec_id: str) -> ExecInstance:
        inst = self.instances.get(exec_id)
        if inst is None:
            raise Refused(404, f"No such exec instance: {exec_id}")
        return inst

    async def create(self, request: web.Request) -> web.Response:
        ctx, p = context(request), principal(request)
        fields = exec_fields(await _json_body(request))
        cell = await blocking(resolve, ctx, p, request.match_info["ref"])
        if docker_state(cell) == "paused":
            raise Refused(
                409,
                f"Container {docker_id(cell['id'])} is paused, unpause the container before exec",
            )
        if docker_state(cell) != "running":
            raise Refused(409, f"container {docker_id(cell['id'])} is not running")
        inst = ExecInstance(
            id=secrets.token_hex(32),
            cell_id=cell["id"],
            container=docker_id(cell["id"]),
            **fields,
        )
        self.add(inst)
        return json_response({"Id": inst.id}, status=201)

    async def inspect(self, request: web.Request) -> web.Response:
        return json_response(self.get(request.match_info["id"]).view())

    async def resize(self, request: web.Request) -> web.Response:
        inst = self.get(request.match_info["id"])
        cols, rows = size_param(request)
        # Kept until the session is open too: the CLI resizes as soon as it has sent start, and
        # opening a session on another host's agent takes longer than that (`start` sends it).
        inst.size = (cols, rows)
        if inst.session is not None:
            with contextlib.suppress(OSError):
                await inst.session.send(wire.RESIZE, wire.resize(cols, rows))
        return web.Response(status=200)

    async def start(self, request: web.Request) -> web.StreamResponse:
        ctx, p = context(request), principal(request)
        body = await _json_body(request)
        inst = self.get(request.match_info["id"])
        if inst.started:
            raise Refused(409, f"exec {inst.id} has already been started")
        detach = bool(body.get("Detach"))
        size = console_size(body) or inst.size
        mode = "tty" if inst.tty else ("interactive" if inst.stdin and not detach else "stream")
        try:
            target = await blocking(
                cell_access.locate_exec, ctx.svc, p, inst.cell_id, inst.command, mode=mode
            )
        except Conflict as exc:
            raise Refused(409, f"container {inst.container} is not running: {exc}") from exc
        inst.started = inst.running = True
        try:
            session = await agent_proxy.open_exec(
                target,
                inst.command,
                stdin=inst.stdin and not detach,
                tty=inst.tty,
                size=size,
                svc=ctx.svc,
                user=inst.user or None,
                env=inst.env or None,
                workdir=inst.workdir or None,
            )
        except BaseException:
            inst.running = False
            inst.exit_code = LOST
            raise
        inst.session = session
        if inst.tty and inst.size is not None and inst.size != size:  # resized while it opened
            with contextlib.suppress(OSError):
                await session.send(wire.RESIZE, wire.resize(*inst.size))
        if detach:
            asyncio.get_running_loop().create_task(self._drain(inst, session))
            return web.Response(status=200)
        return await self._hijack(request, inst, session)

    async def _drain(self, inst: ExecInstance, session: agent_proxy.AgentExec) -> None:
        """A detached exec: run it to its end, keeping only its exit code."""
        try:
            async for channel, payload in session.frames():
                if channel == wire.STATUS:
                    self._ended(inst, wire.parse_status(payload))
                    return
        except (OSError, wire.ProtocolError):
            pass
        finally:
            await session.close()
            self._ended(inst, None)

    def _ended(self, inst: ExecInstance, status: wire.ExecStatus | None) -> None:
        if inst.running:
            inst.exit_code = (
                LOST if status is None or status.exit_code is None else status.exit_code
            )
            inst.running = False
            inst.session = None

    async def _hijack(
        self, request: web.Request, inst: ExecInstance, session: agent_proxy.AgentExec
    ) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
        content_type = "application/vnd.docker.multiplexed-stream" if not inst.tty else RAW_STREAM
        resp = web.StreamResponse(
            status=101 if upgrade else 200,
            headers={
                "Content-Type": content_type,
                **({"Connection": "Upgrade", "Upgrade": "tcp"} if upgrade else {}),
            },
        )
        transport = request.transport
        if transport is None:
            await session.close()
            self._ended(inst, None)
            return resp
        # Before the answer goes out: the client may half-close as soon as it reads it.
        guard = HalfClose(transport)
        client = HijackedClient(guard.tls)
        transport.set_protocol(client)
        try:
            await resp.prepare(request)
            await self._relay(inst, session, transport, client)
        finally:
            await session.close()
            self._ended(inst, None)
            guard.release()
            transport.close()
        return resp

    async def _relay(
        self,
        inst: ExecInstance,
        session: agent_proxy.AgentExec,
        transport: asyncio.BaseTransport,
        client: HijackedClient,
    ) -> None:
        upstream = asyncio.create_task(self._upstream(inst, session, client))
        downstream = asyncio.create_task(self._downstream(inst, session, transport))
        gone = asyncio.create_task(client.closed.wait())
        try:
            await asyncio.wait({downstream, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (upstream, downstream, gone):
                task.cancel()
            for task in (upstream, downstream, gone):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _upstream(
        self, inst: ExecInstance, session: agent_proxy.AgentExec, client: HijackedClient
    ) -> None:
        """The client's bytes to the command's stdin; its half-close closes that stdin. Without
        `AttachStdin` what the client sends is dropped, as Docker does."""
        while (data := await client.incoming.get()) is not None:
            if inst.stdin:
                await session.send(wire.STDIN, data)
        if inst.stdin and not client.closed.is_set():
            await session.send(wire.CLOSE, wire.close_stdin())

    async def _downstream(
        self, inst: ExecInstance, session: agent_proxy.AgentExec, transport: Any
    ) -> None:
        """The command's output to the client; the exit code recorded before the stream ends."""
        first = True
        try:
            async for channel, payload in session.frames():
                if channel == wire.STATUS:
                    status = wire.parse_status(payload)
                    if status.error:  # as Docker: the reason on the stream, then the end
                        message = status.error.encode() + b"\r\n"
                        transport.write(message if inst.tty else docker_frame(1, message))
                    self._ended(inst, status)
                    return
                if channel not in (wire.STDOUT, wire.STDERR):
                    continue
                if not (inst.stdout if channel == wire.STDOUT else inst.stderr):
                    continue
                if inst.tty:
                    if first:  # podman starts a TTY exec's output with a NUL byte
                        payload = payload.removeprefix(b"\x00")
                    if payload:
                        transport.write(payload)
                else:
                    transport.write(docker_frame(channel, payload))
                first = False
        except (OSError, wire.ProtocolError):
            pass
        self._ended(inst, None)

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", "/containers/{ref}/exec", self.create),
            ("POST", "/exec/{id}/start", self.start),
            ("POST", "/exec/{id}/resize", self.resize),
            ("GET", "/exec/{id}/json", self.inspect),
        ]


def routes() -> list[tuple[str, str, Any]]:
    """The exec routes of one endpoint application, with its own instances."""
    return Execs().routes()
