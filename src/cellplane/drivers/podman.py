"""`PodmanDriver`: the `Driver` Protocol over a podman service socket.

The host agent builds one `PodmanDriver` on the socket of its own engine
(`engine.PodmanService`) and shares it between its worker threads. It speaks the
Docker Engine API through the `docker` SDK's low-level client wherever podman's compat
layer does the job, and podman's libpod API (same socket, `/v4.0.0/libpod/...`) where it
does not: rootfs containers (`rootfs="/"`, an overlay of the host's root), networks
(the compat endpoint in podman 4.3 drops the `isolate` option, so networks would reach
each other) and the limits set on a running container (`apply_limits`; the compat update
endpoint is missing in podman 4.3).

Engine exceptions become `cellplane.drivers.errors` in one place, `map_engine_error`.
The request bodies and the parsing of engine answers are pure functions, in
`podman_bodies`, so that they are unit-tested without an engine.
"""

from __future__ import annotations

import builtins
import dataclasses
import ipaddress
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from cellplane.drivers import errors, podman_registry, sandbox_limits
from cellplane.drivers.base import (
    ContainerInfo,
    ContainerSpec,
    ExecResult,
    NetworkSpec,
)
from cellplane.drivers.podman_bodies import (
    DNS_OPTIONS,
    LIBPOD_PREFIX,
    compat_create_body,
    conflicting_networks,
    container_info_from_inspect,
    container_info_from_list,
    label_filters,
    libpod_create_body,
    libpod_network_body,
    libpod_update_body,
    logs_params,
    network_fits,
    parse_load_output,
    quota_at_create,
    sized_candidates,
)
from cellplane.drivers.podman_errors import (
    Resource,
    guarded,
    map_engine_error,
    raw_chunks,
    translated,
)
from cellplane.drivers.podman_exec import (
    PodmanAttachSession,
    PodmanExecSession,
    exec_failure,
    size_tty,
    start_attach,
    start_exec,
)
from cellplane.drivers.podman_guard import NetworkGuard, isolated_bridges
from cellplane.drivers.podman_netops import PodmanNetworkOps
from cellplane.drivers.podman_ops import PodmanOps

__all__ = [
    "DNS_OPTIONS",
    "DOCKER_API_VERSION",
    "ENGINE_SUBNET_POOLS",
    "LIBPOD_PREFIX",
    "PodmanDriver",
    "Resource",
    "compat_create_body",
    "container_info_from_inspect",
    "container_info_from_list",
    "label_filters",
    "libpod_create_body",
    "libpod_network_body",
    "libpod_update_body",
    "map_engine_error",
    "network_fits",
    "parse_load_output",
    "sized_candidates",
]


# Pinned so the client never spends a round trip negotiating; podman 4.3 speaks 1.41.
DOCKER_API_VERSION = "1.41"


_SUBNET_TRIES = 64  # subnets the engine may refuse (used on the host) before giving up

#: Where networks larger than the engine's /24s are carved from: podman's own default pools,
#: without 10.128.0.0/9, which the control plane allocates from (`state.networks`).
ENGINE_SUBNET_POOLS: tuple[str, ...] = (
    "10.89.0.0/16",
    "10.90.0.0/15",
    "10.92.0.0/14",
    "10.96.0.0/11",
)


