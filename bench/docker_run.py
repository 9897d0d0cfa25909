"""`docker run -d` through a project's Docker-compatible endpoint, to running, against the same
`docker run -d` straight on the host's podman socket.

Run `python bench/docker_run.py --runs 30`; prints one JSON object on stdout (progress on stderr).

A real deployment (server + agent + its podman engine, `_common.deployment`) with the busybox image;
the default project gets an endpoint and the admin a client certificate (as `cellplane endpoint env`
writes it). Each run, interleaved: the unmodified docker CLI runs `docker run -d -m 32m busybox
sleep 3600` against the endpoint (`--tlsverify`), timed until the command returns (the endpoint
answers `start` once the cell is RUNNING; the bench checks that with `docker inspect`, untimed),
then the same command against the agent's podman socket (`unix://`, the baseline: the same engine,
no Cellplane in between). Containers are removed after each run (not timed). One warm-up of each
comes first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import deployment, emit, log, summary_ms

TARGET_RATIO = 1.5


def _docker(env: dict[str, str], *args: str) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return took, p.stdout.strip()


def _endpoint_env(d: Any, certs: Path) -> dict[str, str]:
    from cellplane.cli.certs import new_key_and_csr

    with d.client() as c:
        ep = c.create_docker_endpoint("default")
        me = c.whoami()
        key_pem, csr = new_key_and_csr(str(me["subject"]))
        issued = c.request_certificate(csr, ttl_days=1)
        (certs / "key.pem").write_bytes(key_pem)
        (certs / "cert.pem").write_text(str(issued["chain"]))
        (certs / "ca.pem").write_text(c.ca_certificates())
    return {
        **os.environ,
        "DOCKER_HOST": str(ep["docker_host"]),
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(certs),
        "DOCKER_CONFIG": str(certs / "config"),
    }


def _running(env: dict[str, str], name: str) -> bool:
    _, out = _docker(env, "inspect", name)
    return bool(json.loads(out)[0]["State"]["Running"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    if shutil.which("docker") is None:
        raise SystemExit("the docker CLI is not on PATH")
    work = Path(tempfile.mkdtemp(prefix="cp-bench-docker-"))
    try:
        with deployment() as d:
            cp_env = _endpoint_env(d, work)
            base_env = {
                **os.environ,
                "DOCKER_HOST": d.engine_url,
                "DOCKER_CONFIG": str(work / "config-base"),
            }
            for k in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
                base_env.pop(k, None)
            _, loaded = _docker(base_env, "load", "-i", str(d.busybox_archive))
            base_image = loaded.rsplit(" ", 1)[-1]
            cmd = ("run", "-d", "-m", "32m")
            endpoint_s: list[float] = []
            baseline_s: list[float] = []
            for i in range(args.runs + 1):  # run 0 warms both paths up
                name = f"dr-{uuid.uuid4().hex[:8]}"
                took, _ = _docker(cp_env, *cmd, "--name", name, "busybox", "sleep", "3600")
                if not _running(cp_env, name):
                    raise SystemExit(f"{name} is not running after docker run -d returned")
                base_took, _ = _docker(
                    base_env, *cmd, "--name", f"{name}-b", base_image, "sleep", "3600"
                )
                _docker(cp_env, "rm", "-f", name)
                _docker(base_env, "rm", "-f", f"{name}-b")
                if i:
                    endpoint_s.append(took)
                    baseline_s.append(base_took)
                log(
                    f"run {i}: endpoint {took * 1000:.0f} ms, podman socket {base_took * 1000:.0f} ms"
                )
            ep, base = summary_ms(endpoint_s), summary_ms(baseline_s)
            emit(
                {
                    "bench": "docker_run",
                    "runs": args.runs,
                    "p50_ms": ep["p50"],
                    "p99_ms": ep["p99"],
                    "endpoint_ms": ep,
                    "baseline_p50_ms": base["p50"],
                    "baseline_p99_ms": base["p99"],
                    "baseline_ms": base,
                    "ratio_p50": round(ep["p50"] / base["p50"], 2),
                    "target_ratio": TARGET_RATIO,
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
