"""The cluster catalog: Serengeti's specs map, distro manifest, spec files and roles.

The clusters service loads one :class:`Catalog` at start-up from
:func:`default_catalog_paths` and asks it which spec a distro deploys
(:meth:`Catalog.find_spec`) and how each role runs (``catalog.roles``).
A catalog folder looks like Serengeti's ``/opt/serengeti/www``::

    specs/map                 [{vendor, version (regex), type, appManager, path}]
    specs/<path>              cluster specs named by the map, either JSON form
    distros/manifest          [{name, vendor, version, packages[{roles, tarball | package_repos, debian_packages?,
                              python_packages? + python_target?}]}]
    roles/<role>.yaml         one role definition per file (see cellplane.clusters.roles)

``specs/map`` and ``distros/manifest`` are read under Serengeti's names (no extension) or
with ``.json`` (one of the two per folder). Every file is read as Serengeti read JSON
(:mod:`cellplane.clusters.jsonc`: comments, bare words, a stray closing brace); unreadable,
non-UTF-8 or too deeply nested content is a :class:`CatalogError` naming the file, never
a traceback.

Every part is optional in a folder. Operators add folders (``CELLPLANE_CATALOG_PATH``)
without code; a later folder replaces a distro or role of the same name and a
map entry of the same (vendor, type). Every error names the file and field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cellplane.clusters import jsonc
from cellplane.clusters.errors import CatalogError, SpecError
from cellplane.clusters.roles import RoleDefinition, template_environment
from cellplane.clusters.spec import load_spec_file
from cellplane.clusters.spec_model import ClusterSpec

__all__ = [
    "CATALOG_PATH_ENV",
    "Catalog",
    "CatalogSpec",
    "Distro",
    "DistroPackage",
    "SpecMapEntry",
    "default_catalog_paths",
]

CATALOG_PATH_ENV = "CELLPLANE_CATALOG_PATH"

_ENTRY_CONFIG = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class SpecMapEntry(BaseModel):
    """One entry of Serengeti's ``specs/map`` file."""

    model_config = _ENTRY_CONFIG

    vendor: str
    version: str
    type: str
    app_manager: str = Field(default="Default", alias="appManager")
    path: str

    @field_validator("version")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    def matches(self, vendor: str, version: str) -> bool:
        """Serengeti matches vendors case-insensitively and the version regex from the start."""
        return self.vendor.lower() == vendor.lower() and re.match(self.version, version) is not None


