"""Errors raised by the cluster catalog, spec parser, role renderer and planner.

Callers (the clusters service, the API error mapping, the CLI) catch these to
turn a bad spec or catalog into a precise message. All of them are permanent:
retrying the same input gives the same answer.

    ClusterError
    ├── SpecError            a cluster spec is malformed; carries field paths
    ├── CatalogError         a catalog file is malformed; names the file and field
    ├── RoleError            a role cannot be rendered for a node
    └── PlanError            a valid spec cannot be planned
        ├── DependencyCycleError   roles wait for each other in a loop
        └── ResizeError            a node group cannot be resized as asked
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CatalogError",
    "ClusterError",
    "DependencyCycleError",
    "FieldIssue",
    "PlanError",
    "ResizeError",
    "RoleError",
    "SpecError",
]


@dataclass(frozen=True)
class FieldIssue:
    """One problem at one place: `path` is like ``nodeGroups[1].instanceNum``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ClusterError(Exception):
    """Base of every error in :mod:`cellplane.clusters`."""


class SpecError(ClusterError):
    """A cluster spec failed validation; `issues` lists every bad field."""

    def __init__(self, issues: Sequence[FieldIssue], *, source: str | None = None) -> None:
        self.issues: tuple[FieldIssue, ...] = tuple(issues)
        self.source = source
        text = "; ".join(str(i) for i in self.issues)
        super().__init__(f"{source}: {text}" if source else text)


class CatalogError(ClusterError):
    """A catalog file is unreadable or invalid; the message names file and field."""

    def __init__(self, file: str, message: str, *, field: str | None = None) -> None:
        self.file = file
        self.field = field
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {message}")


class RoleError(ClusterError):
    """A role definition cannot be rendered for the given node and topology."""


class PlanError(ClusterError):
    """The spec is valid on its own but cannot be turned into a plan."""


class DependencyCycleError(PlanError):
    """Roles (or node groups) wait for each other in a loop.

    `cycle` is the loop with its first name repeated last; `kind` says what the
    names are ("role" or "node group").
    """

    def __init__(self, cycle: Sequence[str], kind: str = "role") -> None:
        self.cycle: tuple[str, ...] = tuple(cycle)
        self.kind = kind
        super().__init__(f"{kind} dependency cycle: " + " -> ".join(self.cycle))


class ResizeError(PlanError):
    """A node group cannot be resized as asked (unknown group, scale-in refused, ...)."""
