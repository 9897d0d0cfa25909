"""Identity throughput per core: token issue, token validation, password logins.

Run `python bench/tokens.py` (`--seconds 3` per measurement); prints one JSON object on stdout,
progress on stderr. The in-process measurements pin this process to CPU 0
(`os.sched_setaffinity`), so they are per core.

- `client_credentials_per_s`: POST /identity/default/token, grant_type=client_credentials,
  HTTP Basic client authentication, against a REAL server process (`cellplane.daemon server`
  started by `cellplane.testing.harness.Deployment`, uvicorn, SQLite) pinned to CPU 0, driven
  over HTTP keep-alive by client threads pinned to the other CPUs: uvicorn's HTTP parsing,
  routing and middleware, form parsing, the rate limiter (raised through
  `CELLPLANE_OIDC_RATE_PER_S`), authlib's grant and client authentication (SHA-256 secret
  check), the SQLite reads (tenant, client, role assignments), RS256 signing and the audit row
  written per token. Reported as requests per wall second with the server on one core (and its
  CPU use, to show it was the bottleneck) and per second of server CPU time. Skipped on a
  single-CPU machine.
- `in_process`: the same request in this process on CPU 0, three ways: through the whole ASGI
  app with httpx's `ASGITransport` (client, routing, middleware and worker-thread hop share the
  core), through FastAPI's `TestClient` (adds its own event-loop thread hop), and calling the
  provider directly (`OidcProvider.run` + `endpoint`: authlib, database, signing; no HTTP).
- `validations_per_s`: `Authenticator.verify_access_token` (what the API runs on every bearer
  token) on distinct, freshly minted tokens, so every call verifies an RSA-2048 (RS256) signature
  (the uncached path); `validations_cached_per_s` presents one token repeatedly (the signature
  cache hit: claims are still parsed and checked each time).
- `rsa2048`: RSA-2048 PKCS#1 v1.5 SHA-256 signatures and verifications per second of CPU time
  with `cryptography`, measured in the same run on CPU 0. `grant_cpu_ms`: server CPU
  milliseconds per client_credentials grant, for the real server (its CPU time over the
  requests it answered) and for the provider called directly (this process's CPU time);
  `grant_cpu_over_sign`: the same over one signature's CPU time; `validation_over_verify`:
  validations per CPU second (`validations_per_cpu_s`) over RSA verifications per CPU second.
  CPU time, not wall time, so other load on the machine does not skew the ratios.
- `password_logins_per_s`: full password-grant requests through the in-process ASGI app
  (argon2id verification, user lookup, failure-counter reset, audit, access and refresh token
  issue); `argon2_verify_per_s`: `verify_password` alone. `argon2` reports the parameters of
  `cellplane.identity.passwords` and whether they meet OWASP's minimum for argon2id
  (m >= 19 MiB, t >= 2, p = 1).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_seconds, emit, log

TENANT = "default"
BASE = "https://testserver"
PASSWORD = "correct horse battery staple"
CLIENT_ID = "cli-bench"


def rate(fn: Callable[[int], None], seconds: float, batch: int) -> tuple[float, int]:
    """Calls per second of fn(i), batch by batch, for about `seconds`."""
    n = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(batch):
            fn(n)
            n += 1
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - started), n


async def arate(fn: Callable[[], Awaitable[None]], seconds: float) -> float:
    n = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        await fn()
        n += 1
    return n / (time.perf_counter() - started)


def rsa_rates(seconds: float) -> dict[str, float]:
    """RSA-2048 PKCS#1 v1.5 SHA-256 signatures and verifications per second of CPU time with
    `cryptography` (what RS256 costs underneath), on this process's CPU (pinned to CPU 0)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key()
    msg = b"x" * 400  # about the signing input of an access token
    pad = padding.PKCS1v15()
    sig = key.sign(msg, pad, hashes.SHA256())

    def sign(_: int) -> None:
        key.sign(msg, pad, hashes.SHA256())

    def verify(_: int) -> None:
        pub.verify(sig, msg, pad, hashes.SHA256())

    return {
        "sign_per_cpu_s": round(cpu_rate(sign, seconds / 2, 20)[0], 1),
        "verify_per_cpu_s": round(cpu_rate(verify, seconds / 2, 200)[0], 1),
    }


