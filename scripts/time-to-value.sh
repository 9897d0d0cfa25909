#!/usr/bin/env bash
# Time to value on this machine: a fresh clone of this repository (its current commit), `make up`
# in the background on a fresh data directory and a free port, then the seconds until the API
# answers, the host is READY, and a 3-node etcd (`cellplane cluster create kv --distro etcd`) is
# ready. Cleans up after itself (the cluster, the daemons, the data directory, the clone).
# Run as root (make up installs what is missing; the figures then include it).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
base=$(mktemp -d /tmp/cp-ttv-XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export CELLPLANE_CONFIG=$base/cfg/config.json
unset PYTHONPATH CELLPLANE_SERVER CELLPLANE_TOKEN CELLPLANE_CA_CERT
mk=""
cleanup() {
  local rc=$?
  if [[ -n $mk ]]; then
    kill -TERM -- "-$mk" 2>/dev/null || true
    wait "$mk" 2>/dev/null || true
  fi
  if [[ -x $base/cp/.venv/bin/python ]]; then
    "$base/cp/.venv/bin/python" -m cellplane.testing.teardown "$base/d" || rc=1
  fi
  rm -rf "$base"
  exit "$rc"
}
trap cleanup EXIT
t0=$(date +%s.%N)
at() { python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')"; }

git clone -q "$repo" "$base/cp"
git -C "$base/cp" checkout -q "$(git -C "$repo" rev-parse HEAD)"
echo "clone: $(at) s"
t0=$(date +%s.%N)
cd "$base/cp"
setsid make up DATA_DIR="$base/d" PORT="$port" >"$base/up.log" 2>&1 &
mk=$!
until curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/readyz" 2>/dev/null | grep -q 200; do
  kill -0 "$mk" 2>/dev/null || { tail -20 "$base/up.log" >&2; echo "make up exited" >&2; exit 1; }
  sleep 0.2
done
echo "make up -> API answering: $(at) s"
until .venv/bin/cellplane host ls 2>/dev/null | grep -q READY; do sleep 0.2; done
echo "make up -> host READY: $(at) s"
.venv/bin/cellplane cluster create kv --distro etcd >"$base/cluster.log" 2>&1 \
  || { cat "$base/cluster.log" >&2; exit 1; }
echo "make up -> 3-node etcd ready: $(at) s"
.venv/bin/cellplane cluster rm kv >/dev/null 2>&1
