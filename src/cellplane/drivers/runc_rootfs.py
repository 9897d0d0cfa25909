"""Root filesystems of runc cells: images flattened once, an overlay per cell.

The podman engine stays the image store. `ImageRoots.root(ref)` flattens an image into
`<dir>/<image id>/rootfs` the first time a cell uses it (the engine creates a container of it,
exports that container's filesystem, `tar` unpacks it; under a lock, so that concurrent cells of
one image wait for one extraction) and caches it with the image's configuration. Each cell then
gets an overlay (`mount_overlay`: lower = that root, upper and work in the cell's directory),
made with the mount(2) system call and undone with umount2(2) when the cell is removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellplane.drivers import errors
from cellplane.drivers.podman import PodmanDriver
from cellplane.drivers.podman_errors import translated

__all__ = ["ImageRoot", "ImageRoots", "is_mounted", "mount_overlay", "unmount"]

_MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay of `lower` (read-only) and `upper` (writes) on `target`."""
    for d in (upper, work, target):
        d.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    if _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, options) != 0:
        err = ctypes.get_errno()
        raise errors.PermanentDriverError(
            f"overlay mount on {target} failed: {os.strerror(err)} (lower {lower})"
        )


def unmount(target: Path) -> None:
    """Unmount `target` (lazily if busy); nothing if it is not mounted."""
    if not is_mounted(target):
        return
    if _libc.umount2(str(target).encode(), 0) != 0:
        err = ctypes.get_errno()
        if _libc.umount2(str(target).encode(), _MNT_DETACH) != 0:
            raise errors.DriverError(f"cannot unmount {target}: {os.strerror(err)}")


def is_mounted(target: Path) -> bool:
    """Whether `target` is a mount point in this process's mount namespace."""
    text = str(target)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return any(line.split()[4] == text for line in f if len(line.split()) > 4)


@dataclass(frozen=True)
class ImageRoot:
    """An image flattened on disk: its id, root directory and configuration (Docker's
    `Config`: Entrypoint, Cmd, Env, WorkingDir, User)."""

    image_id: str
    rootfs: Path
    config: dict[str, Any]

    def etc(self, name: str) -> str:
        """The image's /etc/<name> text ("" if it has none)."""
        try:
            path = (self.rootfs / "etc" / name).resolve()
            if not path.is_relative_to(self.rootfs.resolve()):
                return ""
            return path.read_text(errors="replace")
        except OSError:
            return ""


class ImageRoots:
    """The flattened images under `directory`, made from `podman`'s image store on demand."""

    def __init__(self, podman: PodmanDriver, directory: Path) -> None:
        self.podman = podman
        self.directory = directory
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._known: dict[str, ImageRoot] = {}

    def root(self, ref: str) -> ImageRoot:
        """The flattened image `ref` (a name or id), made now if it was not yet."""
        # An image id names one image for good: no engine round trip once it is flattened.
        known = self._known.get(ref.removeprefix("sha256:"))
        if known is not None:
            return known
        with translated("image"):
            attrs: dict[str, Any] = self.podman._untyped.inspect_image(ref)
        image_id = str(attrs["Id"]).removeprefix("sha256:")
        known = self._known.get(image_id)
        if known is not None:
            return known
        with self._lock:
            lock = self._locks.setdefault(image_id, threading.Lock())
        with lock:
            home = self.directory / image_id
            done = home / "config.json"
            if not done.exists():
                self._extract(ref, home)
                done.write_text(json.dumps(attrs.get("Config") or {}))
            found = ImageRoot(image_id, home / "rootfs", json.loads(done.read_text()))
            self._known[image_id] = found
            return found

    def _extract(self, ref: str, home: Path) -> None:
        partial = home.with_name(home.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        (partial / "rootfs").mkdir(parents=True)
        api: Any = self.podman._untyped
        with translated("image"):
            created = api.create_container(ref, command=["/cellplane-export"], entrypoint=[])
        cid = str(created["Id"])
        try:
            with translated("image"), tempfile.TemporaryFile() as err:
                stream = api.export(cid)
                tar = subprocess.Popen(
                    [
                        "tar",
                        "-x",
                        "--numeric-owner",
                        "-p",
                        "-f",
                        "-",
                        "-C",
                        str(partial / "rootfs"),
                    ],
                    stdin=subprocess.PIPE,
                    stderr=err,
                )
                assert tar.stdin is not None
                try:
                    for chunk in stream:
                        tar.stdin.write(chunk)
                except BaseException:
                    tar.kill()
                    tar.wait()
                    raise
                tar.communicate()
                err.seek(0)
                message = err.read().decode(errors="replace")[-500:]
            if tar.returncode != 0:
                raise errors.PermanentDriverError(f"flattening image {ref}: tar failed: {message}")
        finally:
            with contextlib.suppress(errors.DriverError), translated("image"):
                api.remove_container(cid, force=True)
        shutil.rmtree(home, ignore_errors=True)
        partial.rename(home)

    def forget(self, image_id: str) -> None:
        """Drop a flattened image (its cells must be gone)."""
        self._known.pop(image_id, None)
        shutil.rmtree(self.directory / image_id, ignore_errors=True)