def cpu_rate(fn: Callable[[int], None], seconds: float, batch: int) -> tuple[float, int]:
    """Calls per second of this process's CPU time (user + system, all its threads) of fn(i),
    batch by batch, for about `seconds` of wall time."""
    n = 0
    started, cpu0 = time.perf_counter(), time.process_time()
    while True:
        for _ in range(batch):
            fn(n)
            n += 1
        if time.perf_counter() - started >= seconds:
            cpu = time.process_time() - cpu0
            return n / cpu, n


def populate(url: str) -> tuple[str, str, str]:
    """Add a service account and a user to the default tenant; (tenant id, secret, user id)."""
    from sqlalchemy import select

    from cellplane.identity.passwords import generate_secret, hash_password, hash_secret
    from cellplane.ids import new_id, utcnow
    from cellplane.state.db import Database
    from cellplane.state.identity_models import OAuthClient, RoleAssignment, User
    from cellplane.state.models import Tenant

    secret = generate_secret()
    db = Database(url)
    with db.session() as s:
        tid = s.scalar(select(Tenant.id).where(Tenant.name == TENANT))
        assert tid is not None
        s.add(
            OAuthClient(
                id=CLIENT_ID,
                tenant_id=tid,
                name="bench",
                secret_hash=hash_secret(secret),
                redirect_uris=[],
                grant_types=["client_credentials"],
                created_at=utcnow(),
            )
        )
        s.add(
            RoleAssignment(
                id=new_id("rol"),
                scope="tenant",
                tenant_id=tid,
                project_id=None,
                subject_kind="client",
                subject_id=CLIENT_ID,
                role="project-member",
                created_at=utcnow(),
            )
        )
        user = User(
            id=new_id("usr"),
            tenant_id=tid,
            name="bench-user",
            password_hash=hash_password(PASSWORD),
            source="local",
            disabled=False,
            failed_logins=0,
            created_at=utcnow(),
        )
        s.add(user)
        uid = user.id
    db.dispose()
    return tid, secret, uid


