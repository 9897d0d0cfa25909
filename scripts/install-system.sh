#!/usr/bin/env bash
# Installs the Debian packages Cellplane needs on this machine (idempotent; run as root).
#   runtime: podman with runc (crun fails on cgroup v1 hybrid hosts), netavark + aardvark-dns
#            (per-project networks with DNS), iptables (netavark's firewall), busybox-static (tiny
#            test image), python3-venv.
#   test:    the servers the cluster tests deploy (zookeeper, etcd, redis) when called with --test.
set -euo pipefail

runtime=(podman runc conmon netavark aardvark-dns iptables catatonit busybox-static
         python3 python3-venv python3-pip ca-certificates)
test_pkgs=(zookeeper etcd-server etcd-client redis-server redis-tools redis-sentinel netcat-openbsd
           postgresql slapd ldap-utils)

want=("${runtime[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if (( ${#missing[@]} )); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing packages: ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packaged services are not needed: Cellplane runs these servers inside its own cells.
  RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
