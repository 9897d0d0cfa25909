"""Docker names that are not DNS labels, as Compose makes them (`project_service_1`,
`project_default`), and the network aliases a container asks for. Pure.

Cells and Cellplane networks are named by DNS labels. A Docker name whose only fault is `_` is
taken with `-` in its place (`composetest_web_1` is the cell `composetest-web-1`); the name the
client gave is kept in a label (`NAME_LABEL`, `NETWORK_LABEL`) and reported back as given, and a
reference by either form finds it. `--network-alias` (Compose's service name) is kept in
`wire.exec.ALIASES_LABEL`: the agent adds those aliases, and the container's short id as Docker
does, to the container's name on its network.
"""

from __future__ import annotations

from cellplane.validation import is_dns_label

__all__ = ["MAX_ALIASES", "NAME_LABEL", "NETWORK_LABEL", "dns_name", "same_name"]

#: The container's name as the client gave it, when that was not its cell name.
NAME_LABEL = "cellplane.docker.name"
#: The network's name as the client gave it at create, when it was not the Cellplane name.
NETWORK_LABEL = "cellplane.docker.network"
#: Aliases a container may ask for on its network.
MAX_ALIASES = 16


def dns_name(name: str) -> str | None:
    """The DNS-label form of a Docker name (`_` as `-`), None when it has none."""
    if is_dns_label(name):
        return name
    if "_" in name and is_dns_label(candidate := name.replace("_", "-")):
        return candidate
    return None


def same_name(ref: str, name: str) -> bool:
    """Whether `ref` names what is called `name` (a DNS label), in either form."""
    return ref == name or ("_" in ref and ref.replace("_", "-") == name)
