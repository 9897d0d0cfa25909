"""The fuzzers for a while (issue 14): `bench/fuzz.py --seconds 120 [--target T]`, T one of
`api`, `docker`, `docker-tls`, `portal`, `portal-static` or `all` (the default).

The same harnesses as the suite's bounded runs, each on its own real server on a free port (no
engine: the agent's side is a registered host with no agent behind it, so no podman lock):

* `api`: schemathesis over every operation of the server's OpenAPI document
  (`cellplane.testing.fuzz`), valid and invalid examples, five callers (system admin, tenant admin,
  project member, project viewer, anonymous);
* `docker`: Hypothesis over every route of a project's Docker-compatible endpoint
  (`cellplane.testing.fuzz_docker`);
* `docker-tls`: the same endpoint over its real TLS, with client certificates (valid ones of each
  role, revoked, expired, not yet valid, foreign, forged, self-signed, a host's, none), tokens
  with them, and raw garbage on its port (`cellplane.testing.fuzz_docker_tls`);
* `portal-static`: the portal's static files: traversal paths, methods, `Range` and conditional
  headers, sent byte for byte (`cellplane.testing.fuzz_portal_static`);
* `portal`: Hypothesis over every page and form of the portal, signed in and anonymous, with
  and without the CSRF token (`cellplane.testing.fuzz_portal`).

`--seconds` is per target. Prints one JSON object with one entry per target under `targets`,
each with `requests`, `server_errors`, `schema_violations` (api) or `bad_error_bodies` (docker,
portal; docker-tls adds `tls_refusals`, `refused_admitted`, `listener_failures` and the answers
per identity; portal-static adds `leaks` and `bad_headers`), `state_changes` (refused requests
that changed something), `operations_covered`
(answered past authentication and lookup) / `operations_total`, `operations_succeeded`, the
answers' status counts and, for each distinct problem, one example. Exits 1 if any target found a
problem.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, log

from cellplane.testing.fuzz import FuzzServer, fuzz

TARGETS = ("api", "docker", "docker-tls", "portal", "portal-static")


def _run(target: str, seconds: float, seed: int, examples: int) -> dict[str, Any]:
    started = time.monotonic()
    with FuzzServer() as server:
        log(f"{target}: server at {server.url}; fuzzing for {seconds:.0f} s")
        summary: dict[str, Any]
        if target == "api":
            summary = fuzz(server, seconds, seed=seed, examples_per_round=examples).summary()
        elif target == "docker":
            from cellplane.testing.fuzz_docker import DockerTarget, fuzz_docker

            with DockerTarget(server) as docker:
                summary = fuzz_docker(docker, seconds, seed=seed).summary()
        elif target == "docker-tls":
            from cellplane.testing.fuzz_docker_tls import DockerTlsTarget, fuzz_docker_tls

            with DockerTlsTarget(server) as tls:
                summary = fuzz_docker_tls(tls, seconds, seed=seed).summary()
        elif target == "portal-static":
            from cellplane.testing.fuzz_portal_static import StaticTarget, fuzz_static

            with StaticTarget(server) as static:
                summary = fuzz_static(static, seconds, seed=seed).summary()
        else:
            from cellplane.testing.fuzz_portal import PortalTarget, fuzz_portal

            with PortalTarget(server) as portal:
                summary = fuzz_portal(portal, seconds, seed=seed).summary()
    return {"seconds": round(time.monotonic() - started, 1), **summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0, help="per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=4, help="api: per operation and round")
    parser.add_argument("--target", choices=(*TARGETS, "all"), default="all")
    args = parser.parse_args()
    chosen = TARGETS if args.target == "all" else (args.target,)
    started = time.monotonic()
    results = {t: _run(t, args.seconds, args.seed, args.examples) for t in chosen}
    doc: dict[str, Any] = {"benchmark": "fuzz", "seconds": round(time.monotonic() - started, 1)}
    doc["targets"] = results
    emit(doc)
    return 0 if not any(r["failures"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
