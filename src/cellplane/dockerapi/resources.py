"""The routes of a Docker-compatible endpoint for the project's resources beside containers:
volumes, networks, events and `system df` (issue 11)."""

from __future__ import annotations

from typing import Any

from cellplane.dockerapi import events, networks, system, volumes

__all__ = ["routes"]


def routes() -> list[tuple[str, str, Any]]:
    return [*volumes.routes(), *networks.routes(), *events.routes(), *system.routes()]
