"""The long-running processes, `server` and `agent`, without the CLI's weight.

`cellplane up` and the test harness start `python -m cellplane.daemon server|agent`: plain argparse,
no Typer/Rich, so each process carries only what it runs (the memory target counts them). The
`cellplane server` and `cellplane agent` commands call the same functions.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import socket
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cellplane.state.db import DatabaseNewerThanServer

__all__ = [
    "DatabaseNewerThanServer",
    "ca_bundle",
    "main",
    "prepare",
    "run_agent",
    "run_server",
    "url_host",
]


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def prepare(data_dir: Path, database_url: str | None) -> tuple[str | None, Path]:
    """Migrate and seed; returns (new admin token or None, join token file). Raises
    DatabaseNewerThanServer (nothing changed) on a database made by a newer release."""
    from cellplane.services.bootstrap import seed
    from cellplane.services.context import Services
    from cellplane.settings import ServerSettings
    from cellplane.state.db import Database, migrate

    settings = ServerSettings(data_dir=data_dir, database_url=database_url)
    settings.server_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = settings.resolved_database_url()
    migrate(url, key_dir=settings.server_dir)
    db = Database(url)
    try:
        seeded = seed(Services(db=db, data_dir=settings.server_dir))
    finally:
        db.dispose()
    join_file = settings.server_dir / "join-token"
    if seeded.join_token:
        _write_secret(join_file, seeded.join_token)
    if seeded.admin_password:
        # The `admin` user's first password, for `cellplane login` (change it after).
        _write_secret(settings.server_dir / "admin-password", seeded.admin_password)
    return seeded.admin_token, join_file


def ca_bundle(data_dir: Path) -> Path:
    """Create (once) the deployment CA of ``data_dir``; the path of its root certificate (PEM).

    Clients and agents verify an HTTPS server with this file; `cellplane up` copies it into the
    CLI configuration directory.
    """
    from cellplane.identity import pki
    from cellplane.settings import ServerSettings

    return pki.ensure_root(ServerSettings(data_dir=data_dir).server_dir)


def url_host(host: str) -> str:
    """``host`` as it goes into a URL: this machine's name for 0.0.0.0/::, IPv6 in brackets."""
    if host in ("", "0.0.0.0", "::"):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


_PREPARE = """
import sys
from pathlib import Path
from cellplane.daemon import prepare
from cellplane.state.db import DatabaseNewerThanServer
try:
    token, _ = prepare(Path(sys.argv[1]), sys.argv[2] or None)
except DatabaseNewerThanServer as exc:
    print(f"cellplane: {exc}", file=sys.stderr)
    sys.exit(exc.EXIT_CODE)
print(token or "")
"""


def _proxy_options(trusted: str) -> dict[str, Any]:
    """uvicorn's forwarded-header settings: off unless proxies are named (uvicorn's own default
    trusts 127.0.0.1, so any local process could claim to be any client)."""
    proxies = [p.strip() for p in trusted.split(",") if p.strip()]
    if not proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": proxies}


