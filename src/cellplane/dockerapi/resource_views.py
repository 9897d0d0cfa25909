"""Cellplane volumes and networks as Docker shows them, Docker's create bodies for them checked,
and their list filters. Pure: no I/O, no state.

A volume is a project's Cellplane volume (`cellplane volume ls`); a network is a project's
Cellplane network (`cellplane network ls`), its default one called "bridge" as Docker calls its
own default.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from typing import Any

import pydantic

from cellplane.dockerapi import naming
from cellplane.dockerapi.mapping import Refused
from cellplane.dockerapi.views import decode_filters, docker_id

__all__ = [
    "BRIDGE",
    "body_labels",
    "check_network_create",
    "check_volume_create",
    "create_refusal",
    "docker_time",
    "network_docker_id",
    "network_matches",
    "network_view",
    "parse_resource_filters",
    "volume_matches",
    "volume_size_gb",
    "volume_view",
]

#: The project's default network, as Docker names its own default network.
BRIDGE = "bridge"
_NOT_YET = "is not supported on this endpoint yet"
_VOLUME_FILTERS = {"name", "dangling", "label", "driver", "all"}
_NETWORK_FILTERS = {"name", "id", "label", "driver", "type", "scope"}


def docker_time(iso: str | None) -> str:
    """An ISO time as Docker writes them (RFC 3339, `Z`)."""
    if not iso:
        return "0001-01-01T00:00:00Z"
    return iso.replace("+00:00", "Z")


def parse_resource_filters(raw: str | None, kind: str) -> dict[str, list[str]]:
    """The `filters` of `GET /volumes` (kind "volume") or `GET /networks` ("network")."""
    known = _VOLUME_FILTERS if kind == "volume" else _NETWORK_FILTERS
    out = decode_filters(raw, known, f" for {kind}s")
    bad = [v for v in out.get("dangling", []) if v.lower() not in ("true", "false", "1", "0")]
    if bad:
        raise Refused(400, f"invalid filter 'dangling={bad[0]}' (true or false)")
    return out


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def body_labels(body: dict[str, Any]) -> dict[str, str]:
    """The `Labels` of a create body: an object of strings (their sizes are checked with the
    Cellplane resource's own, `services.schemas`)."""
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict):
        raise Refused(400, "Labels must be a JSON object")
    bad = [k for k, v in labels.items() if not isinstance(v, str)]
    if bad:
        raise Refused(400, f"label {str(bad[0])[:64]!r}: a label's value must be a string")
    return {str(k): v for k, v in labels.items()}


def create_refusal(kind: str, name: str, exc: pydantic.ValidationError) -> str:
    """Why a `kind` ("network", "volume") called `name` cannot be made, from its Cellplane
    create body's validation: the name or the labels, named."""
    err = exc.errors()[0]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["loc"] and err["loc"][0] == "labels":
        return f"{kind} create --label: {msg}"
    if err["loc"] and err["loc"][0] == "size_gb":
        return f"{kind} create --opt size: {msg} GB"
    return (
        f"{kind} name {name!r}: names on this endpoint are Cellplane {kind} names, DNS labels "
        f"({err['msg']})"
    )


# --- volumes -----------------------------------------------------------------------------


def check_volume_create(body: Any) -> str | None:
    """The name a `POST /volumes/create` body asks for (None: make one up); what a Cellplane
    volume cannot carry is refused, naming it."""
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    driver = body.get("Driver") or "local"
    if driver != "local":
        raise Refused(400, f"volume driver {driver!r} {_NOT_YET} (only 'local')")
    opts = body.get("DriverOpts") or {}
    if not isinstance(opts, dict):
        raise Refused(400, "DriverOpts must be a JSON object")
    other = sorted(str(k) for k in opts if k != "size")
    if other:
        raise Refused(
            400,
            f"volume driver options ({', '.join(other)}) {_NOT_YET}: a volume is the "
            "project's local Cellplane volume (only --opt size=SIZE is taken)",
        )
    volume_size_gb(body)
    body_labels(body)
    if body.get("ClusterVolumeSpec"):
        raise Refused(400, f"cluster volumes {_NOT_YET}")
    name = body.get("Name") or None
    if name is not None and not isinstance(name, str):
        raise Refused(400, "Name must be a string")
    return name


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$", re.IGNORECASE)
_SIZE_FACTOR = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def volume_size_gb(body: dict[str, Any]) -> int | None:
    """The size `--opt size=SIZE` asks for (bytes, or with a unit: 512m, 10G, 1TiB; binary, as
    Docker reads sizes), in whole GB rounded up (a Cellplane volume's unit); None when not
    given. Refused (400) when it is not a size, or is 0."""
    raw = (body.get("DriverOpts") or {}).get("size")
    if raw is None:
        return None
    found = _SIZE.match(str(raw).strip())
    size = float(found.group(1)) * _SIZE_FACTOR[found.group(2).lower()] if found else 0.0
    if not found or size <= 0:
        raise Refused(400, f"--opt size={raw}: not a size (bytes, or 512m, 10g, 1t)")
    return max(1, math.ceil(size / (1 << 30)))


