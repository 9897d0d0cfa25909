"""Several Cellplane hosts on one machine (`cellplane dev hosts`): see `hosts.py`."""

from cellplane.devhosts.hosts import (
    DEFAULT_UNDERLAY,
    DevHost,
    DevHostError,
    add_host,
    ensure_underlay,
    get_host,
    kill_agent,
    list_hosts,
    remove_all,
    remove_host,
    start_agent,
    sweep,
    validate,
)
from cellplane.devhosts.net import Underlay

__all__ = [
    "DEFAULT_UNDERLAY",
    "DevHost",
    "DevHostError",
    "Underlay",
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
