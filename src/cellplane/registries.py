"""The container registries an operator lets Cellplane use (`CELLPLANE_REGISTRIES`), pure.

The setting is a comma-separated list of registries, each `HOST[:PORT]` with options after `;`:

    CELLPLANE_REGISTRIES="127.0.0.1:5000;insecure, registry.example.com;auth=/etc/cp/reg.auth"

- `insecure`: plain HTTP, or HTTPS without checking the certificate (podman's `--tls-verify=false`);
  without it the registry must present a certificate the hosts trust.
- `auth=FILE`: a file holding `USER:PASSWORD` (one line), sent to the registry when the client
  sends no credentials of its own (`docker login`'s `X-Registry-Auth`). The file is read when it
  is used, so the password never sits in the environment or the database.

Only these registries are pulled from or pushed to (`docker pull/push` on an endpoint); any other
reference is refused naming it. Docker Hub's short names (`busybox`, `me/app`) name no listed
registry: they are refused too, naming the list.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "DIGEST",
    "REPOSITORY",
    "Registry",
    "RegistryError",
    "auth_header",
    "parse_registries",
    "registry_host",
    "split_digest",
    "split_reference",
]

_HOST: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(?::[0-9]{1,5})?")
#: A repository path below a registry (Docker's grammar, lower case): `team/app`.
_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY: Final = re.compile(rf"{_PART}(?:/{_PART})*")
_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
#: An image's content digest in a registry (its manifest's): the only algorithm registries use.
DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")


class RegistryError(ValueError):
    """A registry setting or a reference that cannot be used; the message names it."""


@dataclass(frozen=True)
class Registry:
    host: str  # `HOST[:PORT]`, as references name it
    insecure: bool = False
    auth_file: Path | None = None

    def credentials(self) -> tuple[str, str] | None:
        """(user, password) from the auth file, or None without one; RegistryError when the
        file cannot be read or is not `USER:PASSWORD`."""
        if self.auth_file is None:
            return None
        try:
            text = self.auth_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise RegistryError(
                f"registry {self.host}: its auth file {self.auth_file} cannot be read ({exc})"
            ) from exc
        user, sep, password = text.partition(":")
        if not sep or not user or "\n" in text:
            raise RegistryError(
                f"registry {self.host}: its auth file {self.auth_file} must hold one line "
                "USER:PASSWORD"
            )
        return user, password


def parse_registries(text: str) -> tuple[Registry, ...]:
    """The setting's registries, in order; RegistryError naming a bad entry or option."""
    out: list[Registry] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, *options = (part.strip() for part in entry.split(";"))
        if not _HOST.fullmatch(host) or registry_host(f"{host}/x") != host:
            raise RegistryError(
                f"registry {host!r}: not a registry host (HOST or HOST:PORT, e.g. "
                "127.0.0.1:5000 or registry.example.com)"
            )
        if any(r.host == host for r in out):
            raise RegistryError(f"registry {host!r} is listed twice")
        insecure, auth = False, None
        for option in options:
            key, sep, value = option.partition("=")
            if key == "insecure" and not sep:
                insecure = True
            elif key == "auth" and sep and value.startswith("/"):
                auth = Path(value)
            else:
                raise RegistryError(
                    f"registry {host!r}: unknown option {option!r} (options: insecure, "
                    "auth=/absolute/path/to/USER:PASSWORD-file)"
                )
        out.append(Registry(host=host, insecure=insecure, auth_file=auth))
    return tuple(out)


def registry_host(reference: str) -> str | None:
    """The registry a reference names (`127.0.0.1:5000/app:1` -> `127.0.0.1:5000`), or None
    for Docker Hub's names (`busybox`, `me/app`, `docker.io/library/busybox`), as Docker reads
    them: the first path part is a registry when it has a `.` or a `:`, or is `localhost`."""
    first, sep, _ = reference.partition("/")
    if not sep:
        return None
    if first in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return None
    if "." in first or ":" in first or first == "localhost":
        return first
    return None


def split_reference(reference: str) -> tuple[str, str, str]:
    """`HOST/REPO[:TAG]` into (host, repository, tag), the tag `latest` when none is given;
    RegistryError naming what is wrong. A digest (`@sha256:`) is `split_digest`'s."""
    host = registry_host(reference)
    if host is None:
        raise RegistryError(f"{reference!r} names no registry")
    rest = reference[len(host) + 1 :]
    if "@" in rest:
        raise RegistryError(f"{reference!r}: a reference by digest names no tag")
    repo, sep, tag = rest.rpartition(":")
    if not sep or "/" in tag:
        repo, tag = rest, "latest"
    if not REPOSITORY.fullmatch(repo) or len(repo) > 255:
        raise RegistryError(
            f"{reference!r}: invalid repository {repo!r} (lower-case letters, digits, '._-' "
            "and '/' between parts)"
        )
    if not _TAG.fullmatch(tag):
        raise RegistryError(f"{reference!r}: invalid tag {tag!r}")
    return host, repo, tag


def split_digest(reference: str) -> tuple[str, str, str]:
    """`HOST/REPO[:TAG]@sha256:HEX` into (host, repository, digest), a tag beside the digest
    dropped as Docker drops it (the digest alone names the image); RegistryError naming what is
    wrong."""
    name, sep, digest = reference.partition("@")
    if not sep:
        raise RegistryError(f"{reference!r} names no digest (@sha256:...)")
    if not DIGEST.fullmatch(digest):
        raise RegistryError(
            f"{reference!r}: invalid digest {digest!r} (sha256: and 64 lower-case hex digits)"
        )
    host, repo, _ = split_reference(name)
    return host, repo, digest


def auth_header(user: str, password: str, server: str) -> str:
    """Docker's `X-Registry-Auth` value (base64url of the JSON auth config)."""
    doc = {"username": user, "password": password, "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
