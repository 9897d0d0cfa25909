"""The agent's reading of the server<->agent contract, without pydantic (``agent/v1``).

`cellplane.wire.agent` defines the contract as pydantic models, which the server uses. In the
agent, pydantic and the models cost ~10 MB resident (pydantic-core 3.8 MB, the schemas 6.3 MB),
which the footprint target counts; so it uses these frozen dataclasses: the same names, fields,
defaults and checks (the version, the CSR, a bare network name), read by one small validator
following pydantic's lax mode for the protocol's JSON types (a number in a string, a whole float
or a bool for an int). `tests/unit/wire/test_wire_agent_plain.py` keeps the two identical,
field by field, and parses the same messages through both.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeVar, Union, get_args, get_origin

__all__ = [
    "API_VERSION",
    "MODELS",
    "VOLUME_SHA_HEADER",
    "Assignments",
    "CellAssignment",
    "CellEventReport",
    "CellReport",
    "EngineHealthReport",
    "EngineItem",
    "FenceReport",
    "HealthCheck",
    "HealthProbe",
    "HealthReport",
    "Heartbeat",
    "HostCapacity",
    "ImageRef",
    "M",
    "MountAssignment",
    "NetworkDescription",
    "Overlay",
    "OverlayNetwork",
    "PeerCell",
    "PortAssignment",
    "ProtocolError",
    "RegisterAnswer",
    "RegisterRequest",
    "RestartPolicy",
    "StatusReport",
    "VolumeAssignment",
    "VolumeRemoved",
    "dump",
    "parse",
    "report_item",
]

API_VERSION: Final = "agent/v1"
# The agent endpoint's volume archive (``/volumes/{name}/archive``): its sha256, hex.
VOLUME_SHA_HEADER: Final = "X-Cellplane-SHA256"


class ProtocolError(ValueError):
    """A message that is not valid ``agent/v1``: ``problems`` names each field and why."""

    def __init__(self, model: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(f"{model}: " + "; ".join(f"{f}: {m}" for f, m in problems))

    @property
    def version_mismatch(self) -> bool:
        return any(f == "api_version" for f, _ in self.problems)


class _Bad(Exception):
    def __init__(self, path: tuple[Any, ...], message: str) -> None:
        self.path = path
        self.message = message


def _version(v: Any) -> Any:
    if v != API_VERSION:
        sent = (
            "no api_version (an agent older than the versioned protocol)" if v is None else repr(v)
        )
        raise ValueError(
            f"this server speaks {API_VERSION}, the peer sent {sent}: "
            "run an agent and a server of the same release"
        )
    return v


# --- the messages (as wire.agent; see that module for what each field means) ----------------


@dataclass(frozen=True)
class HostCapacity:
    cpu: float
    memory_mb: int
    disk_gb: int
    cores: int | None = None
    cpu_ratio: float | None = None


@dataclass(frozen=True)
class EngineHealthReport:
    state: str = "UP"
    message: str | None = None
    since: str | None = None
    restarts: int = 0


@dataclass(frozen=True)
class RegisterRequest:
    api_version: str | None = None
    join_token: str = ""
    name: str = ""
    address: str | None = None
    capacity: HostCapacity | None = None
    labels: dict[str, str] = field(default_factory=dict)
    zone: str | None = None
    agent_url: str | None = None
    agent_secret: str | None = None
    engine: EngineHealthReport | None = None
    csr: str | None = None
    isolation: list[str] | None = None
    isolation_detail: str | None = None

    @staticmethod
    def _csr(v: Any) -> Any:
        if v is not None and not isinstance(v, str):
            raise ValueError("must be a PEM certificate signing request")
        return v

    _before: ClassVar[dict[str, Any]] = {"csr": _csr}
    _after: ClassVar[dict[str, Any]] = {"api_version": _version}


@dataclass(frozen=True)
class RegisterAnswer:
    host_id: str
    host_token: str
    api_version: str | None = None
    certificate: str | None = None
    certificate_chain: str | None = None

    _after: ClassVar[dict[str, Any]] = {"api_version": _version}


@dataclass(frozen=True)
class Heartbeat:
    api_version: str | None = None

    _after: ClassVar[dict[str, Any]] = {"api_version": _version}


@dataclass(frozen=True)
class NetworkDescription:
    name: str
    subnet: str | None = None
    driver: str = "bridge"
    vni: int | None = None
    address: str | None = None


@dataclass(frozen=True)
class ImageRef:
    id: str
    kind: str
    engine_ref: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class PortAssignment:
    container_port: int
    host_port: int | None = None
    protocol: str = "tcp"


@dataclass(frozen=True)
class MountAssignment:
    path: str
    read_only: bool = False
    volume_id: str = ""
    engine_name: str = ""
    host_path: str | None = None
    host_root: str | None = None


@dataclass(frozen=True)
class RestartPolicy:
    policy: str = "never"
    max_retries: int | None = None


@dataclass(frozen=True)
class HealthCheck:
    command: list[str]
    shell: bool = False
    interval_s: float = 30.0
    timeout_s: float = 30.0
    retries: int = 3
    start_period_s: float = 0.0


@dataclass(frozen=True)
class CellAssignment:
    cell_id: str
    name: str
    project_id: str
    network: NetworkDescription
    image: ImageRef
    cpu: float
    memory_mb: int
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    read_only: bool = False
    pids_limit: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[PortAssignment] = field(default_factory=list)
    mounts: list[MountAssignment] = field(default_factory=list)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    isolation: str = "standard"
    stop_timeout: float | None = None
    desired_state: str = "RUNNING"
    restarts: int = 0
    restart_requested_at: str | None = None
    ended_at: str | None = None
    generation: int = 1
    extra_networks: list[NetworkDescription] = field(default_factory=list)
    pending_volumes: list[str] = field(default_factory=list)  # not on this host yet: no create
    healthcheck: HealthCheck | None = None

    @staticmethod
    def _network(v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    _before: ClassVar[dict[str, Any]] = {"network": _network}


@dataclass(frozen=True)
class VolumeAssignment:
    volume_id: str
    engine_name: str
    state: str


@dataclass(frozen=True)
class Assignments:
    revision: int
    api_version: str | None = API_VERSION
    full: bool = False
    cells: list[CellAssignment] = field(default_factory=list)
    volumes: list[VolumeAssignment] = field(default_factory=list)

    _after: ClassVar[dict[str, Any]] = {"api_version": _version}


@dataclass(frozen=True)
class CellEventReport:
    at: str | None = None
    type: str = "event"
    message: str = ""


@dataclass(frozen=True)
class HealthProbe:
    start: str
    end: str
    exit_code: int
    output: str = ""


@dataclass(frozen=True)
class HealthReport:
    status: str
    failing_streak: int = 0
    log: list[HealthProbe] = field(default_factory=list)


@dataclass(frozen=True)
class CellReport:
    cell_id: str
    state: str | None = None
    message: str | None = None
    container_id: str | None = None
    address: str | None = None
    exit_code: int | None = None
    restarts: int | None = None
    ended: bool = False
    removed: bool = False
    events: list[CellEventReport] = field(default_factory=list)
    generation: int | None = None
    addresses: dict[str, str] | None = None
    health: HealthReport | None = None
    ports: list[PortAssignment] | None = None  # the host ports the engine picked, while it runs


@dataclass(frozen=True)
class FenceReport:
    fenced: int


@dataclass(frozen=True)
class VolumeRemoved:
    volume_removed: str


@dataclass(frozen=True)
class EngineItem:
    engine: EngineHealthReport


@dataclass(frozen=True)
class StatusReport:
    api_version: str | None = None
    cells: list[CellReport | VolumeRemoved | EngineItem | FenceReport] = field(default_factory=list)

    _after: ClassVar[dict[str, Any]] = {"api_version": _version}


@dataclass(frozen=True)
class PeerCell:
    cell_id: str
    name: str
    address: str
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OverlayNetwork:
    name: str
    vni: int
    subnet: str
    peers: list[str] = field(default_factory=list)
    cells: list[PeerCell] = field(default_factory=list)


@dataclass(frozen=True)
class Overlay:
    api_version: str | None = API_VERSION
    networks: list[OverlayNetwork] = field(default_factory=list)

    _after: ClassVar[dict[str, Any]] = {"api_version": _version}


#: Every message, by name (the parity test walks them): the dataclasses defined above.
MODELS: Final[dict[str, type[Any]]] = {
    name: obj
    for name, obj in list(globals().items())
    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == __name__
}

# --- reading ----------------------------------------------------------------------------------

M = TypeVar("M")


def _item_kind(v: Any) -> str:
    if isinstance(v, Mapping):
        if "fenced" in v:
            return "fence"
        return "volume" if "volume_removed" in v else "engine" if "engine" in v else "cell"
    if isinstance(v, VolumeRemoved):
        return "volume"
    if isinstance(v, FenceReport):
        return "fence"
    return "engine" if isinstance(v, EngineItem) else "cell"


_ITEMS: Final[dict[str, type[Any]]] = {
    "cell": CellReport,
    "volume": VolumeRemoved,
    "engine": EngineItem,
    "fence": FenceReport,
}


# A field's path is built only for an error: (parent path, key) pairs, rendered "a.0.b".
_Path = tuple[Any, ...]
_ROOT: _Path = ()


def _join(path: _Path, key: object) -> _Path:
    return (path, key)


def _render(path: _Path) -> str:
    keys: list[str] = []
    while path:
        path, key = path
        keys.append(str(key))
    return ".".join(reversed(keys))


def _int(value: Any, path: _Path) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise _Bad(path, "Input should be a valid integer, got a number with a fractional part")
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _Bad(path, "Input should be a valid integer")


def _float(value: Any, path: _Path) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _Bad(path, "Input should be a valid number")


_Convert = Callable[[Any, _Path], Any]
_CONVERTERS: dict[Any, _Convert] = {}


def _str(value: Any, path: _Path) -> str:
    if not isinstance(value, str):
        raise _Bad(path, "Input should be a valid string")
    return value


def _bool(value: Any, path: _Path) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise _Bad(path, "Input should be a valid boolean")


def _converter(tp: Any) -> _Convert:
    """A function (value, path) -> value checked and converted as ``tp`` (made once per type)."""
    found = _CONVERTERS.get(tp)
    if found is None:
        found = _CONVERTERS[tp] = _make_converter(tp)
    return found


def _make_converter(tp: Any) -> _Convert:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        nullable = type(None) in args
        rest = [a for a in args if a is not type(None)]
        if set(rest) == set(_ITEMS.values()):  # a report item: by its shape
            items = {kind: _converter(cls) for kind, cls in _ITEMS.items()}

            def item(value: Any, path: _Path) -> Any:
                return items[_item_kind(value)](value, path)

            inner: _Convert = item
        elif len(rest) == 1:
            inner = _converter(rest[0])
        else:  # pragma: no cover - a definition error
            raise TypeError(f"unsupported union {tp!r}")
        if not nullable:
            return inner

        def optional(value: Any, path: _Path) -> Any:
            return None if value is None else inner(value, path)

        return optional
    if origin is list:
        (item_t,) = get_args(tp)
        each = _converter(item_t)

        def as_list(value: Any, path: _Path) -> Any:
            if not isinstance(value, list | tuple):
                raise _Bad(path, "Input should be a valid list")
            return [each(v, _join(path, i)) for i, v in enumerate(value)]

        return as_list
    if origin is dict:
        key_c, val_c = (_converter(a) for a in get_args(tp))

        def as_dict(value: Any, path: _Path) -> Any:
            if not isinstance(value, Mapping):
                raise _Bad(path, "Input should be a valid dictionary")
            return {key_c(k, _join(path, k)): val_c(v, _join(path, k)) for k, v in value.items()}

        return as_dict
    simple: dict[Any, _Convert] = {str: _str, bool: _bool, int: _int, float: _float}
    if tp in simple:
        return simple[tp]
    if tp is Any:
        return lambda value, path: value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _model_converter(tp)
    raise TypeError(f"unsupported type {tp!r}")  # pragma: no cover - a definition error


def _model_converter(cls: type[Any]) -> _Convert:
    before: dict[str, Any] = getattr(cls, "_before", {})
    after: dict[str, Any] = getattr(cls, "_after", {})
    hints = typing.get_type_hints(cls, globals())
    plan: list[tuple[str, bool, Any, Any, _Convert | None]] = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        plan.append((f.name, required, before.get(f.name), after.get(f.name), None))
    converters: dict[str, _Convert] = {}

    def convert(data: Any, path: _Path) -> Any:
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise _Bad(path, f"Input should be a valid dictionary or instance of {cls.__name__}")
        values: dict[str, Any] = {}
        bad: list[_Bad] = []
        for name, required, pre, post, _ in plan:
            if name not in data:
                if required:
                    bad.append(_Bad(_join(path, name), "Field required"))
                continue
            where = _join(path, name)
            try:
                raw = data[name] if pre is None else pre(data[name])
                c = converters.get(name)
                if c is None:  # resolved on first use: the models refer to each other
                    c = converters[name] = _converter(hints[name])
                value = c(raw, where)
                values[name] = value if post is None else post(value)
            except ValueError as e:
                bad.append(_Bad(where, str(e)))
            except _Bad as e:
                bad.append(e)
            except _Many as e:
                bad.extend(e.bad)
        if bad:
            raise _Many(bad)
        return cls(**values)

    return convert


def _model(cls: type[M], data: Any, path: _Path) -> M:
    result: M = _converter(cls)(data, path)
    return result


class _Many(Exception):
    def __init__(self, bad: list[_Bad]) -> None:
        self.bad = bad


def parse(model: type[M], data: Any) -> M:
    """``data`` as ``model``, or ProtocolError naming the fields that are wrong."""
    try:
        return _model(model, data, _ROOT)
    except _Bad as e:
        raise ProtocolError(model.__name__, [(_render(e.path) or "body", e.message)]) from None
    except _Many as e:
        problems = [(_render(b.path) or "body", b.message) for b in e.bad]
        raise ProtocolError(model.__name__, problems) from None


def report_item(data: Any) -> CellReport | VolumeRemoved | EngineItem | FenceReport:
    """One status report item, by its shape."""
    if isinstance(data, CellReport | VolumeRemoved | EngineItem | FenceReport):
        return data
    result: CellReport | VolumeRemoved | EngineItem | FenceReport = parse(
        _ITEMS[_item_kind(data)], data
    )
    return result


def dump(obj: Any, *, exclude_none: bool = False) -> Any:
    """A message as JSON-ready data (``exclude_none``: without the fields that are None)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if v is None and exclude_none:
                continue
            out[f.name] = dump(v, exclude_none=exclude_none)
        return out
    if isinstance(obj, list | tuple):
        return [dump(v, exclude_none=exclude_none) for v in obj]
    if isinstance(obj, dict):
        return {k: dump(v, exclude_none=exclude_none) for k, v in obj.items()}
    return obj