class PodmanDriver(PodmanOps, PodmanNetworkOps):
    """`Driver` over one podman (or Docker) API socket; thread-safe, one pooled session.

    `pool_size` bounds the keep-alive connections per socket; it must be at least the
    number of threads calling at once, or callers queue for a connection. `subnet_pools` are
    where networks of a given size (`NetworkSpec.prefix_length`) are carved from; the engine
    picks /24s itself from its own pools.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        pool_size: int = 32,
        subnet_pools: Sequence[str] = ENGINE_SUBNET_POOLS,
        sandbox_engine: Callable[[], str] | None = None,
    ) -> None:
        self.base_url = base_url
        self._timeout = timeout
        # Gives the URL of an engine on the same storage whose default runtime is the sandbox
        # (starting it if need be): podman 4.3 creates a container with its service's runtime.
        self._sandbox_engine = sandbox_engine
        self._sandbox_apis: dict[str, docker.APIClient] = {}
        self._sandboxed: dict[str, str] = {}  # containers created with runsc: id <-> name
        # Containers created with their CPU quota, not yet started: id -> (cpu, memory_mb).
        self._limited_at_create: dict[str, tuple[float, int]] = {}
        self.subnet_pools = tuple(str(ipaddress.ip_network(p)) for p in subnet_pools)
        self._guard = NetworkGuard(base_url)
        with translated("engine"):
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
        for api in self._sandbox_apis.values():
            api.close()

    def _post_json(
        self,
        url: str,
        body: dict[str, Any],
        params: dict[str, str] | None = None,
        api: docker.APIClient | None = None,
    ) -> Any:
        api = api or self._api
        response = api.post(url, json=body, params=params, timeout=api.timeout)
        try:
            response.raise_for_status()
        except requests.HTTPError as exc:
            raise docker.errors.create_api_error_from_http_exception(exc) from exc
        try:
            return response.json()
        except ValueError:  # some libpod answers are a bare id, not JSON (the update endpoint's)
            return response.text

    def _libpod_post(self, path: str, body: dict[str, Any]) -> Any:
        return self._post_json(f"{self._api.base_url}{LIBPOD_PREFIX}{path}", body)

    def _libpod_get(self, path: str) -> Any:
        response = self._api.get(f"{self._api.base_url}{LIBPOD_PREFIX}{path}")
        try:
            response.raise_for_status()
        except requests.HTTPError as exc:
            raise docker.errors.create_api_error_from_http_exception(exc) from exc
        return response.json()

    # -- engine -----------------------------------------------------------------------

    def ping(self) -> None:
        with translated("engine"):
            self._api.ping()

    # -- networks ---------------------------------------------------------------------

    def ensure_network(self, spec: NetworkSpec) -> None:
        self._ensure_network(spec)
        self._guard_networks()

    def _guard_networks(self) -> None:
        """Isolation rules that netavark's teardown cannot take away (`podman_guard`)."""
        with translated("network"):
            networks = self._libpod_get("/networks/json") or []
        self._guard.sync(isolated_bridges(networks))

    def _ensure_network(self, spec: NetworkSpec) -> None:
        have = self._network_subnets(spec.name)
        if have is not None:
            if network_fits(have, spec) and self._on_interface(spec):
                return
            try:
                self.remove_network(spec.name)
            except errors.PermanentDriverError:
                return  # containers use it (and their addresses): adopted as it is
        if spec.subnet is None and spec.prefix_length is not None:
            self._create_sized_network(spec)
            return
        try:
            with translated("network"):
                self._libpod_post("/networks/create", libpod_network_body(spec))
        except errors.PermanentDriverError as exc:
            if "already" not in str(exc).lower():
                raise
            if self._network_subnets(spec.name) is None:  # its bridge or subnet is taken
                self._replace_stale(spec, exc)

    def _replace_stale(self, spec: NetworkSpec, refused: errors.PermanentDriverError) -> None:
        """Create `spec` after removing the engine's networks that hold its bridge or subnet.

        They are networks the control plane deleted (or moved) whose engine side stayed: their
        bridge or subnet is now `spec`'s. One a container still uses is not removed: the
        engine's refusal is raised, naming it.
        """
        with translated("network"):
            existing = self._libpod_get("/networks/json") or []
        stale = conflicting_networks(existing, spec)
        if not stale:
            raise refused
        for name in stale:
            try:
                self.remove_network(name)
            except errors.PermanentDriverError as exc:
                raise errors.PermanentDriverError(
                    f"network {spec.name}: the engine's network {name} holds its bridge or "
                    f"subnet and is in use ({exc})"
                ) from refused
        with translated("network"):
            self._libpod_post("/networks/create", libpod_network_body(spec))

    def _network_subnets(self, name: str) -> builtins.list[str] | None:
        """The subnets of the engine's network `name`, None if it has none of that name."""
        try:
            with translated("network"):
                answer = self._libpod_get(f"/networks/{name}/json")
        except errors.NetworkNotFound:
            return None
        return [str(s["subnet"]) for s in answer.get("subnets") or []]

    def _on_interface(self, spec: NetworkSpec) -> bool:
        """Whether the engine's network is on the bridge `spec` names (True if it names none)."""
        if spec.interface is None:
            return True
        with translated("network"):
            answer = self._libpod_get(f"/networks/{spec.name}/json")
        return bool(answer.get("network_interface") == spec.interface)

    def _create_sized_network(self, spec: NetworkSpec) -> None:
        """Create `spec` on the first free subnet of its size from `subnet_pools`.

        Free: no network of this engine overlaps it; the engine itself refuses one that an
        interface of the host uses (another engine's bridge), and the next one is tried.
        """
        assert spec.prefix_length is not None
        with translated("network"):
            used = [
                ipaddress.ip_network(str(sub["subnet"]))
                for net in self._libpod_get("/networks/json") or []
                for sub in net.get("subnets") or []
            ]
        refused = 0
        for candidate in sized_candidates(self.subnet_pools, spec.prefix_length, used):
            body = libpod_network_body(
                dataclasses.replace(spec, subnet=str(candidate), prefix_length=None)
            )
            try:
                with translated("network"):
                    self._libpod_post("/networks/create", body)
                return
            except errors.DriverError as exc:
                text = str(exc).lower()
                if "already exists" in text or "name already used" in text:
                    return  # made meanwhile by someone else: adopted
                if "already used" not in text or refused >= _SUBNET_TRIES:
                    raise
                refused += 1
        raise errors.PermanentDriverError(
            f"no free /{spec.prefix_length} subnet for network {spec.name} in the engine's "
            f"pools {', '.join(self.subnet_pools)}"
        )

    def remove_network(self, name: str) -> None:
        try:
            with translated("network"):
                self._api.remove_network(name)
        except errors.NetworkNotFound:
            return
        self._guard_networks()

    def list_networks(self, labels: dict[str, str]) -> builtins.list[str]:
        with translated("network"):
            found = self._api.networks(filters=label_filters(labels))
        return sorted(str(n["Name"]) for n in found)

    # -- volumes ----------------------------------------------------------------------

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        # The create endpoint returns the existing volume for a known name (both engines).
        with translated("volume"):
            self._api.create_volume(name, labels=dict(labels))

    def remove_volume(self, name: str) -> None:
        try:
            with translated("volume"):
                self._api.remove_volume(name)
        except errors.VolumeInUse:
            raise
        except errors.PermanentDriverError as exc:
            if "no such volume" not in str(exc).lower() and "not found" not in str(exc).lower():
                raise

    def list_volumes(self, labels: dict[str, str]) -> builtins.list[str]:
        with translated("volume"):
            found = self._api.volumes(filters=label_filters(labels)) or {}
        return sorted(str(v["Name"]) for v in found.get("Volumes") or [])

    def volume_path(self, name: str) -> Path:
        with translated("volume"):
            found = self._api.inspect_volume(name)
        return Path(str(found["Mountpoint"]))

    # -- images -----------------------------------------------------------------------

    def has_image(self, ref: str) -> bool:
        try:
            with translated("image"):
                self._untyped.inspect_image(ref)
        except errors.ImageNotFound:
            return False
        return True

    def load_image(self, path: Path) -> builtins.list[str]:
        with translated("image"), path.open("rb") as archive:
            return parse_load_output(self._untyped.load_image(archive))

    def remove_image(self, ref: str) -> None:
        with translated("image"):
            self._api.remove_image(ref)

    def tag_image(self, ref: str, name: str) -> None:
        """Give the image `ref` the name `name` (`repo[:tag]`) in local storage."""
        last = name.rsplit("/", 1)[-1]
        repo, tag = name.rsplit(":", 1) if ":" in last else (name, "latest")
        with translated("image"):
            self._untyped.tag(ref, repo, tag)

    def build_image(self, context: Path, options: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Build from a context tar (the engine's Docker-compatible build): its JSON progress
        lines, as they come. `options`: tag, dockerfile, buildargs, labels, target, nocache, quiet."""
        with translated("image"), context.open("rb") as f:
            yield from self._untyped.build(
                fileobj=f,
                custom_context=True,
                tag=options.get("tag"),
                dockerfile=options.get("dockerfile") or None,
                buildargs=options.get("buildargs") or None,
                labels=options.get("labels") or None,
                target=options.get("target") or None,
                nocache=bool(options.get("nocache")),
                quiet=bool(options.get("quiet")),
                rm=True,
                forcerm=True,
                decode=True,
                timeout=3600,
            )

    def save_image(self, ref: str, dest: Path) -> None:
        """Write the image `ref` to `dest` as a docker-archive."""
        with translated("image"), dest.open("wb") as f:
            for chunk in self._untyped.get_image(ref):
                f.write(chunk)

    def pull_image(self, reference: str, *, tls_verify: bool = True,
                   auth: str | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
        """Pull from a registry (libpod's pull); its JSON progress lines, as they come."""
        with translated("image"):
            yield from podman_registry.pull(self._api, reference, tls_verify=tls_verify, auth=auth)

    def push_image(self, ref: str, destination: str, *, tls_verify: bool = True,
                   auth: str | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
        """Push the image `ref` to `destination`; its JSON progress lines, as they come."""
        with translated("image"):
            yield from podman_registry.push(
                self._api, ref, destination, tls_verify=tls_verify, auth=auth
            )

    # -- containers -------------------------------------------------------------------

    def _creator(self, spec: ContainerSpec) -> docker.APIClient:
        """The engine that creates `spec`: this one, or the sandbox creator for runsc."""
        if spec.runtime is None:
            return self._api
        if self._sandbox_engine is None:
            raise errors.PermanentDriverError(
                f"this engine offers no {spec.runtime} runtime (the sandbox isolation class)"
            )
        url = self._sandbox_engine()
        api = self._sandbox_apis.get(url)
        if api is None:
            api = docker.APIClient(
                base_url=url, version=DOCKER_API_VERSION, timeout=int(self._timeout)
            )
            self._sandbox_apis[url] = api
        return api

    def create(self, spec: ContainerSpec) -> str:
        with translated("container"):
            api = self._creator(spec)
            if spec.rootfs is not None:
                answer = self._post_json(
                    f"{api.base_url}{LIBPOD_PREFIX}/containers/create",
                    libpod_create_body(spec),
                    api=api,
                )
            else:
                # Posted by hand: the SDK's high-level create inspects after creating.
                answer = self._post_json(
                    f"{api.base_url}/v{DOCKER_API_VERSION}/containers/create",
                    compat_create_body(spec),
                    params={"name": spec.name},
                    api=api,
                )
        cid = str(answer.get("Id") or answer["id"])
        if spec.tty_size is not None:
            size_tty(api, cid, spec.tty_size)
        if spec.runtime is not None:
            self._sandboxed.update({cid: spec.name, spec.name: cid})
        if quota_at_create(spec) is not None:
            self._limited_at_create[cid] = (float(spec.cpu), int(spec.memory_mb))
        return cid

    def start(self, container_id: str) -> None:
        with translated("container"):
            self._api.start(container_id)

    def prepare_start(self, container_id: str) -> None:
        # libpod's init (~70 ms: the OCI runtime's create, the network's set-up, conmon); the
        # start after it is ~8 ms instead of ~80. 304: prepared (or started) already.
        with translated("container"):
            self._libpod_post(f"/containers/{container_id}/init", {})

    def apply_limits(self, container_id: str, cpu: float, memory_mb: int) -> None:
        # libpod's update (podman >= 4.3, ~7 ms; the compat one is a 404), of the running cgroup.
        try:
            body = libpod_update_body(cpu, memory_mb)
        except ValueError as exc:
            raise errors.PermanentDriverError(str(exc)) from exc
        if self._limited_at_create.pop(container_id, None) == (cpu, memory_mb):
            return  # its first start, with the limits it was created with (`quota_at_create`)
        if container_id not in self._sandboxed:
            try:
                with translated("container"):
                    self._libpod_post(f"/containers/{container_id}/update", body)
                return
            except errors.DriverError:  # runsc has no `update`: its cgroup is written instead
                if self._libpod_inspect(container_id).get("OCIRuntime") != sandbox_limits.RUNTIME:
                    raise
        pid = int((self._libpod_inspect(container_id).get("State") or {}).get("Pid") or 0)
        try:
            sandbox_limits.apply(pid, cpu, memory_mb)
        except (OSError, ValueError) as exc:
            raise errors.DriverError(f"limits of sandbox {container_id}: {exc}") from exc

    def _libpod_inspect(self, container_id: str) -> dict[str, Any]:
        with translated("container"):
            return dict(self._libpod_get(f"/containers/{container_id}/json"))

    def stop(self, container_id: str, timeout: float = 10.0) -> None:
        self._thawed(container_id, lambda: self._api.stop(container_id, max(0, round(timeout))))

    def kill(self, container_id: str) -> None:
        try:
            self._thawed(container_id, lambda: self._api.kill(container_id))
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
        with translated("container"):
            self._api.remove_container(container_id, force=force)
        self._sandboxed.pop(self._sandboxed.pop(container_id, ""), None)
        self._limited_at_create.pop(container_id, None)

    def inspect(self, id_or_name: str) -> ContainerInfo:
        with translated("container"):
            attrs = self._api.inspect_container(id_or_name)
        return container_info_from_inspect(attrs)

    def list(self, labels: dict[str, str]) -> builtins.list[ContainerInfo]:
        with translated("container"):
            items = self._api.containers(all=True, filters=label_filters(labels))
        return [container_info_from_list(item) for item in items]

    def logs(
        self, container_id: str, tail: int | None = None, follow: bool = False
    ) -> Iterator[bytes]:
        # The request is made now so a missing container raises here, not at first next().
        # The SDK lifts the read timeout on the stream's socket: a quiet followed log
        # does not time out after `timeout` seconds.
        with translated("container"):
            stream = self._api.logs(
                container_id,
                stdout=True,
                stderr=True,
                stream=True,
                follow=follow,
                tail="all" if tail is None else tail,
            )
        return guarded(stream)

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
        params = logs_params(tail, follow, timestamps, since, stdout, stderr)
        api = self._untyped
        with translated("container"):
            res = api._get(
                api._url("/containers/{0}/logs", container_id), params=params, stream=True
            )
            api._raise_for_status(res)
            if follow:  # a quiet followed log must not time out
                api._disable_socket_timeout(api._get_raw_response_socket(res))
        return guarded(raw_chunks(res))

    def exec(self, container_id: str, command: builtins.list[str]) -> ExecResult:
        with translated("container"):
            created = self._api.exec_create(container_id, command, stdout=True, stderr=True)
            exec_id = str(created["Id"])
            output = self._api.exec_start(exec_id)
            exit_code = int(self._api.exec_inspect(exec_id)["ExitCode"] or 0)
        data = bytes(output or b"")
        # A command that could not be started: the reason, not the runtime's lines.
        if exit_code in (126, 127) and (failure := exec_failure(data)) is not None:
            data = failure.encode() + b"\n"
        return ExecResult(exit_code=exit_code, output=data)

    def exec_open(
        self,
        container_id: str,
        command: builtins.list[str],
        *,
        stdin: bool = False,
        tty: bool = False,
        size: tuple[int, int] | None = None,
        user: str | None = None,
        env: builtins.list[str] | None = None,
        workdir: str | None = None,
    ) -> PodmanExecSession:
        with translated("container"):
            return start_exec(
                self._untyped,
                container_id,
                command,
                stdin=stdin,
                tty=tty,
                size=size,
                user=user,
                env=env,
                workdir=workdir,
            )

    def attach_open(
        self, container_id: str, *, stdin: bool = False, logs: bool = False
    ) -> PodmanAttachSession:
        with translated("container"):
            return start_attach(self._untyped, container_id, stdin=stdin, logs=logs)