def run_server(
    data_dir: Path,
    database_url: str | None,
    host: str,
    port: int,
    log_level: str,
    tls: bool = False,
    trusted_proxies: str | None = None,
    also_listen: list[str] | None = None,
) -> int:
    """Serve the API; with ``tls`` over HTTPS with a certificate from the deployment CA, and
    accepting (not requiring) client certificates it issued (mTLS, see api/tls.py).

    ``trusted_proxies`` (default: ``CELLPLANE_TRUSTED_PROXIES``), comma-separated addresses or
    networks: only requests from these may say who the client is with ``X-Forwarded-For`` /
    ``X-Forwarded-Proto``. None by default: the audit log's source and the token endpoints' rate
    limits key on the peer address, which a header must not be able to change.

    ``also_listen``: more addresses to serve on, same port (e.g. the dev hosts' underlay
    address, `cellplane up --hosts`); the server certificate names them too."""
    import ssl

    import uvicorn

    from cellplane import allocator, gctune, logs, portal
    from cellplane.api.app import create_app
    from cellplane.api.tls import TLSH11Protocol
    from cellplane.controller import runtime
    from cellplane.dockerapi import supervisor as dockerapi_supervisor
    from cellplane.host_paths import parse_allowed
    from cellplane.ids import utcnow
    from cellplane.registries import parse_registries
    from cellplane.services.context import Services
    from cellplane.settings import ServerSettings
    from cellplane.state.db import Database, DatabaseNewerThanServer

    allocator.limit_arenas()
    try:
        gctune.apply()  # before the app: the thresholds hold for the process's whole life
    except ValueError as e:
        raise SystemExit(f"cellplane server: {e}") from None
    logs.configure(log_level)
    memtrace = _memtrace("server")
    trimmer = allocator.Trimmer.from_env()
    # Migrate and seed in a child interpreter: Alembic (~10 MB) then never lives in the server.
    prep = subprocess.run(
        [sys.executable, "-c", _PREPARE, str(data_dir), database_url or ""],
        capture_output=True,
        text=True,
        check=False,
    )
    if prep.returncode == DatabaseNewerThanServer.EXIT_CODE:
        print(prep.stderr.strip()[-3000:], file=sys.stderr)  # what to do, without a traceback
        return DatabaseNewerThanServer.EXIT_CODE
    if prep.returncode != 0:
        print(f"preparing {data_dir} failed:\n{prep.stderr[-3000:]}", file=sys.stderr)
        return 1
    if prep.stdout.strip():
        print(f"Bootstrap admin token (shown once): {prep.stdout.strip()}", file=sys.stderr)
    settings = ServerSettings(data_dir=data_dir, database_url=database_url)
    db = Database(settings.resolved_database_url())
    svc = Services(
        db=db,
        data_dir=settings.server_dir,
        max_body_bytes=settings.max_body_bytes,
        max_image_bytes=settings.max_image_bytes,
        max_header_bytes=settings.max_header_bytes,
        heartbeat_suspect_s=settings.heartbeat_suspect_s,
        heartbeat_down_s=settings.heartbeat_down_s,
        watching_since=utcnow(),
        registries=parse_registries(settings.registries),
        allowed_host_paths=parse_allowed(settings.allowed_host_paths),
    )
    ssl_options: dict[str, Any] = {}
    if tls:
        from cellplane.identity import pki

        names = pki.default_server_names(host) + list(also_listen or [])
        cert_file, key_file = pki.server_certificate(svc, names)
        ssl_options = {
            "ssl_certfile": str(cert_file),
            "ssl_keyfile": str(key_file),
            "ssl_ca_certs": str(pki.root_pem_path(svc.data_dir)),
            # Optional: bearer-token clients send no certificate; a presented one must verify.
            "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        }
    svc.api_docs = settings.api_docs
    svc.public_url = f"{'https' if tls else 'http'}://{url_host(host)}:{port}"
    svc.docker_listen_host = host
    # Its name among replicas on one PostgreSQL (GET /v1/system/leader, controller.leader).
    svc.replica = os.environ.get("CELLPLANE_REPLICA_NAME") or f"{url_host(host)}:{port}"
    app = create_app(svc)
    # The placement loop and the cluster executor, run by the app's lifespan (uvicorn's).
    runtime.install(app.state.background, svc)
    # The projects' Docker-compatible endpoints, each on its own TLS port (cellplane.dockerapi).
    dockerapi_supervisor.install(app.state.background, svc, app.state.authenticator)
    # The web portal at /portal (cellplane.portal): pages over the same services.
    portal.install(app)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=TLSH11Protocol,
        log_config=None,
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        # Longer than clients keep idle connections (httpx: 5 s), so the client always closes
        # first: with equal timeouts a request sent on a connection the server is closing at
        # that instant fails with "connection reset" (seen in CI on a DELETE).
        timeout_keep_alive=75,
        server_header=False,
        **_proxy_options(
            trusted_proxies
            if trusted_proxies is not None
            else os.environ.get("CELLPLANE_TRUSTED_PROXIES", "")
        ),
        **ssl_options,
    )
    sockets = None
    if also_listen:
        sockets = [_listening_socket(h, port) for h in [host, *also_listen]]
    relay = None
    if not db.is_sqlite:  # replicas wake each other (agents' long polls, the leader)
        from cellplane.services.relay import Relay

        relay = Relay(svc)
        relay.start()
    # A benchmark's switch: sample every thread's stack into this file (cellplane.sampling).
    profile = os.environ.get("CELLPLANE_PROFILE")
    sampler = None
    if profile:
        from cellplane.sampling import Sampler

        sampler = Sampler(Path(profile)).start()
    try:
        uvicorn.Server(config).run(sockets=sockets)
    finally:
        if memtrace is not None:
            memtrace.stop()
        if trimmer is not None:
            trimmer.stop()
        if sampler is not None:
            sampler.stop()
        if relay is not None:
            relay.stop()
    db.dispose()
    return 0


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run_agent(
    *,
    server_url: str,
    join_token: str,
    data_dir: Path,
    name: str | None,
    address: str,
    labels: dict[str, str],
    zone: str | None,
    cpu_ratio: float,
    parallelism: int,
    log_level: str,
    fixed_parallelism: bool = False,
    ca_file: Path | None = None,
    overlay: bool = False,
    private_networks: bool | None = None,
    subnet_pool: str | None = None,
    engine_run_dir: Path | None = None,
    heartbeat_s: float = 2.0,
    network_gc_s: float = 60.0,
    sandbox: bool = True,
    runsc_platform: str = "ptrace",
    driver_name: str = "podman",
) -> int:
    """Run the agent. ``ca_file``: the deployment's root certificate, to verify an HTTPS
    server; with an HTTPS server the agent also asks for a host certificate at registration
    (kept in ``<data_dir>/agent/tls/``). ``subnet_pool``: the CIDR its engine carves network
    subnets from (several hosts on one machine, e.g. `cellplane dev hosts`, get disjoint ones).
    ``engine_run_dir``: the engine's volatile run directory (default ``<data_dir>/agent/engine/run``;
    podman wants its runroot under 50 characters). ``sandbox``: offer the `sandbox` isolation
    class when gVisor's runsc is installed and runs here (probed at start; docs/isolation.md).
    ``network_gc_s``: how long an engine network no cell here is on stays (unused networks are
    removed after it). ``driver_name``: ``podman`` (the default) runs cells through the engine; ``runc`` runs them
    with runc directly, the engine staying the image and volume store (docs/drivers.md).
    ``private_networks``: run the engine in a mount namespace of its own where
    /run/containers/networks is its run dir's (None: with ``overlay``); a dev host's agent does not
    need it, its whole mount namespace has one."""
    from cellplane import allocator

    allocator.limit_arenas()
    _agent_import_diet()
    from cellplane import logs
    from cellplane.agent import isolation
    from cellplane.agent.build import Builder
    from cellplane.agent.endpoint import AgentEndpoint
    from cellplane.agent.registry_ops import RegistryOps
    from cellplane.agent.runner import Agent, AgentConfig
    from cellplane.agent.server_client import ServerClient
    from cellplane.agent.volume_transfer import VolumeTransfer
    from cellplane.drivers.engine import PodmanService
    from cellplane.drivers.podman import PodmanDriver

    logs.configure(log_level)
    memtrace = _memtrace("agent")
    trimmer = allocator.Trimmer.from_env()
    base = data_dir / "agent"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    # On the overlay the engine keeps its network run state (resolver files) to itself.
    # The runtime is configured whenever runsc is installed (cells made sandboxed earlier stay
    # manageable); it is offered to new cells only if `sandbox` and the probe says it runs.
    runsc = isolation.find_runsc()
    engine = PodmanService(
        base / "engine",
        run_dir=engine_run_dir,
        subnet_pool=subnet_pool,
        runsc=runsc,
        runsc_platform=runsc_platform,
        private_networks=overlay if private_networks is None else private_networks,
    )
    sandbox_engine = engine.sandbox_service() if runsc else None
    sandbox_start = sandbox_engine.ensure_started if sandbox_engine else None
    if driver_name not in AGENT_DRIVERS:
        raise SystemExit(f"--driver {driver_name!r}: one of {', '.join(AGENT_DRIVERS)}")
    podman = (
        PodmanDriver(engine.start(), subnet_pools=(subnet_pool,), sandbox_engine=sandbox_start)
        if subnet_pool
        else PodmanDriver(engine.start(), sandbox_engine=sandbox_start)
    )
    driver: Any = podman
    if driver_name == "runc":
        from cellplane.drivers.runc import RuncDriver

        driver = RuncDriver(podman, base / "runc", networks=_runc_networks(base / "runc"))
        classes, how = ["standard"], "runc driver: the sandbox class is not offered"
    else:
        classes, how = (
            isolation.probe(driver, runsc, runsc_platform)
            if sandbox
            else (["standard"], "sandbox: turned off (--no-sandbox)")
        )
    cfg = AgentConfig(
        server_url=server_url,
        join_token=join_token,
        data_dir=base,
        name=name or socket.gethostname(),
        address=address,
        labels=labels,
        zone=zone,
        cpu_ratio=cpu_ratio,
        parallelism=parallelism,
        fixed_parallelism=fixed_parallelism,
        overlay=overlay,
        network_run_dir=engine.network_run_dir,
        heartbeat_s=heartbeat_s,
        network_gc_s=network_gc_s,
        isolation=classes,
        isolation_detail=how,
    )
    cert_dir = base / "tls" if server_url.startswith("https://") else None
    client = ServerClient(server_url, ca_file=ca_file, cert_dir=cert_dir)
    runner = Agent(cfg, driver, client, engine=engine)
    transfer = VolumeTransfer(driver, scratch=base, host_id=lambda: runner.host_id)
    builder = Builder(podman, client, base)
    registry = RegistryOps(podman, builder)
    endpoint = AgentEndpoint(
        driver,
        runner.agent_secret,
        host=address,
        volumes=transfer,
        builder=builder,
        tls_dir=cert_dir,  # the endpoint is mutual TLS with the host certificate
        networks=runner.network_attach(),
        registry=registry,
    )
    endpoint.start()
    runner.agent_url = endpoint.url
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def register_and_run() -> None:
        try:
            runner.register()
            runner.start()
        except Exception:
            stop.set()
            raise

    try:
        threading.Thread(target=register_and_run, daemon=True).start()
        stop.wait()
    finally:
        runner.stop()
        endpoint.stop()
        client.close()
        if memtrace is not None:
            memtrace.stop()
        if trimmer is not None:
            trimmer.stop()
        if sandbox_engine is not None:
            sandbox_engine.stop_recorded()
        # Cells keep running under conmon; the engine's mounts are detached, so that the data
        # directory can be removed once the agent is gone (they are mounted again on the next
        # start).
        engine.shutdown()
    return 0


