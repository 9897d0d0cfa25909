#!/usr/bin/env bash
# Installs the Debian packages Cellplane needs on this machine (idempotent; run as root).
#   runtime: podman with runc (crun fails on cgroup v1 hybrid hosts), netavark + aardvark-dns
#            (per-project networks with DNS), iptables (netavark's firewall), iputils-arping (a
#            cell that moved host announces its address), busybox-static (tiny
#            test image), python3-venv, runsc (gVisor: the `sandbox` isolation class; the
#            agent configures it in its own engine, never in the machine's configuration),
#            libjemalloc2 (the daemons' allocator: src/cellplane/allocator.py).
#   distros: the software of the shipped cluster distros (ZooKeeper and its Java, etcd, Redis,
#            Patroni + PostgreSQL 15),
#            read from catalog/distros/manifest.json (`debian_packages`): cluster nodes run it
#            from the host image. Part of the default install; --minimal skips it (then
#            `cellplane cluster distros` says which distros cannot be deployed and why).
#            Software Debian lacks comes from PyPI (`python_packages` + `python_target`: Spark
#            from `pyspark`), installed with `pip install --target <python_target>` into a
#            folder of its own, never into Cellplane's venv; `--list` shows it as
#            `pip:<target>:<requirement>`.
#   test:    what the tests need on top (PostgreSQL, slapd, chromium for the portal's browser
#            tests, docker-compose 1.29 and docker-registry for the Docker endpoint's tests, ...)
#            when called with --test.
# Usage: install-system.sh [--minimal | --test] [--list]
#   --list   print the packages that would be wanted, one a line, and install nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
manifest="$here/../catalog/distros/manifest.json"

runtime=(podman runc conmon netavark aardvark-dns iptables iputils-arping catatonit busybox-static
         runsc libjemalloc2
         python3 python3-venv python3-pip ca-certificates)
test_pkgs=(redis-tools netcat-openbsd postgresql slapd ldap-utils chromium)
test_pkgs+=(docker-compose)
# docker pull/push through an endpoint: Debian's registry 2.8, started by the test on loopback.
test_pkgs+=(docker-registry)
# The RabbitMQ cluster test publishes and consumes with pika inside a node (its host image).
test_pkgs+=(python3-pika)

minimal=0 test=0 list=0
for arg in "$@"; do
  case "$arg" in
    --minimal) minimal=1 ;;
    --test) test=1 ;;
    --list) list=1 ;;
    *) echo "unknown option: $arg (use --minimal, --test, --list)" >&2; exit 2 ;;
  esac
done
if (( minimal && test )); then
  echo "--minimal and --test exclude each other: the tests deploy the distros" >&2
  exit 2
fi

distro_packages() {
  # Every `debian_packages` entry of the manifest (distros shipped as tarballs or yum repos
  # have none: Debian cannot provide them, and `cellplane cluster distros` says so).
  python3 - "$manifest" <<'EOF'
import json, sys
seen = []
for distro in json.load(open(sys.argv[1], encoding="utf-8")):
    for package in distro.get("packages", []):
        for name in package.get("debian_packages", []):
            if name not in seen:
                seen.append(name)
print("\n".join(seen))
EOF
}

python_packages() {
  # `<target> <requirement>` for every `python_packages` entry of the manifest; with --missing,
  # only those whose distribution (at the pinned version, if any) is not in the target yet.
  python3 - "$manifest" "$@" <<'EOF'
import importlib.metadata, json, os, re, sys
only_missing = "--missing" in sys.argv[2:]
for distro in json.load(open(sys.argv[1], encoding="utf-8")):
    for package in distro.get("packages", []):
        target = package.get("python_target")
        for req in package.get("python_packages", []):
            name, _, version = req.partition("==")
            if only_missing and os.path.isdir(target):
                norm = re.sub(r"[-_.]+", "-", name).lower()
                have = {
                    (re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(), d.version)
                    for d in importlib.metadata.distributions(path=[target])
                }
                if any(n == norm and (not version or v == version) for n, v in have):
                    continue
            print(target, req)
EOF
}

install_python_packages() {
  local target req
  while read -r target req; do
    [[ -n "$target" ]] || continue
    if [[ $(id -u) -ne 0 ]]; then
      echo "missing Python package $req in $target; run as root or pip install --target $target $req" >&2
      exit 1
    fi
    echo "installing: $req into $target (pip)"
    python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
      --upgrade --target "$target" "$req"
  done < <(python_packages --missing)
}

install_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  (( ${#missing[@]} )) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing packages: ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packaged services are not needed: Cellplane runs these servers inside its own cells.
  RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

want=("${runtime[@]}")
if (( ! minimal )); then
  # The manifest is read with python3: on a bare machine, install the runtime (python3 with
  # it) first.
  if ! command -v python3 >/dev/null && (( ! list )); then
    install_missing "${runtime[@]}"
  fi
  mapfile -t distro < <(distro_packages)
  if (( ! ${#distro[@]} )); then
    echo "no debian_packages in $manifest" >&2
    exit 1
  fi
  want+=("${distro[@]}")
fi
if (( test )); then
  want+=("${test_pkgs[@]}")
fi

if (( list )); then
  printf '%s\n' "${want[@]}"
  if (( ! minimal )); then
    python_packages | while read -r target req; do printf 'pip:%s:%s\n' "$target" "$req"; done
  fi
  exit 0
fi
install_missing "${want[@]}"
if (( ! minimal )); then
  install_python_packages
fi
