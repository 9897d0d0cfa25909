"""The pure pieces of running a cluster node in one cell: config bundle, role scripts, probes.

Called by the cluster executor (:mod:`cellplane.controller.clusters.nodes` and
:mod:`~cellplane.controller.clusters.readiness`). A node's cell (host image) runs
:data:`SUPERVISOR` under bash: it unpacks the rendered files (a base64 tar.gz in
``CP_FILES``, only when ``CP_GENERATION`` is newer than what the cell's own
filesystem already holds, so that a later config update survives a restart),
then runs every role of the node (``CP_ROLES``, in role order) as its own
process with its own log file ``/var/log/cellplane/<role>.log``, its own pid
file ``/run/cellplane/<role>.pid`` and its own restart loop, and tails the logs
to stdout. Everything here is pure and unit-tested.
"""

from __future__ import annotations

import base64
import io
import shlex
import tarfile
from collections.abc import Iterable, Mapping, Sequence

from cellplane.clusters.roles import RenderedReadiness, RenderedRole

__all__ = [
    "GENERATION_FILE",
    "LOG_DIR",
    "PID_DIR",
    "ROLE_DIR",
    "SUPERVISOR",
    "bundle_files",
    "log_path",
    "node_env",
    "node_files",
    "pid_path",
    "probe_command",
    "restart_role_command",
    "role_script",
    "role_script_path",
    "stop_waves",
    "tail_command",
    "write_files_command",
]

LOG_DIR = "/var/log/cellplane"
PID_DIR = "/run/cellplane"
ROLE_DIR = "/etc/cellplane/roles"
GENERATION_FILE = "/etc/cellplane/generation"

SUPERVISOR = r"""set -u
mkdir -p /var/log/cellplane /run/cellplane /etc/cellplane
have=$(cat /etc/cellplane/generation 2>/dev/null || echo 0)
if [ -n "${CP_FILES:-}" ] && [ "${CP_GENERATION:-1}" -gt "$have" ]; then
  printf '%s' "$CP_FILES" | base64 -d | tar -xz -C / || { echo "[cellplane] cannot unpack the node's files"; exit 1; }
  printf '%s\n' "${CP_GENERATION:-1}" > /etc/cellplane/generation
fi
logs=""
for role in ${CP_ROLES:-}; do
  log=/var/log/cellplane/$role.log
  touch "$log"
  logs="$logs $log"
  (
    trap 'kill $(cat /run/cellplane/'"$role"'.pid 2>/dev/null) 2>/dev/null; exit 0' TERM INT
    while :; do
      echo "[cellplane] $(date -u +%FT%TZ) starting $role" >> "$log"
      /bin/bash /etc/cellplane/roles/$role.sh >> "$log" 2>&1 &
      echo $! > /run/cellplane/$role.pid
      wait $!
      rc=$?
      echo "[cellplane] $(date -u +%FT%TZ) $role exited with $rc; restarting in 1 s" >> "$log"
      sleep 1
    done
  ) &
done
trap 'kill $(jobs -p) 2>/dev/null; wait; exit 0' TERM INT
tail -q -n +1 -F $logs &
wait
"""


def role_script_path(role: str) -> str:
    return f"{ROLE_DIR}/{role}.sh"


def log_path(role: str) -> str:
    return f"{LOG_DIR}/{role}.log"


def pid_path(role: str) -> str:
    return f"{PID_DIR}/{role}.pid"


def role_script(rendered: RenderedRole) -> str:
    """The script the supervisor runs for one role: ``exec`` its command with its env."""
    argv = [shlex.quote(a) for a in rendered.command]
    env = [f"{k}={shlex.quote(v)}" for k, v in sorted(rendered.env.items())]
    lines = [
        "# rendered by Cellplane for role " + rendered.role + " on " + rendered.node,
        *(f"export {e}" for e in env),
        "exec " + " ".join(argv),
        "",
    ]
    return "\n".join(lines)


def bundle_files(files: Mapping[str, str]) -> str:
    """A deterministic base64 tar.gz of absolute path -> content (mtime 0, root-owned)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for path in sorted(files):
            if not path.startswith("/"):
                raise ValueError(f"config file path {path!r} is not absolute")
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            data = files[path].encode()
            info = tarfile.TarInfo(path.strip("/"))
            info.size = len(data)
            info.mode = 0o755 if path.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    # gzip stamps the time in its header: zero it so equal input gives equal bytes.
    blob = bytearray(raw.getvalue())
    blob[4:8] = b"\x00\x00\x00\x00"
    return base64.b64encode(bytes(blob)).decode()


def node_files(renders: Sequence[RenderedRole]) -> dict[str, str]:
    """Every file of a node: the roles' rendered config files plus one script per role."""
    files: dict[str, str] = {}
    for r in renders:
        files.update(r.files)
        files[role_script_path(r.role)] = role_script(r)
    return files


def node_env(renders: Sequence[RenderedRole], generation: int) -> dict[str, str]:
    """The cell env that makes :data:`SUPERVISOR` run this node's roles."""
    return {
        "CP_FILES": bundle_files(node_files(renders)),
        "CP_GENERATION": str(generation),
        "CP_ROLES": " ".join(r.role for r in renders),
    }


def write_files_command(renders: Sequence[RenderedRole], generation: int) -> list[str]:
    """An exec command that writes a node's files in place (config updates)."""
    blob = bundle_files(node_files(renders))
    script = (
        f"printf '%s' {shlex.quote(blob)} | base64 -d | tar -xz -C / && "
        f"printf '%s\\n' {generation} > {GENERATION_FILE}"
    )
    return ["/bin/bash", "-c", script]


def restart_role_command(role: str) -> list[str]:
    """An exec command that ends a role's process; its restart loop starts it again."""
    return ["/bin/bash", "-c", f"kill $(cat {pid_path(role)}) 2>/dev/null; true"]


def tail_command(role: str, lines: int = 30) -> list[str]:
    return ["tail", "-n", str(lines), log_path(role)]


def probe_command(check: RenderedReadiness) -> list[str]:
    """The exec command that passes (exit 0) when the role is ready."""
    if check.kind == "exec":
        return list(check.argv)
    if check.kind == "tcp":
        return ["/bin/bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{check.port}"]
    path = check.path or "/"
    request = f"GET {path} HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n"
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{check.port} && printf '{request}' >&3 && "
        "head -n 1 <&3 | grep -q ' 2[0-9][0-9]'"
    )
    return ["/bin/bash", "-c", script]


def stop_waves(waves: Iterable[Sequence[str]]) -> list[list[str]]:
    """Stopping goes against the start order: the last wave first."""
    return [list(w) for w in reversed(list(waves))]