class DistroPackage(BaseModel):
    """``packages[]`` of a distro: the roles it covers and where they come from."""

    model_config = _ENTRY_CONFIG

    roles: tuple[str, ...] = Field(min_length=1)
    tarball: str | None = None
    package_repos: tuple[str, ...] | None = None
    # The Debian packages that put these roles' binaries on the host image (what
    # scripts/install-system.sh installs, and what `cluster distros` tells to install).
    debian_packages: tuple[str, ...] = ()
    # Python packages (pip requirements) that bring software Debian lacks (pyspark's Spark),
    # installed by scripts/install-system.sh with `pip install --target <python_target>`, a
    # folder of their own outside Cellplane's venv.
    python_packages: tuple[str, ...] = ()
    python_target: str | None = None

    @field_validator("python_target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or value.rstrip("/") == ""):
            raise ValueError(f"must be an absolute folder other than /, not {value!r}")
        return value

    @field_validator("package_repos")
    @classmethod
    def _repos(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _source(self) -> DistroPackage:
        if self.tarball is None and self.package_repos is None:
            raise ValueError("needs tarball or package_repos")
        if bool(self.python_packages) != (self.python_target is not None):
            raise ValueError("python_packages and python_target go together")
        return self


class Distro(BaseModel):
    """One entry of Serengeti's ``distros/manifest`` file."""

    model_config = _ENTRY_CONFIG

    name: str
    vendor: str
    version: str
    packages: tuple[DistroPackage, ...] = Field(min_length=1)

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(role for package in self.packages for role in package.roles)


@dataclass(frozen=True)
class CatalogSpec:
    """A specs-map entry with its spec file already parsed."""

    entry: SpecMapEntry
    spec: ClusterSpec
    source: Path


def _repo_catalog() -> Path:
    # src/cellplane/clusters/catalog.py -> the repository's top-level catalog/.
    return Path(__file__).resolve().parents[3] / "catalog"


def default_catalog_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The shipped catalog folder, then operator folders from ``CELLPLANE_CATALOG_PATH``.

    This is the one place that knows where the shipped catalog lives, so that
    moving it into package data later changes only this function.
    """
    env = os.environ if environ is None else environ
    paths = [_repo_catalog()]
    extra = env.get(CATALOG_PATH_ENV, "")
    paths.extend(Path(p) for p in extra.split(os.pathsep) if p)
    return paths


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else item)
    return out


def _read_json_list(path: Path) -> list[Any]:
    try:
        data = jsonc.load_file(path)
    except jsonc.JsoncError as exc:
        raise CatalogError(str(path), str(exc)) from None
    if not isinstance(data, list):
        raise CatalogError(str(path), "must be a JSON list of entries")
    return data


def _catalog_file(root: Path, folder: str, name: str) -> Path | None:
    """Serengeti's ``<folder>/<name>`` (no extension) or ``<folder>/<name>.json``; not both."""
    bare, dotted = root / folder / name, root / folder / f"{name}.json"
    if bare.is_file() and dotted.is_file():
        raise CatalogError(
            str(bare), f"both {folder}/{name} and {folder}/{name}.json exist; keep one"
        )
    if bare.is_file():
        return bare
    return dotted if dotted.is_file() else None


_M = TypeVar("_M", bound=BaseModel)


def _validate_entries(path: Path, model: type[_M], items: list[Any]) -> list[_M]:
    result: list[_M] = []
    for i, item in enumerate(items):
        try:
            result.append(model.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = _loc([i, *err["loc"]])
            message = str((err.get("ctx") or {}).get("error", err["msg"]))
            raise CatalogError(str(path), message, field=field) from None
    return result


def _load_role(path: Path) -> RoleDefinition:
    import yaml  # here, not with the module: only a catalog load parses YAML (~0.5 MB resident)

    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CatalogError(str(path), f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(str(path), f"not UTF-8 text (byte at offset {exc.start})") from None
    except yaml.YAMLError as exc:
        raise CatalogError(str(path), f"invalid YAML: {exc}") from None
    except RecursionError:
        raise CatalogError(str(path), "nested too deeply") from None
    if not isinstance(data, dict):
        raise CatalogError(str(path), "a role definition must be a YAML mapping")
    try:
        role = RoleDefinition.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        message = str((err.get("ctx") or {}).get("error", err["msg"]))
        raise CatalogError(str(path), message, field=_loc(err["loc"]) or None) from None
    if role.name != path.stem:
        raise CatalogError(str(path), f"must match the file name {path.stem!r}", field="name")
    env = template_environment()
    for where, source in role.template_sources().items():
        try:
            env.parse(source)
        except Exception as exc:  # jinja2.TemplateSyntaxError and friends
            raise CatalogError(str(path), f"bad template: {exc}", field=where) from None
    return role


@dataclass(frozen=True)
class Catalog:
    """Everything Cellplane knows how to deploy, merged from one or more folders."""

    specs: tuple[CatalogSpec, ...]
    distros: Mapping[str, Distro]
    roles: Mapping[str, RoleDefinition]

    @classmethod
    def load(cls, paths: Sequence[Path]) -> Catalog:
        """Load and merge catalog folders in order; later folders win on name clashes."""
        specs: dict[tuple[str, str], CatalogSpec] = {}
        distros: dict[str, Distro] = {}
        roles: dict[str, RoleDefinition] = {}
        for root in paths:
            if not root.is_dir():
                raise CatalogError(str(root), "catalog folder does not exist")
            map_file = _catalog_file(root, "specs", "map")
            if map_file is not None:
                items = _read_json_list(map_file)
                for i, entry in enumerate(_validate_entries(map_file, SpecMapEntry, items)):
                    spec_path = map_file.parent / entry.path
                    try:
                        spec = load_spec_file(spec_path)
                    except SpecError as exc:
                        raise CatalogError(str(map_file), str(exc), field=f"[{i}].path") from None
                    key = (entry.vendor.lower(), entry.type)
                    specs.pop(key, None)  # a replaced entry moves to the end, as if appended
                    specs[key] = CatalogSpec(entry, spec, spec_path)
            manifest = _catalog_file(root, "distros", "manifest")
            if manifest is not None:
                for distro in _validate_entries(manifest, Distro, _read_json_list(manifest)):
                    distros[distro.name] = distro
            role_dir = root / "roles"
            if role_dir.is_dir():
                for role_file in sorted(role_dir.glob("*.yaml")):
                    role = _load_role(role_file)
                    roles[role.name] = role
        return cls(tuple(specs.values()), distros, roles)

    def find_spec(self, distro: str, type: str | None = None) -> ClusterSpec:
        """The cluster spec the specs map gives for `distro` (by name), optionally by type.

        With several matches and no `type`, the first map entry wins, as in Serengeti.
        """
        found = self.find_spec_entry(distro, type)
        return found.spec

    def find_spec_entry(self, distro: str, type: str | None = None) -> CatalogSpec:
        """Like :meth:`find_spec` but also returns the map entry and the spec file."""
        if distro not in self.distros:
            known = ", ".join(sorted(self.distros)) or "none"
            raise CatalogError("distros/manifest.json", f"no distro named {distro!r} ({known})")
        d = self.distros[distro]
        candidates = [s for s in self.specs if s.entry.matches(d.vendor, d.version)]
        if type is not None:
            candidates = [s for s in candidates if s.entry.type == type]
        if not candidates:
            wanted = f" of type {type!r}" if type else ""
            raise CatalogError(
                "specs/map.json",
                f"no spec{wanted} for distro {distro!r} (vendor {d.vendor}, version {d.version})",
            )
        return candidates[0]
