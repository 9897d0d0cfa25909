"""`PodmanDriver`: the `Driver` Protocol over a podman service socket.

The host agent builds one `PodmanDriver` on the socket of its own engine
(`engine.PodmanService`) and shares it between its worker threads. It speaks the
Docker Engine API through the `docker` SDK's low-level client wherever podman's compat
layer does the job, and podman's libpod API (same socket, `/v4.0.0/libpod/...`) where it
does not: rootfs containers (`rootfs="/"`, an overlay of the host's root) and networks
(the compat endpoint in podman 4.3 drops the `isolate` option, so networks would reach
each other).

Engine exceptions become `cellplane.drivers.errors` in one place, `map_engine_error`.
The request bodies and the parsing of engine answers are pure functions so that they
are unit-tested without an engine.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import docker
import docker.errors
import requests
import urllib3.exceptions

from cellplane.drivers import errors
from cellplane.drivers.base import (
    ContainerInfo,
    ContainerSpec,
    ExecResult,
    NetworkSpec,
    PortSpec,
)

__all__ = [
    "DNS_OPTIONS",
    "DOCKER_API_VERSION",
    "LIBPOD_PREFIX",
    "PodmanDriver",
    "Resource",
    "compat_create_body",
    "container_info_from_inspect",
    "container_info_from_list",
    "label_filters",
    "libpod_create_body",
    "libpod_network_body",
    "map_engine_error",
    "parse_load_output",
]

# Pinned so the client never spends a round trip negotiating; podman 4.3 speaks 1.41.
DOCKER_API_VERSION = "1.41"
LIBPOD_PREFIX = "/v4.0.0/libpod"

Resource = Literal["container", "image", "network", "volume", "engine"]

_MIB = 1024 * 1024
_CPU_PERIOD_US = 100_000
_ZERO_TIME = "0001-01-01"
_EXITED_STATES = frozenset({"exited", "stopped", "dead"})
_EXIT_STATUS = re.compile(r"Exited \((-?\d+)\)")
_LOADED = re.compile(r"Loaded image(?:\(s\))?(?: ID)?:\s*(.+)")

# Podman reports these client errors as HTTP 500; retrying them cannot help.
_PERMANENT_MARKERS = (
    "being used",
    "in use",
    "state improper",
    "cannot be removed",
    "invalid",
    "not supported",
)

_NOT_FOUND: dict[Resource, type[errors.PermanentDriverError]] = {
    "container": errors.ContainerNotFound,
    "image": errors.ImageNotFound,
    "network": errors.NetworkNotFound,
}


def _engine_message(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation) if explanation else str(exc)


def map_engine_error(exc: BaseException, resource: Resource = "engine") -> errors.DriverError:
    """Translate an engine/SDK/transport exception into the most specific DriverError.

    `resource` is what the failed call was about; it decides what a bare 404 means.
    Podman answers several client errors with HTTP 500 (a name conflict, a missing
    network), so the engine's message is consulted before the status code.
    """
    if isinstance(exc, errors.DriverError):
        return exc
    message = _engine_message(exc)
    # APIError derives from requests' HTTPError, itself an OSError: test it first.
    if not isinstance(exc, docker.errors.DockerException):
        if isinstance(exc, requests.HTTPError):
            return errors.PermanentDriverError(message)
        if isinstance(exc, requests.RequestException | urllib3.exceptions.HTTPError | OSError):
            return errors.TemporaryDriverError(f"container engine unreachable: {message}")
        return errors.DriverError(message)

    text = message.lower()
    if "already in use" in text and resource == "container":
        return errors.NameConflict(message)
    if "network not found" in text or "no such network" in text:
        return errors.NetworkNotFound(message)
    if isinstance(exc, docker.errors.ImageNotFound) or "no such image" in text:
        return errors.ImageNotFound(message)
    if "image not known" in text:  # podman's wording
        return errors.ImageNotFound(message)
    if "no such container" in text or "no container with name" in text:
        return errors.ContainerNotFound(message)
    if resource == "volume" and ("being used" in text or "in use" in text):
        return errors.VolumeInUse(message)

    status = getattr(exc, "status_code", None)
    if status == 404 and resource in _NOT_FOUND:
        return _NOT_FOUND[resource](message)
    if any(marker in text for marker in _PERMANENT_MARKERS):
        return errors.PermanentDriverError(message)
    if status is None or 400 <= status < 500:
        return errors.PermanentDriverError(message)
    # Remaining 5xx: engine-side trouble (locks, storage, runtime hiccups) worth a retry.
    return errors.TemporaryDriverError(message)


@contextmanager
def _translated(resource: Resource) -> Iterator[None]:
    try:
        yield
    except (
        docker.errors.DockerException,
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        OSError,
    ) as exc:
        raise map_engine_error(exc, resource) from exc


def label_filters(labels: dict[str, str]) -> dict[str, builtins.list[str]]:
    """The engine's list filter matching every one of `labels`."""
    return {"label": [f"{k}={v}" for k, v in sorted(labels.items())]} if labels else {}


