"""`docker network connect` / `disconnect` and containers on several networks, with the unmodified
docker CLI against a project's endpoint (real podman).

A running container connected to a second network reaches that network's containers by name at
once, and no longer after it is disconnected; a container keeps its last network; a stopped one
gets the network when it starts; `docker run --network a --network b` makes a container on both;
`docker inspect` lists each network with its address.
"""

from __future__ import annotations

import json
import re

import pytest

from .conftest import SLEEP, Endpoint, unique

pytestmark = pytest.mark.integration


def _networks(ep: Endpoint, name: str) -> dict[str, str]:
    (info,) = json.loads(ep.ok("inspect", name))
    return {k: v["IPAddress"] for k, v in info["NetworkSettings"]["Networks"].items()}


def _addresses(ep: Endpoint, name: str) -> list[str]:
    out = ep.ok("exec", name, "ip", "-4", "-o", "addr", "show")
    return [a for a in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out) if a != "127.0.0.1"]


def test_connect_and_disconnect_a_running_container(ep_a: Endpoint) -> None:
    net_a, net_b = unique("na"), unique("nb")
    web, target = unique("web"), unique("tgt")
    ep_a.ok("network", "create", net_a)
    ep_a.ok("network", "create", net_b)
    try:
        ep_a.ok("run", "-d", "--name", web, "--network", net_a, "busybox", *SLEEP)
        ep_a.ok("run", "-d", "--name", target, "--network", net_b, "busybox", *SLEEP)
        # Control: on a only, web does not reach b's container.
        assert ep_a.docker("exec", web, "ping", "-c1", "-W2", target).returncode != 0

        ep_a.ok("network", "connect", net_b, web)
        nets = _networks(ep_a, web)
        assert list(nets) == [net_a, net_b], nets
        assert all(nets.values()), nets
        assert sorted(_addresses(ep_a, web)) == sorted(nets.values())
        ping = ep_a.docker("exec", web, "ping", "-c1", "-W2", target)
        assert ping.returncode == 0, (ping.stdout, ping.stderr)
        assert _networks(ep_a, target)[net_b] in ping.stdout
        (info,) = json.loads(ep_a.ok("network", "inspect", net_b))
        assert {c["Name"] for c in info["Containers"].values()} == {web, target}
        again = ep_a.docker("network", "connect", net_b, web)
        assert again.returncode != 0 and "already exists" in again.stderr
        ip = ep_a.docker("network", "connect", "--ip", "10.128.9.9", net_b, target)
        assert ip.returncode != 0 and "--ip" in ip.stderr

        ep_a.ok("network", "disconnect", net_b, web)
        assert list(_networks(ep_a, web)) == [net_a]
        assert len(_addresses(ep_a, web)) == 1
        assert ep_a.docker("exec", web, "ping", "-c1", "-W2", target).returncode != 0
        last = ep_a.docker("network", "disconnect", net_a, web)
        assert last.returncode != 0 and "only one" in last.stderr
    finally:
        ep_a.docker("rm", "-f", web, target)
        ep_a.docker("network", "rm", net_a, net_b)


def test_a_stopped_container_and_run_on_two_networks(ep_a: Endpoint) -> None:
    net_a, net_b = unique("na"), unique("nb")
    made, both = unique("made"), unique("both")
    ep_a.ok("network", "create", net_a)
    ep_a.ok("network", "create", net_b)
    try:
        ep_a.ok("create", "--name", made, "--network", net_a, "busybox", *SLEEP)
        ep_a.ok("network", "connect", net_b, made)
        ep_a.ok("start", made)
        assert list(_networks(ep_a, made)) == [net_a, net_b]
        assert len(_addresses(ep_a, made)) == 2

        ep_a.ok("run", "-d", "--name", both, "--network", net_a, "--network", net_b, "busybox",
                *SLEEP)  # fmt: skip
        assert list(_networks(ep_a, both)) == [net_a, net_b]
        assert len(_addresses(ep_a, both)) == 2
        out = ep_a.docker("exec", both, "ping", "-c1", "-W2", made)
        assert out.returncode == 0, (out.stdout, out.stderr)
        in_use = ep_a.docker("network", "rm", net_b)
        assert in_use.returncode != 0
    finally:
        ep_a.docker("rm", "-f", made, both)
        ep_a.docker("network", "rm", net_a, net_b)
