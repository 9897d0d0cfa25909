"""A tiny busybox image built in pure Python, so tests and demos need no registry.

Called by integration tests, benchmarks and `cellplane up` demos that need a small image:
``build_busybox_archive(dir)`` writes a docker-archive tarball (loadable by podman and
Docker through ``POST /images/load``) holding one layer with the host's static busybox
and a symlink per applet. The archive is deterministic (fixed mtimes, sorted entries),
so its name carries a digest of its content and a second call returns the cached file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

__all__ = [
    "BUSYBOX_PATH",
    "BusyboxMissingError",
    "build_busybox_archive",
    "busybox_applets",
    "ensure_busybox_static",
]

BUSYBOX_PATH = Path("/bin/busybox")

# Bumped whenever the archive layout changes, so cached archives are rebuilt.
_FORMAT_VERSION = "1"

# Used when `busybox --list` is unavailable; every name here is a stock applet.
_FALLBACK_APPLETS = [
    "cat",
    "cp",
    "date",
    "df",
    "echo",
    "env",
    "false",
    "grep",
    "head",
    "hostname",
    "httpd",
    "id",
    "ip",
    "kill",
    "ln",
    "ls",
    "mkdir",
    "mv",
    "nc",
    "nslookup",
    "ping",
    "printf",
    "ps",
    "pwd",
    "rm",
    "sed",
    "sh",
    "sleep",
    "tail",
    "tee",
    "test",
    "touch",
    "true",
    "uname",
    "wc",
    "wget",
    "which",
]

# Directories the runtime expects to exist (mount points) or programs expect to write.
_DIRS = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "proc": 0o755,
    "root": 0o700,
    "sys": 0o755,
    "tmp": 0o1777,
    "var": 0o755,
    "var/www": 0o755,
}

_ETC_FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
}


class BusyboxMissingError(RuntimeError):
    """The static busybox binary the image is built from is not installed."""


def ensure_busybox_static(path: Path = BUSYBOX_PATH) -> Path:
    """Return the busybox binary's path, or explain which package provides it."""
    if not path.is_file():
        raise BusyboxMissingError(
            f"{path} not found: install the Debian package 'busybox-static' "
            "(apt-get install -y busybox-static)"
        )
    return path


def busybox_applets(path: Path = BUSYBOX_PATH) -> list[str]:
    """The applet names the binary implements (what gets a symlink in /bin)."""
    try:
        out = subprocess.run(
            [str(path), "--list"], capture_output=True, check=True, timeout=10
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return sorted(_FALLBACK_APPLETS)
    names = {line.strip() for line in out.splitlines()}
    names.discard("")
    names.discard("busybox")
    return sorted(n for n in names if "/" not in n)


def _tar_info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def _layer_tar(binary: bytes, applets: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in sorted(_DIRS.items()):
            tar.addfile(_tar_info(name, tarfile.DIRTYPE, mode))
        tar.addfile(
            _tar_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), io.BytesIO(binary)
        )
        for applet in applets:
            link = _tar_info(f"bin/{applet}", tarfile.SYMTYPE, 0o777)
            link.linkname = "busybox"
            tar.addfile(link)
        for name, data in sorted(_ETC_FILES.items()):
            tar.addfile(_tar_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return buf.getvalue()


def _json_bytes(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _split_tag(tag: str) -> tuple[str, str]:
    # A colon before the last slash is a registry port, not a tag.
    if ":" in tag.rsplit("/", 1)[-1]:
        repo, _, version = tag.rpartition(":")
        return repo, version
    return tag, "latest"


def _archive_bytes(layer: bytes, tag: str) -> bytes:
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Cmd": ["sh"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "cellplane busybox"}],
    }
    config_bytes = _json_bytes(config)
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    repo, version = _split_tag(tag)
    manifest = [
        {
            "Config": config_name,
            "RepoTags": [f"{repo}:{version}"],
            "Layers": [f"{layer_digest}/layer.tar"],
        }
    ]
    repositories = {repo: {version: layer_digest}}

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [
            (config_name, config_bytes),
            (f"{layer_digest}/VERSION", b"1.0"),
            (f"{layer_digest}/layer.tar", layer),
            ("manifest.json", _json_bytes(manifest)),
            ("repositories", _json_bytes(repositories)),
        ]
        tar.addfile(_tar_info(layer_digest, tarfile.DIRTYPE, 0o755))
        for name, data in entries:
            tar.addfile(_tar_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return buf.getvalue()


def build_busybox_archive(dest: Path, tag: str = "busybox:latest") -> Path:
    """Write (or reuse) a docker-archive of busybox tagged ``tag`` in directory ``dest``.

    The file name holds a digest of the binary, the tag and the layout version, so an
    archive already in ``dest`` for the same inputs is returned without rebuilding.
    """
    binary_path = ensure_busybox_static()
    binary = binary_path.read_bytes()
    key = hashlib.sha256()
    for part in (_FORMAT_VERSION.encode(), tag.encode(), binary):
        key.update(hashlib.sha256(part).digest())
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"busybox-{key.hexdigest()[:16]}.tar"
    if target.is_file():
        return target
    data = _archive_bytes(_layer_tar(binary, busybox_applets(binary_path)), tag)
    # Write then rename so a concurrent reader never sees half an archive.
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target