def _port_key(port: PortSpec) -> str:
    return f"{port.container_port}/{port.protocol}"


def compat_create_body(spec: ContainerSpec) -> dict[str, Any]:
    """The Docker-API `POST /containers/create` body for an image-based spec."""
    if spec.image is None:
        raise ValueError("compat_create_body needs an image spec; rootfs uses libpod")
    host_config: dict[str, Any] = {}
    if spec.cpu:
        host_config["NanoCpus"] = round(spec.cpu * 1e9)
    if spec.memory_mb:
        host_config["Memory"] = spec.memory_mb * _MIB
    if spec.ports:
        host_config["PortBindings"] = {
            _port_key(p): [
                {"HostIp": "", "HostPort": "" if p.host_port is None else str(p.host_port)}
            ]
            for p in spec.ports
        }
    if spec.mounts:
        host_config["Mounts"] = [
            {"Type": "volume", "Source": m.volume, "Target": m.target, "ReadOnly": m.read_only}
            for m in spec.mounts
        ]
    body: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "Labels": dict(spec.labels),
        "HostConfig": host_config,
    }
    if spec.command is not None:
        body["Cmd"] = list(spec.command)
    if spec.entrypoint is not None:
        body["Entrypoint"] = list(spec.entrypoint)
    if spec.workdir:
        body["WorkingDir"] = spec.workdir
    if spec.user:
        body["User"] = spec.user
    if spec.hostname:
        body["Hostname"] = spec.hostname
    if spec.ports:
        body["ExposedPorts"] = {_port_key(p): {} for p in spec.ports}
    if spec.network is not None:
        host_config["NetworkMode"] = spec.network
        host_config["DnsOptions"] = list(DNS_OPTIONS)
        body["NetworkingConfig"] = {
            "EndpointsConfig": {spec.network: {"Aliases": list(spec.aliases)}}
        }
    return body


#: Resolver options of every cell on a project network. glibc's defaults (5 s a try, 2 tries, for
#: each name server and each search domain) turn one lookup of a name that is just gone, while
#: aardvark-dns reloads its configuration, into a stall of up to a minute; programs that resolve
#: in their main loop (Redis Sentinel) stop for that long. With these a failed lookup costs a few
#: seconds at worst.
DNS_OPTIONS: tuple[str, ...] = ("timeout:1", "attempts:2")


