"""Remove a deployment's data directory: its containers and networks, its engine, its mounts.

Used by :class:`cellplane.testing.harness.Deployment` and by ``scripts/tour.sh`` (``python -m
cellplane.testing.teardown DATA_DIR``), once the server and the agent are stopped. Cells keep
running under conmon after their agent stops, and containers/storage leaves overlay mounts
under the data directory, so a plain ``rm -rf`` would fail or leak both.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = [
    "destroy_data_dir",
    "remove_dev_hosts",
    "remove_engine",
    "remove_runc_cells",
    "unmount_under",
]


def remove_runc_cells(data_dir: Path) -> None:
    """Kill and delete the cells an agent ran with the runc driver (`--driver runc`): runc
    removes their cgroups; their overlay mounts go with `unmount_under`."""
    state = data_dir / "agent" / "runc" / "state"
    runc = shutil.which("runc")
    if not state.is_dir() or runc is None:
        return
    listed = subprocess.run(
        [runc, "--root", str(state), "list", "-q"], capture_output=True, text=True, check=False
    )

    def delete(container_id: str) -> None:
        subprocess.run(
            [runc, "--root", str(state), "delete", "--force", container_id],
            capture_output=True,
            check=False,
        )

    with ThreadPoolExecutor(8) as pool:  # a burst's thousand cells: ~20 ms of runc each
        list(pool.map(delete, listed.stdout.split()))
    net_dir = data_dir / "agent" / "runc" / "net"
    if not net_dir.is_dir():
        return
    from cellplane.drivers.runc_net import RuncNetworks

    # Namespaces, addresses, bridges, rules and the resolver of the runc driver's networks.
    networks = RuncNetworks(net_dir)
    try:
        for container_id in networks.attachments():
            with contextlib.suppress(Exception):
                networks.detach(container_id)
        for name in networks.list_networks({}):
            with contextlib.suppress(Exception):
                networks.remove_network(name)
    finally:
        networks.close()


def remove_engine(data_dir: Path) -> None:
    """Remove every container and network of the agent's engine under `data_dir`, then the
    engine's own directories (it is started for that if it is not running)."""
    from cellplane.drivers.engine import PodmanService
    from cellplane.drivers.podman import PodmanDriver

    remove_runc_cells(data_dir)
    engine_dir = data_dir / "agent" / "engine"
    if not engine_dir.exists():
        return
    engine = PodmanService(engine_dir, runsc=shutil.which("runsc"))  # sandboxed cells, too
    try:
        driver = PodmanDriver(engine.start())
        for info in driver.list({}):
            with contextlib.suppress(Exception):
                driver.remove(info.id, force=True)
        for net in driver.list_networks({}):
            with contextlib.suppress(Exception):
                driver.remove_network(net)
    except Exception:
        pass
    if engine.runsc is not None:
        engine.sandbox_service().stop_recorded()  # one the agent left running (it was killed)
    engine.destroy()


def unmount_under(directory: Path) -> list[str]:
    """Lazily unmount every mount point under `directory`, deepest first; returns them."""
    prefix = f"{directory.absolute()}/"
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    # /proc/mounts escapes spaces and other odd bytes as octal (\040).
    points = [line.split()[1].encode().decode("unicode_escape") for line in lines if line]
    inside = sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)
    for point in inside:
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    return inside


def remove_dev_hosts(data_dir: Path) -> list[str]:
    """Remove the dev hosts of `data_dir` (`cellplane dev hosts`, `cellplane up --hosts`): their
    agents, engines and containers, namespaces, links, and the bridge with the last one."""
    if not (data_dir / "devhosts").is_dir():
        return []
    from cellplane import devhosts

    return devhosts.remove_all(data_dir)


def destroy_data_dir(data_dir: Path) -> None:
    """Its dev hosts; the engine's containers, networks and files, any mount left, then the
    directory."""
    remove_dev_hosts(data_dir)
    remove_engine(data_dir)
    unmount_under(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m cellplane.testing.teardown DATA_DIR", file=sys.stderr)
        return 2
    data_dir = Path(argv[0])
    if not data_dir.is_dir():
        return 0
    destroy_data_dir(data_dir)
    if data_dir.exists():
        print(f"{data_dir} could not be removed entirely", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
