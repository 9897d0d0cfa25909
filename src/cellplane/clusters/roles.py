"""Role definitions and their rendering for one node of a cluster.

A role (Serengeti's Chef role) says what a node of that role runs: which
binaries the image must have, which config files it renders from the cluster
topology, its foreground command, readiness check, which roles it waits for,
whether it can be scaled in and where it keeps its data (``data_dir``, where
the node's data volume is mounted). Roles are data: one YAML file per role
under ``catalog/roles/``, loaded by :mod:`cellplane.clusters.catalog`.

The cluster deploy executor calls :func:`render_role` for each role of each
node, writes the files into the node's cell, runs the command and polls the
readiness check. :func:`missing_binaries` lets it fail early, naming what an
image lacks. Everything here is pure; templates are Jinja2 with
``StrictUndefined`` (a typo is an error, not an empty string) and no escaping
(these are config files, not HTML); block tags on their own line vanish
with their newline (``trim_blocks``/``lstrip_blocks``).

Template context (for ``config_files``, ``command``, ``env``, ``readiness.exec``
and ``join``):

* ``cluster``: ``name``, ``state`` (``new`` at creation, ``existing`` when a
  member joins a running cluster), ``secret`` (64 hex digits per cluster, derived from the
  server's key; empty when a plan is only checked), ``configuration`` (the spec's merged
  cluster + node group ``configuration``)
* ``node``: this node's ``name``, ``address``, ``id`` (1-based, per role),
  ``index`` (in its node group), ``group``
* ``role``: ``name`` and ``ports`` of the role being rendered; ``ports`` alone
  is a shortcut for ``role.ports``
* ``roles``: for every role in the cluster, ``members`` (list of nodes as
  above), ``ports`` and ``count``
* ``settings``: the keys the role declares under ``configuration`` (per file), with the
  spec's value or the declared default (see :func:`role_settings`)
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from cellplane.clusters.errors import RoleError

if TYPE_CHECKING:
    import jinja2

__all__ = [
    "ConfigKey",
    "HttpCheck",
    "Member",
    "Readiness",
    "RenderedReadiness",
    "RenderedRole",
    "RoleConfiguration",
    "RoleDefinition",
    "RoleRequirements",
    "Topology",
    "missing_binaries",
    "render_role",
    "role_settings",
    "template_environment",
]

_ROLE_CONFIG = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HttpCheck(BaseModel):
    """Ready when ``GET http://<node>:<port><path>`` answers 2xx."""

    model_config = _ROLE_CONFIG

    port: str | int
    path: str = "/"


