#!/usr/bin/env bash
# Runs the README tour end to end, as a new user would, and fails on anything unexpected.
#
# The tour is the README's shell blocks that follow a `<!-- tour -->` line: one source for the
# document and this check. The commands run in order, each in `bash -c` with a time limit
# (TOUR_STEP_TIMEOUT, 120 s; on it the CLI's and the daemons' stacks are printed), an assignment
# in this shell (exported: later commands see it); each must exit 0 and, when its line ends in
# `#> text`, print `text` (stdout or stderr). `#!> text` marks a command meant to fail: it must
# exit non-zero and say `text`. `#~> text`: the output shows `text` within about 10 s (the
# command is repeated until then, 20 times and within the step's time limit at most: logs arrive
# asynchronously). A line ending in `\` continues on the next one.
#
# It runs on its own: `cellplane up` on a fresh data directory (under /tmp) and a free port, a
# CLI configuration of its own (CELLPLANE_CONFIG), a free port for the web cell's published
# port. The README's machine-specific paths are mapped: /tmp/bb, ~/acme-cert and
# ~/.config/cellplane/ to the tour's directory, host port 8080 to the free one; `${PORT:-7400}`
# is the API port. On exit, success or not (trap), it stops the daemons and removes the data
# directory with its containers, engine and mounts (python -m cellplane.testing.teardown).
#
# TOUR_MARKER (default `tour`) picks the blocks: those after a `<!-- $TOUR_MARKER -->` line
# (`tour-hosts`: the three-host tour, tests/integration/tour/test_tour_hosts.py); TOUR_UP_ARGS
# are more arguments of `cellplane up` (e.g. `--hosts 1`). CELLPLANE_DATA_DIR is the tour's data
# directory (for `cellplane dev hosts`); the teardown removes its dev hosts too.
#
# Usage: scripts/tour.sh [README]     (`cellplane` from .venv/bin, else from PATH)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readme=${1:-$repo/README.md}
if [[ -x $repo/.venv/bin/cellplane ]]; then
  export PATH="$repo/.venv/bin:$PATH"
fi
for tool in cellplane python curl; do
  command -v "$tool" >/dev/null || { echo "tour: no '$tool' command (run make up once)" >&2; exit 2; }
done
[[ -r $readme ]] || { echo "tour: cannot read $readme" >&2; exit 2; }

free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Short paths: the engine's unix socket lives under the data directory (108 bytes at most).
work=$(mktemp -d /tmp/cp-tour-XXXXXX)
data=$work/d
cfgdir=$work/cfg
port=$(free_port)
webport=$(free_port)
export CELLPLANE_CONFIG=$cfgdir/config.json PORT=$port CELLPLANE_DATA_DIR=$data
marker=${TOUR_MARKER:-tour}
read -r -a up_args <<<"${TOUR_UP_ARGS:-}"
unset CELLPLANE_SERVER CELLPLANE_TOKEN CELLPLANE_CA_CERT CELLPLANE_PROJECT
up_pid=""
started=$SECONDS

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $up_pid ]] && kill -0 "$up_pid" 2>/dev/null; then
    kill -TERM "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  if ! python -m cellplane.testing.teardown "$data"; then
    echo "tour: could not remove $data entirely" >&2
    rc=1
  fi
  rm -rf "$work"
  if (( rc == 0 )); then
    echo "tour: passed in $((SECONDS - started)) s"
  else
    echo "tour: FAILED (exit $rc) after $((SECONDS - started)) s" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  echo "tour: $*" >&2
  if [[ -f $work/up.log ]]; then
    echo "--- last lines of cellplane up ---" >&2
    tail -n "${log_lines:-30}" "$work/up.log" >&2
  fi
  exit 1
}

# --- the tour's steps, from the README ---

steps=$work/steps
python - "$readme" "$marker" >"$steps" <<'EOF'
import re, sys
# One record per command: line number, mode, expected text, command (NUL-separated fields,
# records ended by a NUL too) for the shell's `read -d ''`.
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
marker = re.compile(r"\s#(>|!>|~>)\s?(.*)$")
out = []
i, in_tour, in_block = 0, False, False
while i < len(lines):
    line = lines[i]
    if not in_block:
        if line.strip() == f"<!-- {sys.argv[2]} -->":
            in_tour = True
        elif in_tour and line.strip() == "```sh":
            in_block, in_tour = True, False
        i += 1
        continue
    if line.strip() == "```":
        in_block = False
        i += 1
        continue
    start = i + 1
    while line.endswith("\\") and i + 1 < len(lines):
        i += 1
        line = line[:-1].rstrip() + " " + lines[i].strip()
    i += 1
    if not line.strip() or line.lstrip().startswith("#"):
        continue
    mode, expect = "ok", ""
    m = None
    for m in marker.finditer(line):
        pass
    if m is not None:
        mode = {">": "ok", "!>": "fail", "~>": "eventually"}[m.group(1)]
        expect, line = m.group(2).strip(), line[: m.start()]
    out += [str(start), mode, expect, line.rstrip()]
