"""Docker image references and archives for the endpoint's image routes. Pure: files given by path,
no state, no network.

Cellplane's catalogue names an image by one word (`busybox`, `app:1.2`): a Docker reference maps
to it by dropping Docker Hub's prefixes and a `:latest` tag (`docker.io/library/busybox:latest` is
`busybox`). An archive is a docker-archive tarball (`manifest.json`, the config, the layers), as
`docker save` writes and `docker load` reads; `retag` rewrites its RepoTags on the way out,
`from_rootfs` wraps a root filesystem tar (`docker import`) into one.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import posixpath
import re
import shutil
import tarfile
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import IO, Any

from cellplane.dockerapi.mapping import Refused
from cellplane.registries import RegistryError, registry_host, split_digest, split_reference
from cellplane.validation import IMAGE_NAME

__all__ = [
    "catalog_name",
    "combine",
    "digest_name",
    "docker_progress",
    "dockerfile_bases",
    "error_line",
    "file_digest",
    "from_rootfs",
    "image_config",
    "image_healthcheck",
    "json_line",
    "registry_name",
    "repo_digests",
    "repo_tag",
    "repo_tags",
    "retag",
    "split",
]

_HUB_PREFIXES = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")
_MAX_CONFIG_BYTES = 4 * 1024 * 1024


def registry_name(ref: str) -> str:
    """The catalogue's name for a reference into a registry: `HOST/REPO[:TAG]`, without
    `:latest` (as one-word names); Refused (400) naming what is wrong."""
    try:
        host, repo, tag = split_reference(ref.strip())
    except RegistryError as exc:
        raise Refused(400, f"invalid reference: {exc}") from exc
    name = f"{host}/{repo}" + ("" if tag == "latest" else f":{tag}")
    if len(name) > 128:
        raise Refused(400, f"invalid reference {ref!r}: longer than 128 characters")
    return name


def digest_name(ref: str) -> str:
    """The catalogue's name for a reference by digest into a registry, `HOST/REPO@sha256:HEX`
    (`docker pull` of one); Refused (400) naming what is wrong."""
    try:
        host, repo, digest = split_digest(ref.strip())
    except RegistryError as exc:
        raise Refused(400, f"invalid reference: {exc}") from exc
    name = f"{host}/{repo}@{digest}"
    if len(name) > 128:
        raise Refused(400, f"invalid reference {ref!r}: longer than 128 characters")
    return name


def repo_tags(names: Iterable[str]) -> list[str]:
    """`RepoTags` of an image with these catalogue names (a name by digest is none)."""
    return [repo_tag(n) for n in names if "@" not in n]


def repo_digests(names: Iterable[str]) -> list[str]:
    """`RepoDigests` of an image with these catalogue names (its names by digest)."""
    return [n for n in names if "@" in n]


def catalog_name(ref: str, registries: Collection[str] = ()) -> str:
    """The catalogue's name for a Docker reference; Refused (400) naming what cannot be one.
    A reference into one of `registries` (the operator's) keeps its registry and path."""
    name = ref.strip()
    if registries and registry_host(name) in registries:
        return registry_name(name)
    for prefix in _HUB_PREFIXES:
        name = name.removeprefix(prefix)
    name = name.removeprefix("library/")
    name = name.removesuffix(":latest")
    if "/" in name:
        raise Refused(
            400,
            f"invalid reference {ref!r}: Cellplane's image catalogue has one-word names "
            "(no registry or repository path); use e.g. 'app' or 'app:1.0', or a name in a "
            "registry the operator lists (" + (", ".join(registries) or "none") + ")",
        )
    if not name or not IMAGE_NAME.fullmatch(name) or name.endswith(":"):
        raise Refused(
            400,
            f"invalid reference {ref!r}: 1-128 letters, digits and '_.:@+-', starting with a "
            "letter or digit",
        )
    return name


def repo_tag(name: str) -> str:
    """The catalogue name as Docker shows it (`busybox` -> `busybox:latest`)."""
    return name if ":" in name else f"{name}:latest"


def _members(tf: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    return {m.name.removeprefix("./"): m for m in tf.getmembers()}


def _read(tf: tarfile.TarFile, info: tarfile.TarInfo) -> Any:
    if info.size > _MAX_CONFIG_BYTES:
        raise ValueError(f"{info.name} is larger than {_MAX_CONFIG_BYTES} bytes")
    f = tf.extractfile(info)
    if f is None:
        raise ValueError(f"{info.name} is not a file")
    return json.loads(f.read())


def image_config(path: Path) -> dict[str, Any]:
    """The image config (`config`, `created`, `history`, `rootfs`...) of a docker-archive or OCI
    archive already checked by the catalogue; {} when it cannot be read."""
    try:
        with tarfile.open(path) as tf:
            members = _members(tf)
            if "manifest.json" in members:
                manifest = _read(tf, members["manifest.json"])
                doc = _read(tf, members[str(manifest[0]["Config"]).removeprefix("./")])
            else:
                index = _read(tf, members["index.json"])
                algo, hexd = str(index["manifests"][0]["digest"]).split(":", 1)
                man = _read(tf, members[f"blobs/{algo}/{hexd}"])
                algo, hexd = str(man["config"]["digest"]).split(":", 1)
                doc = _read(tf, members[f"blobs/{algo}/{hexd}"])
    except (tarfile.TarError, OSError, KeyError, ValueError, TypeError, IndexError):
        return {}
    return doc if isinstance(doc, dict) else {}


def image_healthcheck(path: Path) -> dict[str, Any] | None:
    """The image's HEALTHCHECK (its config's `Healthcheck`, Docker's fields), None when it has
    none; read once per archive (by path, size and modification time)."""
    try:
        st = path.stat()
    except OSError:
        return None
    check = _healthcheck(str(path), st.st_size, st.st_mtime_ns)
    return dict(check) if check is not None else None


@functools.lru_cache(maxsize=256)
def _healthcheck(path: str, size: int, mtime_ns: int) -> dict[str, Any] | None:
    inner = image_config(Path(path)).get("config")
    check = inner.get("Healthcheck") if isinstance(inner, dict) else None
    return check if isinstance(check, dict) else None


def retag(src: Path, dest: Path, tags: list[str]) -> None:
    """Copy a docker-archive with its manifest's RepoTags replaced by `tags` (what `docker save
    NAME` gives: the archive loads back under the names asked for). An OCI archive is copied as
    it is."""
    with tarfile.open(src) as tf:
        if "manifest.json" not in _members(tf):
            shutil.copyfile(src, dest)
            return
    combine([(src, tags)], dest)


def combine(sources: list[tuple[Path, list[str]]], dest: Path) -> None:
    """One docker-archive holding the image of each source archive under its tags (`docker save
    A B`): the manifests' entries in order, each file once (layers and configs are named by
    their digests, so a layer two images share is written once). Every source must be a
    docker-archive (ValueError naming the one that is not)."""
    manifest: list[dict[str, Any]] = []
    written: set[str] = set()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
        for src, tags in sources:
            with tarfile.open(src) as tf:
                members = _members(tf)
                if "manifest.json" not in members:
                    raise ValueError(f"{src.name} is not a docker-archive (no manifest.json)")
                entries = _read(tf, members["manifest.json"])
                entries[0]["RepoTags"] = tags
                manifest += [entries[0], *[{**e, "RepoTags": []} for e in entries[1:]]]
                for info in tf:
                    name = info.name.removeprefix("./")
                    # `repositories` holds the old names; manifest.json is what loaders read.
                    if name in ("repositories", "manifest.json") or name in written:
                        continue
                    written.add(name)
                    out.addfile(info, tf.extractfile(info) if info.isfile() else None)
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        out.addfile(info, io.BytesIO(data))


def split(src: Path, dest_dir: Path) -> list[tuple[Path, list[str]]]:
    """The images of a docker-archive holding several (`docker save A B`), each written to an
    archive of its own in `dest_dir` (its config and layers, a layer linked to another's copied
    whole), with its RepoTags; [] for an archive of one image, or an OCI archive (kept whole).
    ValueError naming what an entry lacks."""
    with tarfile.open(src) as tf:
        members = _members(tf)
        if "manifest.json" not in members:
            return []
        manifest = _read(tf, members["manifest.json"])
        if not isinstance(manifest, list) or len(manifest) < 2:
            return []
        out: list[tuple[Path, list[str]]] = []
        try:
            for k, entry in enumerate(manifest):
                tags = [str(t) for t in entry.get("RepoTags") or []]
                if not tags:
                    raise ValueError(
                        f"image {k + 1} of the archive has no name (RepoTags): save it by name"
                    )
                dest = dest_dir / f"{src.name}.{k}"
                out.append((dest, tags))
                with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as part:
                    for name in [entry["Config"], *entry["Layers"]]:
                        if name not in members:
                            raise ValueError(f"image {k + 1} of the archive: {name} is missing")
                        _copy_as_file(tf, members, members[name], part)
                    data = json.dumps([entry]).encode()
                    info = tarfile.TarInfo("manifest.json")
                    info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                    part.addfile(info, io.BytesIO(data))
        except BaseException:
            for dest, _ in out:
                dest.unlink(missing_ok=True)
            raise
        return out


def _copy_as_file(
    tf: tarfile.TarFile,
    members: dict[str, tarfile.TarInfo],
    info: tarfile.TarInfo,
    out: tarfile.TarFile,
) -> None:
    """`info` into `out` as a regular file: a link's target's content under the link's name."""
    target = info
    for _ in range(8):  # a link to a link, at most this deep
        if target.isfile():
            break
        if not (target.issym() or target.islnk()):
            raise ValueError(f"{info.name} is not a file")
        base = posixpath.dirname(target.name) if target.issym() else ""
        linked = posixpath.normpath(posixpath.join(base, target.linkname)).removeprefix("./")
        if linked not in members:
            raise ValueError(f"{info.name} links to {target.linkname}, not in the archive")
        target = members[linked]
    if not target.isfile():
        raise ValueError(f"{info.name}: too many links")
    copy = tarfile.TarInfo(info.name.removeprefix("./"))
    copy.size, copy.mode, copy.mtime = target.size, 0o644, target.mtime
    out.addfile(copy, tf.extractfile(target))


def file_digest(f: IO[bytes]) -> str:
    """The sha256 (hex) of what `f` holds from where it is."""
    h = hashlib.sha256()
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def from_rootfs(rootfs: Path, dest: Path, tag: str, changes: dict[str, Any]) -> None:
    """A docker-archive with one layer, the root filesystem tar `rootfs` (plain or compressed),
    and a config holding `changes` (Cmd, Env, Entrypoint, WorkingDir...): `docker import`."""
    layer = dest.with_suffix(".layer")
    try:
        with tarfile.open(rootfs) as tf, tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as lt:
            for info in tf:  # decompressed, member by member (the caller checked them)
                lt.addfile(info, tf.extractfile(info) if info.isfile() else None)
        with layer.open("rb") as f:
            diff_id = file_digest(f)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": now,
            "config": changes,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
            "history": [{"created": now, "created_by": "docker import (cellplane)"}],
        }
        cfg = json.dumps(config, sort_keys=True).encode()
        cfg_name = f"{hashlib.sha256(cfg).hexdigest()}.json"
        manifest = json.dumps(
            [{"Config": cfg_name, "RepoTags": [tag], "Layers": [f"{diff_id}/layer.tar"]}]
        ).encode()
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
            for name, data in ((cfg_name, cfg), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                out.addfile(info, io.BytesIO(data))
            out.add(str(layer), arcname=f"{diff_id}/layer.tar")
    finally:
        layer.unlink(missing_ok=True)


_ARG_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _logical_lines(text: str) -> Iterable[str]:
    """The Dockerfile's instructions: comments dropped, `\\` continuations joined."""
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        yield current + line
        current = ""
    if current:
        yield current


def dockerfile_bases(text: str, buildargs: dict[str, str]) -> list[str]:
    """The images a Dockerfile starts from (FROM), in order, without `scratch` and without its
    own stages (`FROM build AS x` ... `FROM x`); ARGs before the first FROM are substituted."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    bases: list[str] = []
    froms = 0
    for line in _logical_lines(text):
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG" and not froms:
            key, eq, default = rest.strip().partition("=")
            args[key.strip()] = buildargs.get(key.strip(), default.strip().strip('"') if eq else "")
        elif word == "FROM":
            froms += 1
            parts = [p for p in rest.split() if not p.startswith("--")]
            if not parts:
                raise Refused(400, "Dockerfile: FROM names no image")
            image = _ARG_REF.sub(lambda m: args.get(m.group(1) or m.group(2), ""), parts[0])
            if len(parts) >= 3 and parts[1].lower() == "as":
                stages.add(parts[2].lower())
            if image.lower() != "scratch" and image.lower() not in stages and image not in bases:
                bases.append(image)
    if not froms:
        raise Refused(400, "Dockerfile: no FROM instruction")
    return bases


_ENGINE_STEP = re.compile(r"^STEP (\d+)/(\d+): ", re.MULTILINE)
_ENGINE_ARROW = re.compile(r"^--> ", re.MULTILINE)


def docker_progress(doc: dict[str, Any]) -> dict[str, Any]:
    """An engine's build progress line in Docker's words: podman's `STEP 1/3: FROM x` and
    `--> 1a2b` are Docker's `Step 1/3 : FROM x` and ` ---> 1a2b`."""
    stream = doc.get("stream")
    if not isinstance(stream, str):
        return doc
    stream = _ENGINE_STEP.sub(r"Step \1/\2 : ", stream)
    return {**doc, "stream": _ENGINE_ARROW.sub(" ---> ", stream)}


def json_line(doc: dict[str, Any]) -> bytes:
    """One line of Docker's JSON progress stream."""
    return json.dumps(doc).encode() + b"\r\n"


def error_line(message: str) -> bytes:
    """A failure as Docker's progress stream reports it (the CLI prints it and exits 1)."""
    return json_line({"errorDetail": {"message": message}, "error": message})