class Readiness(BaseModel):
    """Exactly one of ``tcp`` (port name or number), ``exec`` (argv) or ``http``."""

    model_config = _ROLE_CONFIG

    tcp: str | int | None = None
    exec_: tuple[str, ...] | None = Field(default=None, alias="exec")
    http: HttpCheck | None = None
    timeout: float = Field(default=60.0, gt=0)
    period: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> Readiness:
        given = [k for k in ("tcp", "exec_", "http") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("readiness needs exactly one of tcp, exec, http")
        return self


class RoleRequirements(BaseModel):
    """What the node's image must contain for the role to run."""

    model_config = _ROLE_CONFIG

    binaries: tuple[str, ...] = ()


class ConfigKey(BaseModel):
    """One setting a role reads from the spec's ``configuration``: its type, bounds, default.

    ``type`` is ``int`` (with ``min``/``max``), ``enum`` (one of ``values``) or ``string``
    (no newline: values are written into config files line by line).
    """

    model_config = _ROLE_CONFIG

    type: Literal["int", "enum", "string"]
    min: int | None = None
    max: int | None = None
    values: tuple[str, ...] | None = None
    default: int | str

    def check(self, value: Any) -> str | None:
        """Why `value` cannot be used, or None when it can."""
        if self.type == "int":
            number = value
            if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
                number = int(value.strip())
            if isinstance(number, bool) or not isinstance(number, int):
                return f"must be an integer, not {value!r}"
            if (self.min is not None and number < self.min) or (
                self.max is not None and number > self.max
            ):
                return f"must be an integer from {self.min} to {self.max}, not {number}"
            return None
        if not isinstance(value, str):
            return f"must be a string, not {value!r}"
        if self.type == "enum" and value not in (self.values or ()):
            return f"must be one of {', '.join(self.values or ())}, not {value!r}"
        if "\n" in value or "\r" in value:
            return "must be a single line"
        return None


class RoleConfiguration(BaseModel):
    """Which ``configuration`` section a role reads (``zookeeper``) and its keys, per file.

    A file entry ``"*"`` accepts any key with a string value (free-form maps such as an
    environment).
    """

    model_config = _ROLE_CONFIG

    section: str
    files: dict[str, dict[str, ConfigKey]]


class RoleDefinition(BaseModel):
    """One ``catalog/roles/<name>.yaml`` file."""

    model_config = _ROLE_CONFIG

    name: str
    description: str = ""
    requires: RoleRequirements = RoleRequirements()
    ports: dict[str, int] = {}
    config_files: dict[str, str] = {}
    command: tuple[str, ...] = ()
    env: dict[str, str] = {}
    readiness: Readiness | None = None
    provides: tuple[str, ...] = ()
    waits_for: tuple[str, ...] = ()
    scale_in: bool = True
    join: tuple[str, ...] | None = None
    data_dir: str | None = None
    """Where the role keeps its data; the node's data volume is mounted there (see planner)."""
    configuration: RoleConfiguration | None = None
    """The spec ``configuration`` the role understands; templates see it as ``settings``."""

    @field_validator("readiness")
    @classmethod
    def _ports_known(cls, check: Readiness | None, info: ValidationInfo) -> Readiness | None:
        ports = info.data.get("ports", {})
        named: list[str | int] = []
        if check is not None and check.tcp is not None:
            named.append(check.tcp)
        if check is not None and check.http is not None:
            named.append(check.http.port)
        for port in named:
            if isinstance(port, str) and port not in ports:
                raise ValueError(f"readiness uses port {port!r}, which is not in ports")
        return check

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/") or value == "/":
            raise ValueError(f"data_dir {value!r} must be an absolute path other than /")
        if (
            posixpath.normpath(value) != value
            or value.startswith("//")
            or any(c.isspace() or c == ":" for c in value)
        ):
            raise ValueError(
                f"data_dir {value!r} must be a normalised path (no '..', '//', trailing '/', "
                "whitespace or ':')"
            )
        return value

    def template_sources(self) -> dict[str, str]:
        """Every template of the role by field path, to compile them all at load time."""
        sources = {f"config_files.{path}": body for path, body in self.config_files.items()}
        sources.update({f"command[{i}]": arg for i, arg in enumerate(self.command)})
        sources.update({f"env.{key}": value for key, value in self.env.items()})
        if self.readiness is not None and self.readiness.exec_ is not None:
            sources.update({f"readiness.exec[{i}]": a for i, a in enumerate(self.readiness.exec_)})
        for i, arg in enumerate(self.join or ()):
            sources[f"join[{i}]"] = arg
        return sources


@dataclass(frozen=True)
class Member:
    """One node as seen by templates: ``id`` is 1-based within one role."""

    name: str
    address: str
    id: int
    index: int
    group: str

    def as_context(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "id": self.id,
            "index": self.index,
            "group": self.group,
        }


@dataclass(frozen=True)
class Topology:
    """The cluster as templates see it: members and ports of every role."""

    cluster_name: str
    members: Mapping[str, tuple[Member, ...]]
    ports: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    state: Literal["new", "existing"] = "new"
    configuration: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per node name: the merged Serengeti ``configuration`` for that node."""
    secret: str = field(default="", repr=False)
    """Shared by every node of the cluster (an Erlang cookie); empty outside the executor."""

    def member(self, role: str, node: str) -> Member:
        for member in self.members.get(role, ()):
            if member.name == node:
                return member
        raise RoleError(f"node {node!r} is not a member of role {role!r}")


@dataclass(frozen=True)
class RenderedReadiness:
    """A readiness check with ports resolved to numbers and argv rendered."""

    kind: Literal["tcp", "exec", "http"]
    timeout: float
    period: float
    port: int | None = None
    argv: tuple[str, ...] = ()
    path: str | None = None


@dataclass(frozen=True)
class RenderedRole:
    """What the executor needs to run one role on one node."""

    role: str
    node: str
    files: dict[str, str]
    command: list[str]
    env: dict[str, str]
    readiness: RenderedReadiness | None
    join: list[str] | None = None


def template_environment() -> jinja2.Environment:
    """The one Jinja2 setup for role templates (also used to compile-check at load).

    Jinja2 is imported here, not with the module: the server imports the cluster machinery at
    start, and only a catalog load or a deployment renders templates (~1 MB resident)."""
    import jinja2

    return jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        # Block tags on their own line leave no blank line behind in config files.
        trim_blocks=True,
        lstrip_blocks=True,
    )


@functools.cache
def _environment() -> jinja2.Environment:
    return template_environment()


def _context(role: RoleDefinition, topology: Topology, me: Member) -> dict[str, Any]:
    roles = {
        name: {
            "members": [m.as_context() for m in members],
            "ports": dict(topology.ports.get(name, {})),
            "count": len(members),
        }
        for name, members in topology.members.items()
    }
    return {
        "settings": role_settings(role, topology.configuration.get(me.name, {})),
        "cluster": {
            "name": topology.cluster_name,
            "state": topology.state,
            "secret": topology.secret,
            "configuration": dict(topology.configuration.get(me.name, {})),
        },
        "node": me.as_context(),
        "role": {"name": role.name, "ports": dict(role.ports)},
        "ports": dict(role.ports),
        "roles": roles,
    }


def role_settings(role: RoleDefinition, configuration: Mapping[str, Any]) -> dict[str, Any]:
    """The role's settings for templates: each file's keys, the spec's value or the default."""
    spec = role.configuration
    if spec is None:
        return {}
    given = configuration.get(spec.section)
    given = given if isinstance(given, Mapping) else {}
    out: dict[str, Any] = {}
    for file, keys in spec.files.items():
        values = given.get(file)
        values = values if isinstance(values, Mapping) else {}
        if "*" in keys:
            out[file] = {str(k): v for k, v in values.items()}
            continue
        settings: dict[str, Any] = {}
        for key, schema in keys.items():
            value = values.get(key, schema.default)
            if schema.type == "int" and isinstance(value, str):
                value = int(value.strip())
            settings[key] = value
        out[file] = settings
    return out


def _render(source: str, where: str, role: str, context: Mapping[str, Any]) -> str:
    import jinja2

    try:
        return _environment().from_string(source).render(context)
    except jinja2.TemplateError as exc:
        raise RoleError(f"role {role}: {where}: {exc}") from None


def _port(role: RoleDefinition, port: str | int) -> int:
    return port if isinstance(port, int) else role.ports[port]


def render_role(role: RoleDefinition, topology: Topology, node: str) -> RenderedRole:
    """Render `role`'s files, command, env, readiness and join command for `node`.

    `node` must be a member of the role in `topology`; raises RoleError
    otherwise or when a template fails (unknown variable, bad expression).
    """
    me = topology.member(role.name, node)
    ctx = _context(role, topology, me)

    def render(source: str, where: str) -> str:
        return _render(source, where, role.name, ctx)

    files = {path: render(body, f"config_files.{path}") for path, body in role.config_files.items()}
    command = [render(arg, f"command[{i}]") for i, arg in enumerate(role.command)]
    env = {key: render(value, f"env.{key}") for key, value in role.env.items()}
    readiness: RenderedReadiness | None = None
    check = role.readiness
    if check is not None:
        if check.tcp is not None:
            readiness = RenderedReadiness(
                "tcp", check.timeout, check.period, port=_port(role, check.tcp)
            )
        elif check.http is not None:
            readiness = RenderedReadiness(
                "http",
                check.timeout,
                check.period,
                port=_port(role, check.http.port),
                path=check.http.path,
            )
        elif check.exec_ is not None:
            argv = tuple(render(a, f"readiness.exec[{i}]") for i, a in enumerate(check.exec_))
            readiness = RenderedReadiness("exec", check.timeout, check.period, argv=argv)
    join = None
    if role.join is not None:
        join = [render(arg, f"join[{i}]") for i, arg in enumerate(role.join)]
    return RenderedRole(role.name, node, files, command, env, readiness, join)


def missing_binaries(role: RoleDefinition, available: Callable[[str], bool]) -> list[str]:
    """The role's required binaries for which ``available(path)`` is false, in order."""
    return [binary for binary in role.requires.binaries if not available(binary)]
