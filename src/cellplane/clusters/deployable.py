"""Which distros of the catalog can be deployed on a host image, and why the others cannot.

Pure: whether a path exists comes in as ``available``. Used by the catalog view
(``GET /v1/catalog/distros``, ``cellplane cluster distros``) and by the refusal of a cluster whose
roles lack binaries, which names the distros that do work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cellplane.clusters.catalog import Catalog, Distro, DistroPackage
from cellplane.clusters.configuration import undeployable_reason
from cellplane.clusters.roles import missing_binaries

__all__ = ["DistroStatus", "deployable_distros", "distro_status", "install_hint"]


@dataclass(frozen=True)
class DistroStatus:
    name: str
    deployable: bool
    # One line per role that cannot run: what it needs and how to get it.
    reasons: tuple[str, ...]


def _packages_for(catalog: Catalog, distro: Distro | None, role: str) -> Sequence[DistroPackage]:
    own = [p for p in distro.packages if role in p.roles] if distro is not None else []
    if any(p.debian_packages or p.python_packages for p in own):
        return own
    # A role shared by distros (mesos ships zookeeper too): another distro may package it.
    others = [
        p
        for d in catalog.distros.values()
        for p in d.packages
        if role in p.roles and p.debian_packages
    ]
    return others[:1] or own


def install_hint(catalog: Catalog, distro: Distro | None, role: str) -> str:
    """How to get a role's binaries: the Debian packages (of `distro`'s package for the role,
    else of any distro's), or where they would come from."""
    packages = _packages_for(catalog, distro, role)
    debs = list(dict.fromkeys(d for p in packages for d in p.debian_packages))
    pips = [
        f"pip install --target {p.python_target} {' '.join(p.python_packages)}"
        for p in packages
        if p.python_packages
    ]
    if debs or pips:
        names = " ".join(debs)
        steps = ([f"apt-get install {names}"] if debs else []) + pips
        what = " ".join([*debs, *(r for p in packages for r in p.python_packages)])
        return f"install {what} ({'; '.join(steps)}) or run `make up`"
    sources = [p.tarball or ", ".join(p.package_repos or ()) for p in packages]
    where = "; ".join(s for s in sources if s)
    return "not packaged in Debian" + (
        f" (the distro ships it as {where}, which Cellplane does not fetch)" if where else ""
    )


def distro_status(catalog: Catalog, name: str, available: Callable[[str], bool]) -> DistroStatus:
    """Whether every role of the distro `name` has its binaries on the image; why not."""
    distro = catalog.distros[name]
    reasons: list[str] = []
    roles = list(dict.fromkeys(r for p in distro.packages for r in p.roles))
    for role in roles:
        definition = catalog.roles.get(role)
        if definition is None:
            why = undeployable_reason(role) or "it has no definition in the catalog"
            reasons.append(f"role {role}: {why}")
            continue
        missing = missing_binaries(definition, available)
        if missing:
            reasons.append(
                f"role {role} needs {', '.join(missing)}: {install_hint(catalog, distro, role)}"
            )
    return DistroStatus(name=name, deployable=not reasons, reasons=tuple(reasons))


def deployable_distros(catalog: Catalog, available: Callable[[str], bool]) -> list[str]:
    """The names of the distros that can be deployed here, sorted."""
    return sorted(n for n in catalog.distros if distro_status(catalog, n, available).deployable)