def real_server(seconds: float, threads: int) -> dict[str, Any]:
    """client_credentials against a real server process pinned to CPU 0."""
    import httpx

    from cellplane.settings import ServerSettings
    from cellplane.testing.harness import Deployment

    os.environ["CELLPLANE_OIDC_RATE_PER_S"] = "1000000000"
    os.environ["CELLPLANE_OIDC_RATE_BURST"] = "1000000000"
    d = Deployment(log_level="warning")
    try:
        d.prepare()
        url = ServerSettings(data_dir=d.data_dir).resolved_database_url()
        _, secret, _ = populate(url)
        os.sched_setaffinity(0, {0})  # the server inherits CPU 0
        d.start_server()
        assert d.server_proc is not None
        others = set(range(os.cpu_count() or 2)) - {0}
        os.sched_setaffinity(0, others)
        pid = d.server_proc.pid
        token_url = f"{d.url}/identity/{TENANT}/token"
        auth = "Basic " + base64.b64encode(f"{CLIENT_ID}:{secret}".encode()).decode()
        headers = {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"}
        body = b"grant_type=client_credentials"
        counts = [0] * threads
        errors: list[str] = []
        stop = threading.Event()

        def worker(k: int) -> None:
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    r = c.post(token_url, content=body, headers=headers)
                    if r.status_code != 200:
                        errors.append(r.text[:200])
                        return
                    counts[k] += 1

        log(f"real server pid {pid} on CPU 0, {threads} client threads on CPUs {sorted(others)}")
        pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        time.sleep(1.0)  # warm-up
        n0, cpu0, t0 = sum(counts), cpu_seconds(pid), time.perf_counter()
        time.sleep(seconds)
        n1, cpu1, t1 = sum(counts), cpu_seconds(pid), time.perf_counter()
        stop.set()
        for t in pool:
            t.join()
        if errors:
            raise RuntimeError(f"{errors[0]}\nserver log:\n{d.log_tail('server.log')}")
        wall, cpu = t1 - t0, cpu1 - cpu0
        return {
            "requests": n1 - n0,
            "per_wall_s": round((n1 - n0) / wall, 1),
            "server_cpu_utilisation": round(cpu / wall, 2),
            "per_server_cpu_s": round((n1 - n0) / cpu, 1) if cpu else None,
            "client_threads": threads,
        }
    finally:
        d.close()
        os.sched_setaffinity(0, {0})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    ap.add_argument("--threads", type=int, default=8, help="client threads (real server)")
    args = ap.parse_args()

    out: dict[str, Any] = {
        "method": "client_credentials_per_s: real uvicorn server process pinned to CPU 0, "
        "HTTP keep-alive clients on the other CPUs; in_process: this process pinned to CPU 0 "
        "(ASGITransport / TestClient / provider called directly); validations: "
        "Authenticator.verify_access_token called directly",
        "seconds_per_measurement": args.seconds,
        "database": "sqlite (WAL)",
    }
    if (os.cpu_count() or 1) >= 2:
        srv = real_server(args.seconds, args.threads)
        out["client_credentials_per_s"] = srv["per_wall_s"]
        out["real_server"] = srv
        log(f"real server: {srv}")
    else:
        out["client_credentials_per_s"] = None
        out["real_server"] = "skipped: one CPU"
    os.sched_setaffinity(0, {0})
    out["cpu_affinity"] = sorted(os.sched_getaffinity(0))

    import httpx

    from cellplane.api.app import create_app
    from cellplane.api.routes_identity import provider_of
    from cellplane.identity import passwords
    from cellplane.identity.oidc import RateLimiter
    from cellplane.identity.passwords import hash_password
    from cellplane.identity.rbac import claims_for
    from cellplane.identity.signing import ACCESS_TOKEN_AUDIENCE
    from cellplane.services.bootstrap import seed
    from cellplane.services.context import Services
    from cellplane.state.db import Database, migrate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from starlette.datastructures import Headers

    tmp = Path(tempfile.mkdtemp(prefix="cp-bench-tokens-"))
    try:
        url = f"sqlite:///{tmp / 'cellplane.db'}"
        log(f"in-process server on {url}")
        migrate(url)
        svc = Services(db=Database(url), data_dir=tmp / "data")
        seed(svc)
        tid, secret, uid = populate(url)
        app = create_app(svc, run_controllers=False)
        provider = provider_of(app)
        provider.limiter = RateLimiter(rate_per_s=1e9, burst=1e9)
        token_url = f"/identity/{TENANT}/token"
        form = {"grant_type": "client_credentials"}
        inproc: dict[str, float] = {}

        async def asgi() -> dict[str, float]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:

                async def cc() -> None:
                    r = await c.post(token_url, data=form, auth=(CLIENT_ID, secret))
                    if r.status_code != 200:
                        raise RuntimeError(r.text)

                async def login() -> None:
                    r = await c.post(
                        token_url,
                        data={
                            "grant_type": "password",
                            "client_id": "cellplane-cli",
                            "username": "bench-user",
                            "password": PASSWORD,
                        },
                    )
                    if r.status_code != 200:
                        raise RuntimeError(r.text)

                await arate(cc, 0.5)
                got = {"cc": await arate(cc, args.seconds)}
                await login()
                got["login"] = await arate(login, args.seconds)
                return got

        got = asyncio.run(asgi())
        inproc["client_credentials_asgi_per_s"] = round(got["cc"], 1)
        out["password_logins_per_s"] = round(got["login"], 1)
        log(f"in-process ASGI: {got}")

        with TestClient(app, base_url=BASE) as client:

            def cc_testclient(_: int) -> None:
                r = client.post(token_url, data=form, auth=(CLIENT_ID, secret))
                if r.status_code != 200:
                    raise RuntimeError(r.text)

            rate(cc_testclient, 0.5, 20)
            inproc["client_credentials_testclient_per_s"] = round(
                rate(cc_testclient, args.seconds, 20)[0], 1
            )

        basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{secret}".encode()).decode()
        headers = Headers({"authorization": basic})
        pairs = [("grant_type", "client_credentials")]

        def cc_direct(_: int) -> None:
            r = provider.run(
                TENANT,
                BASE,
                "bench",
                lambda ctx: provider.endpoint(ctx, "token", "POST", token_url, headers, pairs),
            )
            if r.status != 200:
                raise RuntimeError(repr(r))

        rate(cc_direct, 0.5, 20)
        inproc["client_credentials_direct_per_s"] = round(rate(cc_direct, args.seconds, 20)[0], 1)
        direct_cpu_ms = 1000 / cpu_rate(cc_direct, args.seconds, 20)[0]
        out["in_process"] = inproc
        log(f"in-process: {inproc}")

        stored = hash_password(PASSWORD)

        def argon(_: int) -> None:
            if not passwords.verify_password(stored, PASSWORD):
                raise RuntimeError("argon2 verification failed")

        out["argon2_verify_per_s"] = round(rate(argon, args.seconds, 2)[0], 1)
        m, t, p = (
            passwords.ARGON2_MEMORY_KIB,
            passwords.ARGON2_TIME_COST,
            passwords.ARGON2_PARALLELISM,
        )
        out["argon2"] = {
            "type": "argon2id",
            "memory_kib": m,
            "time_cost": t,
            "parallelism": p,
            "meets_owasp_minimum": m >= 19 * 1024 and t >= 2 and p == 1,
        }

        # Validation: mint distinct tokens (not timed), then verify each once.
        authn = app.state.authenticator
        issuer_url = authn.issuer_url(TENANT, BASE)
        now = time.time()
        with svc.db.reader() as s:
            claims = claims_for(
                s, tenant_id=tid, tenant=TENANT, subject_kind="user", subject_id=uid, name="bench"
            )
        issuer = svc.tokens.issuer(tid, issuer_url, now)
        count = max(2000, int(args.seconds * 15_000))
        log(f"minting {count} distinct tokens")
        tokens = [
            issuer.issue_access_token(uid, ACCESS_TOKEN_AUDIENCE, claims, now, 3600.0)
            for _ in range(count)
        ]
        authn.verify_access_token(tokens[0], now=now)  # builds the verifier once
        started, cpu0 = time.perf_counter(), time.process_time()
        for tok in tokens[1:]:
            authn.verify_access_token(tok, now=now)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
        out["validations_per_s"] = round((count - 1) / elapsed, 1)
        out["validations_per_cpu_s"] = round((count - 1) / cpu, 1)
        out["validations_distinct_tokens"] = count - 1
        one = tokens[0]

        def cached(_: int) -> None:
            authn.verify_access_token(one, now=now)

        out["validations_cached_per_s"] = round(rate(cached, args.seconds, 200)[0], 1)
        log(
            f"validations: {out['validations_per_s']}/s uncached, "
            f"{out['validations_cached_per_s']}/s cached"
        )
        svc.db.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rsa_ = rsa_rates(args.seconds)
    out["rsa2048"] = rsa_
    sign_ms = 1000 / rsa_["sign_per_cpu_s"]
    srv = out["real_server"]
    real_ms = (
        1000 / srv["per_server_cpu_s"]
        if isinstance(srv, dict) and srv.get("per_server_cpu_s")
        else None
    )
    out["grant_cpu_ms"] = {
        "real_server": round(real_ms, 3) if real_ms else None,
        "provider_direct": round(direct_cpu_ms, 3),
    }
    out["grant_cpu_over_sign"] = {
        "real_server": round(real_ms / sign_ms, 2) if real_ms else None,
        "provider_direct": round(direct_cpu_ms / sign_ms, 2),
    }
    out["validation_over_verify"] = round(
        out["validations_per_cpu_s"] / rsa_["verify_per_cpu_s"], 3
    )
    out["targets"] = {
        "client_credentials_per_s": 500,
        "validations_per_s": 20_000,
        "grant_cpu_ms": 2.0,
        "validation_over_verify": 0.5,
    }
    cc = out["client_credentials_per_s"]
    out["met"] = {
        "client_credentials_per_s": cc is not None and cc >= 500,
        "validations_per_s": out["validations_per_s"] >= 20_000,
        "grant_cpu_ms": real_ms is not None and real_ms <= 2.0,
        "validation_over_verify": out["validation_over_verify"] >= 0.5,
    }
    emit(out)


if __name__ == "__main__":
    main()