if not out:
    sys.exit(f"no tour blocks (a ```sh block after a <!-- {sys.argv[2]} --> line) in {sys.argv[1]}")
sys.stdout.write("".join(f + "\0" for f in out))
EOF

# --- the daemons ---

echo "tour: cellplane up on port $port, data in $data"
cellplane up --data-dir "$data" --port "$port" "${up_args[@]}" >"$work/up.log" 2>&1 &
up_pid=$!
deadline=$((SECONDS + 120))
until cellplane host ls 2>/dev/null | grep -q READY; do
  kill -0 "$up_pid" 2>/dev/null || fail "cellplane up exited"
  (( SECONDS < deadline )) || fail "no READY host 120 s after cellplane up"
  sleep 0.5
done
echo "tour: API and agent ready after $((SECONDS - started)) s"

# --- run them ---

step_timeout=${TOUR_STEP_TIMEOUT:-120}
set -a  # the steps run in `bash -c`: the variables they set reach the later ones

dump_daemons() {  # every thread's stack of the server and the agent, into up.log
  local pid
  for pid in $(pgrep -P "$up_pid" 2>/dev/null); do
    kill -USR1 "$pid" 2>/dev/null || true
    sleep 1  # one at a time: their dumps do not interleave
  done
}

run_step() {  # LINE MODE EXPECT COMMAND
  local line=$1 mode=$2 expect=$3 cmd=$4 out=$work/step.out rc tries=1 t0=$SECONDS attempt
  cmd=${cmd//\/tmp\/bb/$work/bb}
  cmd=${cmd//\~\/acme-cert/$work/acme-cert}
  cmd=${cmd//\~\/.config\/cellplane\//$cfgdir/}
  cmd=${cmd//-p 8080:8080/-p $webport:8080}
  cmd=${cmd//127.0.0.1:8080/127.0.0.1:$webport}
  [[ $mode == eventually ]] && tries=20
  for ((attempt = 1; ; attempt++)); do
    set +eu
    if [[ $cmd =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; then
      eval "$cmd" >"$out" 2>&1 </dev/null  # an assignment: later steps see it (set -a)
    else
      # A step that hangs is stopped with SIGABRT: PYTHONFAULTHANDLER makes the CLI print its
      # threads' stacks into the step's output, and the daemons print theirs (SIGUSR1) below.
      PYTHONFAULTHANDLER=1 timeout -s ABRT -k 5 "$step_timeout" bash -c "$cmd" >"$out" 2>&1 </dev/null
    fi
    rc=$?
    set -eu
    if (( rc == 124 )); then
      echo "tour: README line $line did not finish in $step_timeout s: $cmd" >&2
      echo "--- its output ---" >&2
      cat "$out" >&2
      dump_daemons
      log_lines=400
      fail "stopped at README line $line"
    fi
    if [[ $mode == fail ]]; then
      (( rc != 0 )) && grep -qF -- "$expect" "$out" && break
    elif (( rc == 0 )) && { [[ -z $expect ]] || grep -qF -- "$expect" "$out"; }; then
      break
    fi
    if (( attempt >= tries || SECONDS - t0 >= step_timeout )); then
      echo "tour: README line $line failed: $cmd" >&2
      case $mode in
        fail) echo "  expected: a non-zero exit saying '$expect'; got exit $rc" >&2 ;;
        *) echo "  expected: exit 0${expect:+ and output with '$expect'}; got exit $rc" >&2 ;;
      esac
      echo "--- its output ---" >&2
      cat "$out" >&2
      if [[ $mode == eventually ]]; then  # it never came: where were the daemons?
        dump_daemons
        log_lines=400
      fi
      fail "stopped at README line $line"
    fi
    sleep 0.5
  done
  printf 'tour: ok  %-4s %3ss  %s\n' "$line" "$((SECONDS - t0))" "${cmd%%$'\n'*}"
}

while IFS= read -r -d '' line && IFS= read -r -d '' mode && IFS= read -r -d '' expect \
    && IFS= read -r -d '' cmd; do
  run_step "$line" "$mode" "$expect" "$cmd"
done <"$steps"
