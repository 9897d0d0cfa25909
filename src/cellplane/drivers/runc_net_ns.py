"""Network namespaces for runc cells: made, wired to a bridge, and dropped, through netlink.

A cell's namespace is a bind mount of a namespace file at a path under the driver's run dir
(nothing in /run/netns, nothing global). It is made by a short-lived thread that unshares its
own network namespace and bind-mounts it (no child process: pyroute2's `netns.create` forks
one); the same thread, now inside the namespace, opens a netlink socket there to set up `lo`,
`eth0`, the address and the default route, while the host's socket makes the veth pair with
its peer already in the namespace. The thread then ends (its namespace lives on in the mount).

Dropping the mount drops the namespace once no process is in it; the kernel then deletes the
veth pair itself (asynchronously; deleting a veth explicitly costs ~17 ms of RCU wait here).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

__all__ = ["NsSetup", "drop_namespace", "make_namespace", "mounted_namespaces"]

_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MNT_DETACH = 2
_EINVAL = errno.EINVAL
_OCTAL = re.compile(rb"\\([0-7]{3})")  # mountinfo writes a blank as \040

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str, path: Path) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what} {path}: {os.strerror(code)}")


@dataclass(frozen=True)
class NsSetup:
    """What one cell's namespace gets: `veth` on host bridge index `bridge`, `eth0` with
    `address`/`prefixlen`, a default route via `gateway`, and `mtu` (None: the kernel's)."""

    path: Path
    veth: str
    bridge: int
    address: str
    prefixlen: int
    gateway: str
    mtu: int | None


def _unshare_and_bind(path: Path) -> None:
    """On a fresh thread: move it to a new network namespace and bind that to `path`."""
    _check(_libc.unshare(_CLONE_NEWNET), "unshare for", path)
    source = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
    _check(_libc.mount(source, bytes(path), b"none", _MS_BIND, None), "mount", path)


def _wire_host(setup: NsSetup, host: IPRoute, host_lock: threading.Lock) -> None:
    """On the caller's thread (pyroute2 keeps one socket per thread, in that thread's namespace):
    the veth pair, its peer made right in the namespace as `eth0`, the host end in the bridge."""
    extra: dict[str, Any] = {} if setup.mtu is None else {"mtu": setup.mtu}
    fd = os.open(setup.path, os.O_RDONLY)
    try:
        with host_lock:
            for attempt in (1, 2):
                try:  # one request: the pair, the peer in the namespace, the host end in the bridge
                    host.link(
                        "add",
                        ifname=setup.veth,
                        kind="veth",
                        peer={"ifname": "eth0", "net_ns_fd": fd, **extra},
                        master=setup.bridge,
                        state="up",
                        **extra,
                    )
                    break
                except NetlinkError as exc:
                    stale = host.link_lookup(ifname=setup.veth)
                    if exc.code != errno.EEXIST or not stale or attempt == 2:
                        raise
                    # An earlier namespace's pair the kernel has not deleted yet.
                    with contextlib.suppress(NetlinkError):
                        host.link("del", index=stale[0])
    finally:
        os.close(fd)


def _wire_inside(setup: NsSetup) -> None:
    """On the thread inside the namespace: lo and eth0 up, the address, the default route."""
    with IPRoute() as inner:  # this thread's socket: in the cell's namespace
        inner.link("set", index=1, state="up")
        eth = inner.link_lookup(ifname="eth0")[0]  # its MTU was set with the pair
        inner.addr("add", index=eth, address=setup.address, prefixlen=setup.prefixlen)
        inner.link("set", index=eth, state="up")
        inner.route("add", dst="0.0.0.0/0", gateway=setup.gateway)


def make_namespace(setup: NsSetup, host: IPRoute, host_lock: threading.Lock) -> None:
    """Make the cell's namespace at `setup.path`, wired up; on failure nothing is left.

    A worker thread enters the new namespace and waits there while the caller's thread makes
    the veth pair on the host, then sets up the inside and ends.
    """
    fd = os.open(setup.path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)
    failure: list[BaseException] = []
    entered, wired = threading.Event(), threading.Event()
    host_ok = [False]

    def run() -> None:
        try:
            _unshare_and_bind(setup.path)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
            entered.set()
            return
        entered.set()
        wired.wait()
        if host_ok[0]:
            try:
                _wire_inside(setup)
            except BaseException as exc:
                failure.append(exc)

    worker = threading.Thread(target=run, name=f"netns-{setup.veth}")
    worker.start()
    entered.wait()
    try:
        if not failure:
            _wire_host(setup, host, host_lock)
            host_ok[0] = True
    finally:
        wired.set()
        worker.join()
        if failure or not host_ok[0]:
            drop_namespace(setup.path)
    if failure:
        raise failure[0]


def drop_namespace(path: Path) -> None:
    """Unmount and remove the namespace file; no error if it is gone or was never mounted."""
    if _libc.umount2(bytes(path), _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (_EINVAL, errno.ENOENT):
            raise OSError(code, f"umount {path}: {os.strerror(code)}")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def mounted_namespaces(directory: Path) -> set[str]:
    """The paths under `directory` that are mount points (namespace files still bound; after a
    reboot none is), from this process's mount table."""
    prefix = str(directory).encode() + b"/"
    found: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", "rb") as info:
        for line in info:
            point = _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), line.split(b" ")[4])
            if point.startswith(prefix):
                found.add(point.decode(errors="replace"))
    return found