def libpod_create_body(spec: ContainerSpec) -> dict[str, Any]:
    """The libpod `POST /libpod/containers/create` body (a SpecGenerator) for a rootfs spec.

    The rootfs is always mounted through an overlay so that cells never write into a
    directory they share with other cells or with the host.
    """
    if spec.rootfs is None:
        raise ValueError("libpod_create_body needs a rootfs spec")
    body: dict[str, Any] = {
        "name": spec.name,
        "rootfs": spec.rootfs,
        "rootfs_overlay": True,
        "command": list(spec.command or []),
        "env": dict(spec.env),
        "labels": dict(spec.labels),
    }
    if spec.hostname:
        body["hostname"] = spec.hostname
    if spec.workdir:
        body["work_dir"] = spec.workdir
    if spec.user:
        body["user"] = spec.user
    limits: dict[str, Any] = {}
    if spec.cpu:
        limits["cpu"] = {"quota": round(spec.cpu * _CPU_PERIOD_US), "period": _CPU_PERIOD_US}
    if spec.memory_mb:
        limits["memory"] = {"limit": spec.memory_mb * _MIB}
    if limits:
        body["resource_limits"] = limits
    if spec.network is not None:
        body["netns"] = {"nsmode": "bridge"}
        body["dns_option"] = list(DNS_OPTIONS)
        body["Networks"] = {spec.network: {"aliases": list(spec.aliases)}}
    if spec.ports:
        body["portmappings"] = [
            {
                "container_port": p.container_port,
                "host_port": p.host_port or 0,
                "protocol": p.protocol,
            }
            for p in spec.ports
        ]
    if spec.mounts:
        body["volumes"] = [
            {"Name": m.volume, "Dest": m.target, "Options": ["ro"] if m.read_only else []}
            for m in spec.mounts
        ]
    return body


def libpod_network_body(spec: NetworkSpec) -> dict[str, Any]:
    """The libpod network create body: a network with DNS, isolated from other networks."""
    body: dict[str, Any] = {
        "name": spec.name,
        "driver": spec.driver,
        "dns_enabled": True,
        "internal": spec.internal,
        "labels": dict(spec.labels),
        "options": {"isolate": "true"},
    }
    if spec.subnet is not None:
        body["subnets"] = [{"subnet": spec.subnet}]
    return body


def _time_or_none(value: object) -> str | None:
    if not isinstance(value, str) or not value or value.startswith(_ZERO_TIME):
        return None
    return value


def _ports_from_inspect(raw: object) -> builtins.list[PortSpec]:
    ports: builtins.list[PortSpec] = []
    if not isinstance(raw, dict):
        return ports
    for key, bindings in sorted(raw.items()):
        number, _, protocol = str(key).partition("/")
        for binding in bindings or []:
            host = int(binding.get("HostPort") or 0)
            ports.append(PortSpec(int(number), host or None, protocol or "tcp"))
    return ports


def _address(networks: object) -> str | None:
    if isinstance(networks, dict):
        for net in networks.values():
            address = (net or {}).get("IPAddress")
            if address:
                return str(address)
    return None


def container_info_from_inspect(attrs: dict[str, Any]) -> ContainerInfo:
    """A `ContainerInfo` from a Docker-API `GET /containers/{id}/json` answer."""
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    settings = attrs.get("NetworkSettings") or {}
    status = str(state.get("Status") or "unknown")
    exit_code = state.get("ExitCode")
    return ContainerInfo(
        id=str(attrs["Id"]),
        name=str(attrs.get("Name") or "").lstrip("/"),
        labels=dict(config.get("Labels") or {}),
        state=status,
        running=bool(state.get("Running")),
        exit_code=int(exit_code) if status in _EXITED_STATES and exit_code is not None else None,
        started_at=_time_or_none(state.get("StartedAt")),
        finished_at=_time_or_none(state.get("FinishedAt")) if status in _EXITED_STATES else None,
        address=_address(settings.get("Networks")) or settings.get("IPAddress") or None,
        image=config.get("Image") or None,
        ports=_ports_from_inspect(settings.get("Ports")),
    )


def container_info_from_list(item: dict[str, Any]) -> ContainerInfo:
    """A `ContainerInfo` from one entry of `GET /containers/json` (no timestamps there)."""
    status = str(item.get("State") or "unknown")
    exit_code: int | None = None
    if status in _EXITED_STATES:
        match = _EXIT_STATUS.search(str(item.get("Status") or ""))
        exit_code = int(match.group(1)) if match else None
    ports = [
        PortSpec(
            int(p["PrivatePort"]), int(p.get("PublicPort") or 0) or None, p.get("Type") or "tcp"
        )
        for p in item.get("Ports") or []
    ]
    names = item.get("Names") or [""]
    return ContainerInfo(
        id=str(item["Id"]),
        name=str(names[0]).lstrip("/"),
        labels=dict(item.get("Labels") or {}),
        state=status,
        running=status == "running",
        exit_code=exit_code,
        address=_address((item.get("NetworkSettings") or {}).get("Networks")),
        image=item.get("Image") or None,
        ports=ports,
    )


