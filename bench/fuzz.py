"""Schemathesis over the whole API for a while (issue 14): `bench/fuzz.py --seconds 120`.

The same harness as the suite's bounded run (`cellplane.testing.fuzz`): a real server on a free
port, every operation of its OpenAPI document, valid and invalid examples, five callers (system
admin, tenant admin, project member, project viewer, anonymous). Prints one JSON object:
`requests`, `server_errors`, `schema_violations`, `state_changes` (refused requests that changed
something), `operations_covered` (answered past authentication and lookup) / `operations_total`,
`operations_succeeded`, the answers' status counts and, for each distinct problem, one example.
No engine is involved (the agent's side is a registered host), so no podman lock is needed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, log

from cellplane.testing.fuzz import FuzzServer, fuzz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=4, help="per operation and round")
    args = parser.parse_args()
    started = time.monotonic()
    with FuzzServer() as server:
        log(f"server at {server.url}; fuzzing for {args.seconds:.0f} s")
        stats = fuzz(server, args.seconds, seed=args.seed, examples_per_round=args.examples)
    doc = {"benchmark": "fuzz", "seconds": round(time.monotonic() - started, 1)}
    doc.update(stats.summary())
    emit(doc)
    return 0 if not stats.failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
