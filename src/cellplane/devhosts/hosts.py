"""Dev hosts: several Cellplane hosts on one machine, each a network namespace with its own agent.

A dev host NAME is

* the network namespace ``cp-NAME`` (``/run/netns/cp-NAME``), joined to the underlay bridge by a
  veth pair (``net.py``), with its own underlay address;
* a mount namespace of its own (kept in ``/run/cellplane-dev/mnt/cp-NAME``) in which podman's
  machine-wide run directory ``/run/containers/networks`` is the host's own directory: root
  podman keeps its IP allocations (``ipam.db``) and its DNS server's (aardvark-dns) state there
  whatever ``--root`` it runs with, so without this every dev host would share them;
* an agent, ``python -m cellplane.daemon agent``, started with
  ``nsenter --net=/run/netns/cp-NAME --mount=...``, with its own podman engine (root, runroot,
  network definitions, containers.conf, socket) under ``<data dir>/devhosts/NAME/``. It joins the
  server exactly as a remote agent does: the server's URL on the underlay, a join token, the CA
  certificate; its own endpoint (logs, exec) listens on the host's underlay address.

Each host's engine carves its networks' subnets from its own pool (``10.90.0.0/16`` for the first
host, ``10.91.0.0/16`` for the second, ...), so no two hosts' containers ever share an address.

Everything is recorded in ``<data dir>/devhosts/NAME/host.json``; `remove_host` undoes all of it
(agent, engine, containers, mounts, namespaces, links; the bridge with the last host).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cellplane.devhosts import net

__all__ = [
    "DEFAULT_UNDERLAY",
    "DevHost",
    "DevHostError",
    "add_host",
    "ensure_underlay",
    "get_host",
    "kill_agent",
    "list_hosts",
    "remove_all",
    "remove_host",
    "start_agent",
    "sweep",
    "validate",
]

DEFAULT_UNDERLAY = net.Underlay()
RUN_DIR = Path("/run/cellplane-dev")
MNT_DIR = RUN_DIR / "mnt"
PODMAN_NETWORK_RUN_DIR = Path("/run/containers/networks")
MAX_HOSTS = 32
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$")


class DevHostError(Exception):
    """A dev host cannot be created, found or removed; the message says why."""


@dataclass(frozen=True)
class DevHost:
    """One dev host as recorded: ``address`` on the underlay, ``pid`` of its agent (None when it
    is not running), ``data_dir`` (its agent's data directory)."""

    name: str
    address: str
    pid: int | None
    data_dir: Path
    zone: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace: str = ""
    index: int = 0

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "agent.log"

    @property
    def netns_path(self) -> Path:
        return net.namespace_path(self.namespace)


def _root(data_dir: Path) -> Path:
    return data_dir.absolute() / "devhosts"


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise DevHostError(
            f"host name {name!r} is not valid: 1-20 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )


def _check_labels(labels: Mapping[str, str]) -> None:
    for k, v in labels.items():
        if not _LABEL_KEY.fullmatch(k):
            raise DevHostError(f"label key {k!r} is not valid")
        if len(v) > 63 or any(c in v for c in "=,\n"):
            raise DevHostError(f"label {k}={v!r}: values are at most 63 characters, no '=' ','")


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[Path]:
    root = _root(data_dir)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (root / ".lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield root
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pid_alive(pid: int | None, marker: str) -> int | None:
    """``pid`` if that process still runs and its command line contains ``marker``."""
    if pid is None:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie is not running
        return None
    return pid if marker.encode() in cmdline else None


def _read(path: Path) -> DevHost | None:
    try:
        raw = json.loads((path / "host.json").read_text())
    except (OSError, ValueError):
        return None
    pid = _pid_alive(raw.get("pid"), str(path))
    return DevHost(
        name=raw["name"],
        address=raw["address"],
        pid=pid,
        data_dir=path,
        zone=raw.get("zone"),
        labels=dict(raw.get("labels") or {}),
        namespace=raw["namespace"],
        index=int(raw["index"]),
    )


def _write(host: DevHost, extra: Mapping[str, object]) -> None:
    data = {
        "name": host.name,
        "address": host.address,
        "pid": host.pid,
        "zone": host.zone,
        "labels": dict(host.labels),
        "namespace": host.namespace,
        "index": host.index,
        **extra,
    }
    tmp = host.data_dir / "host.json.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(host.data_dir / "host.json")


def _raw(host: DevHost) -> dict[str, object]:
    try:
        data = json.loads((host.data_dir / "host.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def list_hosts(data_dir: Path) -> list[DevHost]:
    """The dev hosts of the Cellplane data directory ``data_dir``, by name."""
    root = _root(data_dir)
    if not root.is_dir():
        return []
    found = (_read(p) for p in sorted(root.iterdir()) if p.is_dir())
    return [h for h in found if h is not None]


def get_host(data_dir: Path, name: str) -> DevHost:
    host = _read(_root(data_dir) / name) if _NAME.fullmatch(name) else None
    if host is None:
        raise DevHostError(f"there is no dev host {name!r} in {data_dir}")
    return host


def _veth(underlay: net.Underlay, index: int) -> str:
    return f"{underlay.bridge}v{index}"[:15]


def _mnt_file(namespace: str) -> Path:
    return MNT_DIR / namespace


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DevHostError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")


def _ensure_mnt_dir() -> None:
    """A private bind mount of MNT_DIR on itself: mount namespaces can be kept there (as
    /run/netns keeps network namespaces)."""
    MNT_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not _is_mount_point(MNT_DIR):
        _run(["mount", "--bind", str(MNT_DIR), str(MNT_DIR)])
        _run(["mount", "--make-private", str(MNT_DIR)])


def _is_mount_point(path: Path) -> bool:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[4] == str(path) for line in lines if line)


def _make_mount_namespace(namespace: str, netrun: Path) -> Path:
    """A persistent mount namespace in which ``/run/containers/networks`` is ``netrun``."""
    _ensure_mnt_dir()
    target = _mnt_file(namespace)
    if _is_mount_point(target):
        return target
    target.touch()
    _run(["unshare", f"--mount={target}", "--propagation", "slave", "true"])
    PODMAN_NETWORK_RUN_DIR.mkdir(parents=True, exist_ok=True)
    netrun.mkdir(parents=True, exist_ok=True, mode=0o700)
    _run(
        [
            "nsenter",
            f"--mount={target}",
            "mount",
            "--bind",
            str(netrun),
            str(PODMAN_NETWORK_RUN_DIR),
        ]
    )
    return target


def _drop_mount_namespace(namespace: str) -> None:
    target = _mnt_file(namespace)
    if _is_mount_point(target):
        subprocess.run(["umount", str(target)], capture_output=True, check=False)
    target.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        if _is_mount_point(MNT_DIR) and not any(MNT_DIR.iterdir()):
            subprocess.run(["umount", str(MNT_DIR)], capture_output=True, check=False)


def _engine_run(host: DevHost) -> Path:
    """The engine's volatile run directory (podman wants its runroot short: under 50 bytes)."""
    return RUN_DIR / host.namespace / "engine"


def _subnet_pool(index: int) -> str:
    return f"10.{90 + index}.0.0/16"


def _require_root() -> None:
    if os.geteuid() != 0:
        raise DevHostError("dev hosts need root (network and mount namespaces, links)")


def validate(name: str, zone: str | None, labels: Mapping[str, str]) -> None:
    """Raise `DevHostError` naming what is wrong with a dev host's name, zone or labels."""
    _check_name(name)
    _check_labels(labels)
    if zone is not None and not _NAME.fullmatch(zone):
        raise DevHostError(f"zone {zone!r} is not valid: lowercase letters, digits and '-'")


def add_host(
    name: str,
    *,
    data_dir: Path,
    server_url: str,
    join_token: str,
    ca_file: Path | None = None,
    zone: str | None = None,
    labels: Mapping[str, str] | None = None,
    underlay: net.Underlay = DEFAULT_UNDERLAY,
    python: str = sys.executable,
) -> DevHost:
    """Create dev host ``name`` and start its agent, which joins ``server_url`` (reachable on the
    underlay, e.g. ``https://10.77.0.1:7400``) with ``join_token``. Returns once the agent runs
    (it registers on its own: wait for the host in the API). Refuses a name already in use."""
    _require_root()
    labels = dict(labels or {})
    validate(name, zone, labels)
    with _locked(data_dir) as root:
        existing = list_hosts(data_dir)
        if any(h.name == name for h in existing):
            raise DevHostError(f"dev host {name!r} exists already (`dev hosts rm {name}` first)")
        used = {h.index for h in existing}
        index = next((i for i in range(MAX_HOSTS) if i not in used), None)
        if index is None:
            raise DevHostError(f"at most {MAX_HOSTS} dev hosts on one machine")
        namespace = f"{underlay.namespace_prefix}{name}"
        if net.namespace_exists(namespace):
            raise DevHostError(
                f"the network namespace {namespace} exists already (another data directory's "
                "dev host?): remove it first"
            )
        host = DevHost(
            name=name,
            address=underlay.address(index),
            pid=None,
            data_dir=root / name,
            zone=zone,
            labels=labels,
            namespace=namespace,
            index=index,
        )
        host.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        extra = {
            "bridge": underlay.bridge,
            "subnet": underlay.subnet,
            "prefix": underlay.namespace_prefix,
            "veth": _veth(underlay, index),
        }
        _write(host, extra)
        try:
            net.ensure_bridge(underlay)
            net.add_namespace_link(underlay, namespace, _veth(underlay, index), host.address)
            _make_mount_namespace(namespace, RUN_DIR / "net" / namespace)
            _engine_run(host).mkdir(parents=True, exist_ok=True, mode=0o700)
        except Exception:
            _teardown(host, extra)
            raise
    return start_agent(
        data_dir, name, server_url=server_url, join_token=join_token, ca_file=ca_file, python=python
    )


def start_agent(
    data_dir: Path,
    name: str,
    *,
    server_url: str,
    join_token: str | None = None,
    ca_file: Path | None = None,
    python: str = sys.executable,
) -> DevHost:
    """(Re)start the agent of dev host ``name`` in its namespaces; a running one is kept.

    ``join_token`` None: the one it joined with (spent, if it was a one-use token: an agent
    with a valid host certificate registers again with that certificate alone)."""
    host = get_host(data_dir, name)
    if host.running:
        return host
    token_file = host.data_dir / "join-token"
    if join_token is not None:
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(join_token + "\n")
    elif not token_file.exists():
        raise DevHostError(f"dev host {name} never joined: a join token is needed")
    cmd = [
        "nsenter",
        f"--net={host.netns_path}",
        f"--mount={_mnt_file(host.namespace)}",
        "--",
        python,
        "-m",
        "cellplane.daemon",
        "agent",
        "--server",
        server_url,
        "--join-token-file",
        str(token_file),
        "--data-dir",
        str(host.data_dir),
        "--name",
        host.name,
        "--address",
        host.address,
        # Project networks across the dev hosts; the host's mount namespace already keeps the
        # engine's network run state its own (hence no second one for the engine).
        "--overlay",
        "--no-private-networks",
        "--subnet-pool",
        _subnet_pool(host.index),
        "--engine-run-dir",
        str(_engine_run(host)),
        *(["--zone", host.zone] if host.zone else []),
        *[a for k, v in host.labels.items() for a in ("--label", f"{k}={v}")],
        *(["--ca-file", str(ca_file)] if ca_file else []),
    ]
    env = dict(os.environ)
    if env.get("PYTHONPATH"):  # the agent runs in the host's directory: keep the same modules
        env["PYTHONPATH"] = os.pathsep.join(
            str(Path(p).absolute()) for p in env["PYTHONPATH"].split(os.pathsep) if p
        )
    with (host.data_dir / "agent.log").open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=host.data_dir,
            env=env,
            start_new_session=True,
        )
    extra = _raw(host)
    extra.update(pid=proc.pid, server_url=server_url)
    started = DevHost(**{**host.__dict__, "pid": proc.pid})
    _write(started, extra)
    time.sleep(0.2)
    if proc.poll() is not None:
        tail = started.log_path.read_text(errors="replace")[-1500:]
        raise DevHostError(f"the agent of {name} exited at once ({proc.returncode}):\n{tail}")
    return started


def kill_agent(data_dir: Path, name: str, sig: int = signal.SIGKILL, wait_s: float = 20.0) -> None:
    """Send ``sig`` to the agent of ``name`` and wait for it to end (SIGKILL after ``wait_s``).
    Its cells keep running under conmon, as after an agent crash on a real machine."""
    host = get_host(data_dir, name)
    if host.pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(host.pid, sig)
    if not _wait_gone(host.pid, str(host.data_dir), wait_s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(host.pid, signal.SIGKILL)
        _wait_gone(host.pid, str(host.data_dir), 5.0)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(host.pid, os.WNOHANG)


def _wait_gone(pid: int, marker: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid, marker) is not None:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _ns_inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _processes_in(namespaces: list[tuple[str, int]]) -> list[int]:
    """Pids of processes in any of ``namespaces`` ((kind, inode): 'net' or 'mnt')."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for kind, inode in namespaces:
            try:
                if os.stat(entry / "ns" / kind).st_ino == inode:
                    out.append(int(entry.name))
                    break
            except OSError:
                continue
    return out


def _engine_command(host: DevHost, *args: str) -> list[str]:
    engine = host.data_dir / "agent" / "engine"
    return [
        "nsenter",
        f"--net={host.netns_path}",
        f"--mount={_mnt_file(host.namespace)}",
        "--",
        "env",
        f"CONTAINERS_CONF={engine / 'containers.conf'}",
        f"CONTAINERS_STORAGE_CONF={engine / 'storage.conf'}",
        "podman",
        "--root",
        str(engine / "storage"),
        "--runroot",
        str(_engine_run(host) / "storage"),
        "--network-config-dir",
        str(engine / "networks"),
        *args,
    ]


def _teardown(host: DevHost, extra: Mapping[str, object]) -> None:
    """Undo everything of ``host``: agent, containers, engine, processes, mounts, namespaces."""
    if host.pid is not None:
        kill_agent(host.data_dir.parent.parent, host.name, signal.SIGTERM)
    mnt = _mnt_file(host.namespace)
    if _is_mount_point(mnt) and (host.data_dir / "agent" / "engine" / "containers.conf").exists():
        subprocess.run(
            _engine_command(host, "rm", "--all", "--force", "--time", "0"),
            capture_output=True,
            check=False,
            timeout=120,
        )
    inodes = [
        (kind, ino)
        for kind, path in (("mnt", mnt), ("net", host.netns_path))
        if (ino := _ns_inode(path)) is not None and _is_mount_point(path)
    ]
    for _ in range(3):  # the engine service, aardvark-dns, conmons of anything left
        pids = _processes_in(inodes) if inodes else []
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    _drop_mount_namespace(host.namespace)
    veth = str(extra.get("veth") or "")
    net.remove_namespace(host.namespace, veth)
    shutil.rmtree(RUN_DIR / "net" / host.namespace, ignore_errors=True)
    shutil.rmtree(_engine_run(host).parent, ignore_errors=True)
    shutil.rmtree(host.data_dir, ignore_errors=True)


def remove_host(data_dir: Path, name: str) -> None:
    """Remove dev host ``name``: its agent, engine and containers, its namespaces and link, its
    directory; the underlay bridge too when it was the last host."""
    _require_root()
    with _locked(data_dir):
        host = get_host(data_dir, name)
        extra = _raw(host)
        _teardown(host, extra)
        if not list_hosts(data_dir):
            bridge, subnet = extra.get("bridge"), extra.get("subnet")
            if isinstance(bridge, str) and isinstance(subnet, str):
                net.remove_bridge(net.Underlay(bridge=bridge, subnet=subnet))


def sweep(underlay: net.Underlay) -> list[str]:
    """Remove what a crashed run left of dev hosts on ``underlay`` whose data directory is gone:
    every namespace named with its prefix (the processes in it, its mount namespace, its veth
    pair). For test harnesses that own their underlay; returns the namespaces removed."""
    _require_root()
    if not net.NETNS_DIR.is_dir():
        return []
    removed = []
    for path in sorted(net.NETNS_DIR.glob(f"{underlay.namespace_prefix}*")):
        ghost = DevHost(
            name=path.name[len(underlay.namespace_prefix) :],
            address="",
            pid=None,
            data_dir=RUN_DIR / "swept" / path.name,
            namespace=path.name,
        )
        _teardown(ghost, {})
        removed.append(path.name)
    return removed


def ensure_underlay(underlay: net.Underlay = DEFAULT_UNDERLAY) -> str:
    """Create the underlay bridge (idempotent) and return its root-side address, where a server
    must listen for dev hosts to reach it."""
    _require_root()
    net.ensure_bridge(underlay)
    return underlay.gateway


def remove_all(data_dir: Path) -> list[str]:
    """Remove every dev host of ``data_dir``; returns their names."""
    names = [h.name for h in list_hosts(data_dir)]
    for name in names:
        remove_host(data_dir, name)
    return names