#: The cell drivers an agent can run (`--driver`, CELLPLANE_AGENT_DRIVER).
AGENT_DRIVERS = ("podman", "runc")


def _runc_networks(directory: Path) -> Any:
    """The runc driver's network backend (`runc_net`), its state from a previous run adopted."""
    from cellplane.drivers.runc_net import RuncNetworks

    networks = RuncNetworks(directory / "net")
    networks.adopt()
    return networks


def _agent_import_diet() -> None:
    """Keep out of the agent what its libraries import only for features it does not use
    (~3 MB of resident memory, which the footprint target counts; a no-op where they are
    already loaded, as in the CLI's `cellplane agent`):

    * ``charset_normalizer`` / ``chardet``: `requests` (under the docker SDK) guesses the
      encoding of an answer with no charset. The agent's only `requests` peer is podman,
      whose answers are JSON (UTF-8 by RFC 8259, which `requests` assumes for JSON) and
      `requests` falls back to UTF-8 without them; it warns once at import, silenced here.
    * ``click``: httpx imports its command line (``httpx._main``) when click is installed and
      carries on without it.
    """
    for name in ("charset_normalizer", "chardet", "click"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    warnings.filterwarnings(
        "ignore", message="Unable to find acceptable character detection", module="requests"
    )


def _labels(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise SystemExit(f"--label {item!r} is not key=value")
        out[k] = v
    return out


def _memtrace(role: str) -> Any:
    """A dev-only switch: tracemalloc snapshots into `CELLPLANE_MEMTRACE` (cellplane.memtrace)."""
    if not os.environ.get("CELLPLANE_MEMTRACE"):
        return None
    from cellplane import memtrace

    return memtrace.from_env(role)


#: Installed packages the daemons never use, which libraries they do use import whenever
#: installed; `main` makes their import fail (the libraries carry on without them). Each costs
#: resident memory that the footprint target counts:
#: - rich, pygments (~3-4 MB a process): httpx imports its command line, and structlog its rich
#:   tracebacks; the daemons print no rich text.
#: - greenlet (0.9 MB in the server, 1.2 MB in the agent, measured): structlog's deprecated
#:   `threadlocal` module imports it for greenlet-local context; Cellplane keeps its log context
#:   in contextvars, and uses SQLAlchemy without asyncio (the one part that needs greenlet).
#: - pydantic.v1 (1.5 MB in the server, measured): FastAPI imports pydantic's copy of its first
#:   version only to ask whether each route's model is a v1 model (then refused); none is.
KEPT_OUT = ("rich", "pygments", "greenlet", "pydantic.v1")


def main(argv: list[str] | None = None) -> int:
    from cellplane.paths import default_data_dir

    for name in KEPT_OUT:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]

    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m cellplane.daemon")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("server")
    s.add_argument("--data-dir", type=Path, default=env("CELLPLANE_DATA_DIR"))
    s.add_argument("--database-url", default=env("CELLPLANE_DATABASE_URL"))
    s.add_argument("--host", default=env("CELLPLANE_LISTEN_HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(env("CELLPLANE_LISTEN_PORT", "7400")))
    s.add_argument("--log-level", default=env("CELLPLANE_LOG_LEVEL", "info"))
    s.add_argument("--tls", action=argparse.BooleanOptionalAction, default=False)
    s.add_argument("--also-listen", action="append", default=[])
    a = sub.add_parser("agent")
    a.add_argument("--server", default=env("CELLPLANE_SERVER", "http://127.0.0.1:7400"))
    a.add_argument("--join-token", default=env("CELLPLANE_JOIN_TOKEN"))
    a.add_argument("--join-token-file", type=Path)
    a.add_argument("--data-dir", type=Path, default=env("CELLPLANE_DATA_DIR"))
    a.add_argument("--name")
    a.add_argument("--address", default="127.0.0.1")
    a.add_argument("--label", action="append", default=[])
    a.add_argument("--zone")
    a.add_argument("--cpu-ratio", type=float, default=16.0)
    a.add_argument("--parallelism", type=int, default=16)
    a.add_argument("--fixed-parallelism", action="store_true")
    a.add_argument("--log-level", default=env("CELLPLANE_LOG_LEVEL", "info"))
    a.add_argument("--ca-file", type=Path, default=env("CELLPLANE_CA_CERT"))
    a.add_argument(
        "--overlay", action="store_true", default=env("CELLPLANE_AGENT_OVERLAY", "") == "1"
    )
    a.add_argument("--private-networks", action=argparse.BooleanOptionalAction, default=None)
    a.add_argument("--subnet-pool", default=env("CELLPLANE_SUBNET_POOL"))
    a.add_argument("--engine-run-dir", type=Path, default=env("CELLPLANE_ENGINE_RUN_DIR"))
    a.add_argument("--heartbeat-s", type=float, default=float(env("CELLPLANE_HEARTBEAT_S", "2")))
    a.add_argument("--network-gc-s", type=float, default=float(env("CELLPLANE_NETWORK_GC_S", "60")))
    a.add_argument("--sandbox", action=argparse.BooleanOptionalAction, default=True)
    a.add_argument("--runsc-platform", default=env("CELLPLANE_RUNSC_PLATFORM", "ptrace"))
    a.add_argument(
        "--driver", choices=AGENT_DRIVERS, default=env("CELLPLANE_AGENT_DRIVER", "podman")
    )
    args = p.parse_args(argv)
    # `kill -USR1 PID` prints every thread's stack to stderr (the log) and carries on: how to
    # see where a daemon that stopped answering is waiting, without a debugger.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if args.command == "server":
        return run_server(
            data_dir,
            args.database_url,
            args.host,
            args.port,
            args.log_level,
            tls=args.tls,
            also_listen=args.also_listen,
        )
    token = args.join_token or (
        args.join_token_file.read_text().strip() if args.join_token_file else None
    )
    if not token:
        print("a join token is needed (--join-token or --join-token-file)", file=sys.stderr)
        return 2
    return run_agent(
        server_url=args.server,
        join_token=token,
        data_dir=data_dir,
        name=args.name,
        address=args.address,
        labels=_labels(args.label),
        zone=args.zone,
        cpu_ratio=args.cpu_ratio,
        parallelism=args.parallelism,
        fixed_parallelism=args.fixed_parallelism,
        log_level=args.log_level,
        ca_file=Path(args.ca_file) if args.ca_file else None,
        overlay=args.overlay,
        private_networks=args.private_networks,
        subnet_pool=args.subnet_pool,
        engine_run_dir=Path(args.engine_run_dir) if args.engine_run_dir else None,
        heartbeat_s=args.heartbeat_s,
        network_gc_s=args.network_gc_s,
        sandbox=args.sandbox,
        runsc_platform=args.runsc_platform,
        driver_name=args.driver,
    )


def __getattr__(name: str) -> Any:
    # `DatabaseNewerThanServer` without loading the database code for every daemon import.
    if name == "DatabaseNewerThanServer":
        from cellplane.state.db import DatabaseNewerThanServer

        return DatabaseNewerThanServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    from cellplane import allocator

    try:
        allocator.preload_jemalloc("cellplane.daemon", sys.argv[1:])
    except ValueError as exc:
        sys.exit(f"cellplane: {exc}")
    sys.exit(main())