def volume_view(vol: dict[str, Any], project: str) -> dict[str, Any]:
    """A Cellplane volume (`services.volumes` view) as Docker's Volume object, under the name
    its Docker client gave it (Compose's `proj_data` for `proj-data`)."""
    return {
        "Name": vol.get("docker_name") or vol["name"],
        "Driver": "local",
        # The engine volume lives on the host the volume is bound to, not on this endpoint:
        # there is no path here to give.
        "Mountpoint": "",
        "CreatedAt": docker_time(vol.get("created_at")),
        "Labels": dict(vol.get("labels") or {}),
        "Scope": "local",
        "Options": {},
        "Status": {
            "CellplaneVolume": vol["id"],
            "Project": project,
            "SizeGB": vol.get("size_gb"),
            "Host": vol.get("host_name") or "(none yet: bound to the host of its first cell)",
            "Available": vol.get("available", True),
            "UsedBy": list(vol.get("attached_names") or []),
        },
    }


def volume_matches(vol: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Whether the volume (its Cellplane view) passes `filters`."""
    name = vol.get("docker_name") or vol["name"]
    if "name" in filters and not any(f in name for f in filters["name"]):
        return False
    if "driver" in filters and "local" not in filters["driver"]:
        return False
    if "label" in filters and not _labels_match(vol.get("labels") or {}, filters["label"]):
        return False
    if "dangling" in filters:
        dangling = not vol.get("attached_to")
        wanted = {v.lower() in ("true", "1") for v in filters["dangling"]}
        if dangling not in wanted:
            return False
    return True


# --- networks ----------------------------------------------------------------------------


def network_docker_id(network_id: str) -> str:
    """A network's Docker id: 64 hex digits derived from its Cellplane id."""
    return hashlib.sha256(b"network:" + network_id.encode()).hexdigest()


def _default_value(value: Any) -> bool:
    return value in (None, False, "", {}, [])


def check_network_create(body: Any) -> str:
    """The name a `POST /networks/create` body asks for; what a Cellplane network cannot be is
    refused, naming the option."""
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise Refused(400, "Name is required")
    if name in (BRIDGE, "host", "none", "default"):
        raise Refused(403, f"{name} is a pre-defined network and cannot be created")
    name = naming.dns_name(name) or name  # Compose's `project_default`: `project-default`
    driver = body.get("Driver") or "bridge"
    if driver != "bridge":
        raise Refused(400, f"network driver {driver!r} {_NOT_YET} (only 'bridge')")
    for key, option in (
        ("Internal", "--internal"),
        ("EnableIPv6", "--ipv6"),
        ("Ingress", "--ingress"),
        ("ConfigOnly", "--config-only"),
        ("ConfigFrom", "--config-from"),
        ("Options", "--opt"),
    ):
        if not _default_value(body.get(key)):
            raise Refused(400, f"network create {option} {_NOT_YET}")
    body_labels(body)
    if (body.get("Scope") or "local") != "local":
        raise Refused(400, f"network create --scope {body.get('Scope')} {_NOT_YET}")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise Refused(400, "IPAM must be a JSON object")
    if (ipam.get("Driver") or "default") != "default":
        raise Refused(400, f"network create --ipam-driver {ipam.get('Driver')} {_NOT_YET}")
    if not _default_value(ipam.get("Options")):
        raise Refused(400, f"network create --ipam-opt {_NOT_YET}")
    if not _default_value(ipam.get("Config")):
        raise Refused(
            400,
            "network create --subnet/--ip-range/--gateway "
            f"{_NOT_YET}: Cellplane gives each network its subnet",
        )
    return name


def network_view(
    net: dict[str, Any], members: list[dict[str, Any]], *, with_containers: bool = True
) -> dict[str, Any]:
    """A Cellplane network (`services.networks.network_view`) and its cells as Docker's
    Network object (`Containers` only in inspect, as Docker answers)."""
    subnet = str(net["subnet"])
    prefix = ipaddress.ip_network(subnet, strict=False).prefixlen
    view: dict[str, Any] = {
        "Name": BRIDGE if net["default"] else (net.get("docker_name") or net["name"]),
        "Id": network_docker_id(net["id"]),
        "Created": docker_time(net.get("created_at")),
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": subnet}]},
        "Internal": False,
        "Attachable": True,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": {
            "cellplane.network": net["id"],
            "cellplane.name": net["name"],
            "cellplane.engine_name": net["engine_name"],
        },
        "Labels": dict(net.get("labels") or {}),
    }
    if with_containers:
        view["Containers"] = {
            docker_id(c["id"]): {
                "Name": c["name"],
                "EndpointID": "",
                "MacAddress": "",
                "IPv4Address": f"{c['address']}/{prefix}" if c.get("address") else "",
                "IPv6Address": "",
            }
            for c in members
        }
    return view


def network_matches(view: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    if "name" in filters and not any(f in view["Name"] for f in filters["name"]):
        return False
    if "id" in filters and not any(view["Id"].startswith(f) for f in filters["id"]):
        return False
    if "driver" in filters and view["Driver"] not in filters["driver"]:
        return False
    if "scope" in filters and view["Scope"] not in filters["scope"]:
        return False
    if "label" in filters and not _labels_match(view["Labels"], filters["label"]):
        return False
    if "type" in filters:
        kind = "builtin" if view["Name"] == BRIDGE else "custom"
        if kind not in filters["type"]:
            return False
    return True


def network_ref_matches(view: dict[str, Any], ref: str) -> bool:
    """Whether `ref` (a name, a full id or an id prefix) names this network."""
    if ref in (view["Id"], view["Options"]["cellplane.network"], view["Options"]["cellplane.name"]):
        return True
    if naming.same_name(ref, view["Name"]):  # Compose's `project_default`
        return True
    return bool(re.fullmatch(r"[0-9a-f]{1,64}", ref)) and view["Id"].startswith(ref)