def parse_load_output(chunks: Iterable[dict[str, Any]]) -> builtins.list[str]:
    """Image names/ids from the JSON stream of `POST /images/load`; raise on an error chunk."""
    loaded: builtins.list[str] = []
    for chunk in chunks:
        if chunk.get("error") or chunk.get("errorDetail"):
            detail = chunk.get("error") or chunk.get("errorDetail")
            raise errors.PermanentDriverError(f"image load failed: {detail}")
        match = _LOADED.search(str(chunk.get("stream") or ""))
        if match:
            loaded.extend(n.strip() for n in match.group(1).split(",") if n.strip())
    return loaded


class PodmanDriver:
    """`Driver` over one podman (or Docker) API socket; thread-safe, one pooled session.

    `pool_size` bounds the keep-alive connections per socket; it must be at least the
    number of threads calling at once, or callers queue for a connection.
    """

    def __init__(self, base_url: str, *, timeout: float = 60.0, pool_size: int = 32) -> None:
        self.base_url = base_url
        with _translated("engine"):
            self._api = docker.APIClient(
                base_url=base_url,
                version=DOCKER_API_VERSION,
                timeout=int(timeout),
                max_pool_size=pool_size,
            )
        # The same client, for the few SDK methods whose stubs are untyped.
        self._untyped: Any = self._api

    def close(self) -> None:
        """Drop pooled connections."""
        self._api.close()

    def _post_json(
        self, url: str, body: dict[str, Any], params: dict[str, str] | None = None
    ) -> Any:
        response = self._api.post(url, json=body, params=params, timeout=self._api.timeout)
        try:
            response.raise_for_status()
        except requests.HTTPError as exc:
            raise docker.errors.create_api_error_from_http_exception(exc) from exc
        return response.json()

    def _libpod_post(self, path: str, body: dict[str, Any]) -> Any:
        return self._post_json(f"{self._api.base_url}{LIBPOD_PREFIX}{path}", body)

    # -- engine -----------------------------------------------------------------------

    def ping(self) -> None:
        with _translated("engine"):
            self._api.ping()

    # -- networks ---------------------------------------------------------------------

    def ensure_network(self, spec: NetworkSpec) -> None:
        try:
            with _translated("network"):
                self._libpod_post("/networks/create", libpod_network_body(spec))
        except errors.PermanentDriverError as exc:
            if "already" not in str(exc).lower():
                raise

    def remove_network(self, name: str) -> None:
        try:
            with _translated("network"):
                self._api.remove_network(name)
        except errors.NetworkNotFound:
            return

    def list_networks(self, labels: dict[str, str]) -> builtins.list[str]:
        with _translated("network"):
            found = self._api.networks(filters=label_filters(labels))
        return sorted(str(n["Name"]) for n in found)

    # -- volumes ----------------------------------------------------------------------

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        # The create endpoint returns the existing volume for a known name (both engines).
        with _translated("volume"):
            self._api.create_volume(name, labels=dict(labels))

    def remove_volume(self, name: str) -> None:
        try:
            with _translated("volume"):
                self._api.remove_volume(name)
        except errors.VolumeInUse:
            raise
        except errors.PermanentDriverError as exc:
            if "no such volume" not in str(exc).lower() and "not found" not in str(exc).lower():
                raise

    def list_volumes(self, labels: dict[str, str]) -> builtins.list[str]:
        with _translated("volume"):
            found = self._api.volumes(filters=label_filters(labels)) or {}
        return sorted(str(v["Name"]) for v in found.get("Volumes") or [])

    # -- images -----------------------------------------------------------------------

    def has_image(self, ref: str) -> bool:
        try:
            with _translated("image"):
                self._untyped.inspect_image(ref)
        except errors.ImageNotFound:
            return False
        return True

    def load_image(self, path: Path) -> builtins.list[str]:
        with _translated("image"), path.open("rb") as archive:
            return parse_load_output(self._untyped.load_image(archive))

    def remove_image(self, ref: str) -> None:
        with _translated("image"):
            self._api.remove_image(ref)

    # -- containers -------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> str:
        with _translated("container"):
            if spec.rootfs is not None:
                answer = self._libpod_post("/containers/create", libpod_create_body(spec))
            else:
                # Posted by hand: the SDK's high-level create inspects after creating.
                answer = self._post_json(
                    f"{self._api.base_url}/v{DOCKER_API_VERSION}/containers/create",
                    compat_create_body(spec),
                    params={"name": spec.name},
                )
        return str(answer.get("Id") or answer["id"])

    def start(self, container_id: str) -> None:
        with _translated("container"):
            self._api.start(container_id)

    def stop(self, container_id: str, timeout: float = 10.0) -> None:
        with _translated("container"):
            self._api.stop(container_id, timeout=max(0, round(timeout)))

    def kill(self, container_id: str) -> None:
        try:
            with _translated("container"):
                self._api.kill(container_id)
        except errors.ContainerNotFound:
            raise
        except errors.DriverError as exc:
            text = str(exc).lower()
            if "state improper" not in text and "not running" not in text:
                raise

    def remove(self, container_id: str, force: bool = True) -> None:
        if force:
            # A forced remove stops with the container's stop timeout (10 s by default) and
            # a shell or sleep as PID 1 ignores SIGTERM: SIGKILL first keeps it ~0.1 s.
            self.kill(container_id)
        with _translated("container"):
            self._api.remove_container(container_id, force=force)

    def inspect(self, id_or_name: str) -> ContainerInfo:
        with _translated("container"):
            attrs = self._api.inspect_container(id_or_name)
        return container_info_from_inspect(attrs)

    def list(self, labels: dict[str, str]) -> builtins.list[ContainerInfo]:
        with _translated("container"):
            items = self._api.containers(all=True, filters=label_filters(labels))
        return [container_info_from_list(item) for item in items]

    def logs(
        self, container_id: str, tail: int | None = None, follow: bool = False
    ) -> Iterator[bytes]:
        # The request is made now so a missing container raises here, not at first next().
        # The SDK lifts the read timeout on the stream's socket: a quiet followed log
        # does not time out after `timeout` seconds.
        with _translated("container"):
            stream = self._api.logs(
                container_id,
                stdout=True,
                stderr=True,
                stream=True,
                follow=follow,
                tail="all" if tail is None else tail,
            )
        return _guarded(stream)

    def docker_logs(
        self,
        container_id: str,
        *,
        tail: int | None = None,
        follow: bool = False,
        timestamps: bool = False,
        since: int = 0,
        stdout: bool = True,
        stderr: bool = True,
    ) -> Iterator[bytes]:
        # The engine's own framed stream, relayed as is: the SDK's `logs` strips the frame headers
        # (and with them which stream a line came from), so the request is made by hand.
        params: dict[str, Any] = {
            "stdout": int(stdout),
            "stderr": int(stderr),
            "follow": int(follow),
            "timestamps": int(timestamps),
            "tail": "all" if tail is None else tail,
        }
        if since:
            params["since"] = since
        api = self._untyped
        with _translated("container"):
            res = api._get(
                api._url("/containers/{0}/logs", container_id), params=params, stream=True
            )
            api._raise_for_status(res)
            if follow:  # a quiet followed log must not time out
                api._disable_socket_timeout(api._get_raw_response_socket(res))
        return _guarded(_raw_chunks(res))

    def exec(self, container_id: str, command: builtins.list[str]) -> ExecResult:
        with _translated("container"):
            created = self._api.exec_create(container_id, command, stdout=True, stderr=True)
            exec_id = str(created["Id"])
            output = self._api.exec_start(exec_id)
            exit_code = self._api.exec_inspect(exec_id)["ExitCode"]
        return ExecResult(exit_code=int(exit_code or 0), output=bytes(output or b""))


def _raw_chunks(res: requests.Response) -> Iterator[bytes]:
    try:
        yield from res.raw.stream(65536, decode_content=False)
    finally:
        res.close()


def _guarded(stream: Iterator[bytes]) -> Iterator[bytes]:
    with _translated("container"):
        yield from stream
