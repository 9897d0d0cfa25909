"""Schemathesis over the whole API of a real server, as five callers (issue 14).

Used by `tests/unit/api/test_api_fuzz.py` (a bounded run in the suite) and `bench/fuzz.py` (a
longer one). `FuzzServer` is a real server in this process: SQLite in a temporary directory,
migrated and seeded, the API served by uvicorn on a free port in a thread (real HTTP, real
headers), with one registered host and a small world of resources. Its callers are the system
admin (the bootstrap token), a tenant admin, a project member, a project viewer (real access
tokens of the default tenant) and an anonymous caller.

`fuzz` walks every operation of the server's own OpenAPI document round-robin until its time is
up; each example is drawn by schemathesis (valid and invalid data), sent once per caller drawn,
and checked:

* no 5xx (`server_errors`);
* the answer matches the document: status code declared, content type and body schema
  (`schema_violations`);
* a refused request (4xx) changed nothing: a digest of every table (the audit trail and the
  per-caller throttling and last-use stamps aside) is the same before and after
  (`state_changes`).

It is stateful where the API allows: the ids of what succeeded requests created (and of the world)
are kept per path parameter, and a drawn example takes one of them instead of a random string half
of the time, so routes of existing resources are reached, not only their 404.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import re
import sqlite3
import tarfile
import tempfile
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import requests
import schemathesis
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text

from cellplane.api.app import create_app
from cellplane.identity.rbac import claims_for
from cellplane.identity.signing import ACCESS_TOKEN_AUDIENCE
from cellplane.ids import new_id, utcnow
from cellplane.services.bootstrap import seed
from cellplane.services.context import Services
from cellplane.state.cluster_models import Cluster
from cellplane.state.db import Database, migrate
from cellplane.state.identity_models import User
from cellplane.state.models import Base, Tenant
from cellplane.testing.harness import free_port

__all__ = ["CALLERS", "FuzzServer", "FuzzStats", "Started", "fuzz"]

CALLERS = ("system-admin", "tenant-admin", "project-member", "project-viewer", "anonymous")

# Tables a refused request may change by design: the audit trail records refusals, the OIDC
# provider counts failed attempts per source and per user, tokens carry their last use, the
# portal's login page makes a session (and requests keep theirs alive).
VOLATILE_TABLES = frozenset({"audit_events", "portal_sessions"})
VOLATILE_COLUMNS = frozenset({"last_used_at", "last_seen_at", "heartbeat_at"})

# Operations whose success ends the run's world (the callers' own tenant or their accounts):
# they are sent, but never with the world's real ids.
PROTECTED = {"tenant": "default"}

_LDAP: dict[str, Any] = {
    "bind_dn": "cn=svc,dc=example,dc=org",
    "bind_password": "secret",
    "user_base": "ou=people,dc=example,dc=org",
    "group_base": "ou=groups,dc=example,dc=org",
    "check": False,
}


def _csr(cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _oci_archive() -> bytes:
    """The smallest OCI archive the server accepts (a config, a manifest with no layer)."""
    config = b'{"architecture":"amd64","os":"linux"}'
    manifest = json.dumps(
        {"schemaVersion": 2, "config": {"digest": f"sha256:{_sha(config)}"}, "layers": []}
    ).encode()
    ref = {"org.opencontainers.image.ref.name": "fuzz:1"}
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [{"digest": f"sha256:{_sha(manifest)}", "annotations": ref}],
        }
    ).encode()
    files = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": index,
        f"blobs/sha256/{_sha(manifest)}": manifest,
        f"blobs/sha256/{_sha(config)}": config,
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_HARVEST = {
    "/v1/projects/{project}/cells": "cell_id",
    "/v1/projects/{project}/volumes": "volume_id",
    "/v1/projects/{project}/clusters": "cluster_id",
    "/v1/projects": "project",
    "/v1/users": "user",
    "/v1/groups": "group",
    "/v1/clients": "client",
    "/v1/role-assignments": "assignment_id",
    "/v1/flavors": "name",
    "/v1/tenants": "tenant",
}


@dataclass
class FuzzStats:
    requests: int = 0
    server_errors: int = 0
    schema_violations: int = 0
    state_changes: int = 0
    # Requests that were not HTTP (an empty Content-Length): uvicorn refused them (400,
    # text/plain) before the application, whose OpenAPI document cannot describe that answer.
    not_http: int = 0
    # Operations that answered past authentication and lookup (not 401, 403 or 404), and those
    # that answered 2xx at least once.
    covered: set[str] = field(default_factory=set)
    succeeded: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    operations: set[str] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # "kind op status" -> an example

    def record(self, kind: str, key: str, status: int, detail: str) -> None:
        self.failures.setdefault(f"{kind} {key} {status}", detail[:1500])

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "server_errors": self.server_errors,
            "schema_violations": self.schema_violations,
            "state_changes": self.state_changes,
            "not_http": self.not_http,
            "operations_covered": len(self.covered),
            "operations_total": len(self.operations),
            "operations_succeeded": len(self.succeeded),
            "not_covered": sorted(self.operations - self.covered),
            "not_sent": sorted(self.operations - self.sent),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "failures": dict(sorted(self.failures.items())),
        }


class Started(ABC):
    """A context manager over `start()` and `close()`; closed also when `start` fails (the
    threads, servers and directories of one that did not come up)."""

    @abstractmethod
    def start(self) -> None:
        """Bring the target up (its server, threads, directories)."""

    @abstractmethod
    def close(self) -> None:
        """Take down whatever `start` brought up, also after a partial start."""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class FuzzServer(Started):
    """A seeded server in this process on a free port; `close()` (or the `with` block's end)
    stops it and removes its directory."""

    def __init__(self, directory: Path | None = None) -> None:
        self._own = directory is None
        self.dir = directory or Path(tempfile.mkdtemp(prefix="cp-fuzz-"))
        url = f"sqlite:///{self.dir / 'cellplane.db'}"
        migrate(url)
        self.svc = Services(db=Database(url), data_dir=self.dir / "data")
        seeded = seed(self.svc)
        assert seeded.admin_token and seeded.join_token
        self.admin_token = seeded.admin_token
        self.join_token = seeded.join_token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.svc.public_url = self.url
        self.app = create_app(self.svc, run_controllers=False)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_config=None, log_level="error"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fuzz-server", daemon=True)
        self._watch = sqlite3.connect(self.dir / "cellplane.db", check_same_thread=False)
        self._version: int | None = None
        self._digest = ""
        self.headers: dict[str, dict[str, str]] = {}
        self.user_ids: dict[str, str] = {}
        self.ids: dict[str, list[str]] = {}

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fuzz server did not start")
            time.sleep(0.02)
        self._populate()

    def close(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._watch.close()
        self.svc.db.dispose()
        if self._own:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)

    # --- the world ---

    def _call(self, method: str, path: str, expect: int, **kw: Any) -> Any:
        headers = kw.pop("headers", self.headers.get("system-admin"))
        r = httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)
        if r.status_code != expect:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")
        return r.json() if r.content else None

    def _token(self, user_id: str) -> dict[str, str]:
        now = time.time()
        with self.svc.db.reader() as s:
            tenant = s.query(Tenant).filter(Tenant.name == "default").one()
            user = s.get(User, user_id)
            assert user is not None
            claims = claims_for(
                s,
                tenant_id=tenant.id,
                tenant=tenant.name,
                subject_kind="user",
                subject_id=user.id,
                name=user.name,
            )
            issuer = self.svc.tokens.issuer(tenant.id, f"{self.url}/identity/default", now)
        token = issuer.issue_access_token(user_id, ACCESS_TOKEN_AUDIENCE, claims, now, ttl_s=86400)
        return {"Authorization": f"Bearer {token}"}

    def _populate(self) -> None:
        self.headers["system-admin"] = {"Authorization": f"Bearer {self.admin_token}"}
        self.headers["anonymous"] = {}
        host = {
            "api_version": "agent/v1",
            "join_token": self.join_token,
            "name": "fuzz-host",
            "address": "10.0.0.1",
            "capacity": {"cpu": 64, "memory_mb": 1 << 20, "disk_gb": 10000},
        }
        reg = self._call("POST", "/v1/agent/register", 200, json=host, headers={})
        self.ids["host_id"] = [reg["host_id"]]
        grants = {
            "tenant-admin": {"role": "tenant-admin"},
            "project-member": {"role": "project-member", "project": "default"},
            "project-viewer": {"role": "project-viewer", "project": "default"},
        }
        for role, grant in grants.items():
            user = self._call("POST", "/v1/users", 201, json={"name": f"fuzz-{role}"})
            self._call("POST", "/v1/role-assignments", 201, json={"user": user["id"], **grant})
            self.headers[role] = self._token(user["id"])
            self.user_ids[role] = user["id"]
        spare = self._call("POST", "/v1/users", 201, json={"name": "fuzz-spare"})
        self.ids["user"] = [spare["id"]]
        grant = {"user": spare["id"], "role": "project-viewer", "project": "default"}
        self.ids["assignment_id"] = [
            self._call("POST", "/v1/role-assignments", 201, json=grant)["id"]
        ]
        projects = self._call("GET", "/v1/projects", 200)["items"]
        self.ids["project"] = [p["id"] for p in projects if p["name"] == "default"] + ["default"]
        cell = {"name": "fuzz-cell", "image": "host", "command": ["sleep", "1"], "cpu": 0.1}
        task = self._call("POST", "/v1/projects/default/cells", 202, json=cell)
        self.ids["cell_id"] = [task["entity"]["id"]]
        self.ids["task_id"] = [task["id"]]
        vol = self._call("POST", "/v1/projects/default/volumes", 201, json={"name": "fuzz-vol"})
        self.ids["volume_id"] = [vol["id"]]
        for path, key, body in (
            ("/v1/groups", "group", {"name": "fuzz-group"}),
            ("/v1/clients", "client", {"name": "fuzz-client"}),
            ("/v1/tenants", "tenant", {"name": "fuzz-spare"}),
        ):
            made = self._call("POST", path, 201, json=body)
            self.ids[key] = [made.get("client_id") or made["id"]]
        self.ids["tenant"].append("fuzz-spare")
        self.ids["name"] = ["SMALL"]
        group, user = self.ids["group"][0], self.ids["user"][0]
        self._call("PUT", f"/v1/groups/{group}/members/{user}", 200)
        # A host the operator's policy admits (the default's, or a test run's loopback).
        for url in ("ldap://192.0.2.10:389", "ldap://127.0.0.1:1"):
            admin = self.headers["system-admin"]
            body = {**_LDAP, "url": url}
            if httpx.put(f"{self.url}/v1/identity/ldap", json=body, headers=admin).is_success:
                break
        cert = self._call(
            "POST",
            "/v1/certificates",
            201,
            json={"csr": _csr(self.user_ids["tenant-admin"])},
            headers=self.headers["tenant-admin"],
        )
        self.ids["serial"] = [cert["serial"]]
        image = self._call(
            "POST",
            "/v1/images?name=fuzz-image",
            201,
            content=_oci_archive(),
            headers={**self.headers["system-admin"], "Content-Type": "application/x-tar"},
        )
        self.ids["ref"] = self.ids["image_id"] = [image["id"], "host"]
        self.ids["cluster_id"] = [self._cluster(self.ids["project"][0])]

    def _cluster(self, project_id: str) -> str:
        """A cluster row as the executor leaves one (creating one needs the distro's binaries)."""
        now = utcnow()
        cid = new_id("cls")
        node = {"name": "zk", "roles": ["zookeeper"], "instanceNum": 1, "cpuNum": 1}
        with self.svc.db.session() as s:
            s.add(
                Cluster(
                    id=cid,
                    project_id=project_id,
                    name="fuzz-cluster",
                    distro="zookeeper",
                    spec={"nodeGroups": [{**node, "memCapacityMB": 128, "storage": {"sizeGB": 1}}]},
                    state="RUNNING",
                    operation=None,
                    operation_args={},
                    created_by="fuzz",
                    created_at=now,
                    updated_at=now,
                )
            )
        return cid

    def harvest(self, method: str, template: str, answer: Any) -> None:
        """Keep the id of what a successful create made, for later examples' path parameters."""
        key = _HARVEST.get(template)
        if method != "POST" or key is None or not isinstance(answer, dict):
            return
        entity = answer.get("entity") if isinstance(answer.get("entity"), dict) else None
        made = (entity or {}).get("id") or answer.get("client_id") or answer.get("id")
        if isinstance(made, str) and made not in self.ids.setdefault(key, []):
            self.ids[key].append(made)
            if entity is not None and isinstance(answer.get("id"), str):
                self.ids.setdefault("task_id", []).append(answer["id"])

    # --- the state a refused request must leave alone ---

    def digest(self) -> str:
        """A digest of every table's rows; recomputed only when a commit happened since the last
        call (SQLite's `data_version` of a connection of our own moves with others' commits)."""
        version = self._watch.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:
            self._digest = self._full_digest()
            self._version = version
        return self._digest

    def _full_digest(self) -> str:
        h = hashlib.sha256()
        with self.svc.db.reader() as s:
            for table in Base.metadata.sorted_tables:
                if table.name in VOLATILE_TABLES:
                    continue
                cols = [c.name for c in table.columns if c.name not in VOLATILE_COLUMNS]
                quoted = ", ".join(f'"{c}"' for c in cols)
                rows = s.execute(text(f'SELECT {quoted} FROM "{table.name}"')).all()
                h.update(table.name.encode())
                for row in sorted(repr(tuple(r)) for r in rows):
                    h.update(row.encode())
        return h.hexdigest()


Operation = schemathesis.APIOperation[Any, Any, Any, Any]
TestCase = schemathesis.Case[Any]
_PARAM = re.compile(r"\{(\w+)\}")
# Image uploads are raw bytes: sent as schemathesis sends any binary body.
schemathesis.serializer.alias("application/x-tar", "application/octet-stream")
_SCHEMA_CHECKS = (response_schema_conformance, content_type_conformance, status_code_conformance)
# uvicorn's answer to a message its HTTP parser (h11) refuses; the application never saw it.
_NOT_HTTP = (400, "Invalid HTTP request received.")


def _operations(server: FuzzServer) -> list[Operation]:
    doc = httpx.get(server.url + "/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(doc)
    # A task's event stream lasts as long as the task: its first event is what is checked.
    schema.config.max_stream_events = 1
    ops = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise RuntimeError(f"the server's OpenAPI document is not valid: {result.err()}")
        ops.append(result.ok())
    return ops


def _failed(case: TestCase, response: schemathesis.Response, check: Any) -> str | None:
    try:
        case.validate_response(response, checks=[check])
    except (Exception, BaseExceptionGroup) as e:  # schemathesis raises a group of failures
        return f"{type(e).__name__}: {e}"
    return None


def _send(
    server: FuzzServer,
    session: requests.Session,
    case: TestCase,
    caller: str,
    stats: FuzzStats,
) -> None:
    key = f"{case.operation.method.upper()} {case.operation.path}"
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    headers.update(server.headers[caller])
    case.headers = CaseInsensitiveDict(headers)
    before = server.digest()
    response = case.call(base_url=server.url, session=session, timeout=30)
    status = response.status_code
    stats.requests += 1
    stats.sent.add(key)
    stats.statuses[status] = stats.statuses.get(status, 0) + 1
    if status not in (401, 403, 404):
        stats.covered.add(key)
    if status < 300:
        stats.succeeded.add(key)
    where = f"{caller}: {case.as_curl_command()}"
    problem = _failed(case, response, not_a_server_error)
    if problem or status >= 500:
        stats.server_errors += 1
        stats.record("server-error", key, status, f"{where}\n{response.text[:600]}\n{problem}")
    if (status, response.text) == _NOT_HTTP:
        stats.not_http += 1  # still checked below: it must not have changed anything
    else:
        for check in _SCHEMA_CHECKS:
            problem = _failed(case, response, check)
            if problem:
                stats.schema_violations += 1
                stats.record(check.__name__, key, status, f"{where}\n{problem}")
    if 400 <= status < 500:
        if server.digest() != before:
            stats.state_changes += 1
            stats.record("state-change", key, status, f"{where}\n{response.text[:600]}")
    elif status < 300:
        with contextlib.suppress(ValueError):
            server.harvest(case.operation.method.upper(), case.operation.path, response.json())


def fuzz(
    server: FuzzServer,
    seconds: float,
    *,
    seed: int = 0,
    examples_per_round: int = 4,
    negative: bool = True,
) -> FuzzStats:
    """Fuzz every operation of `server` until `seconds` have passed (at least one round)."""
    stats = FuzzStats()
    ops = _operations(server)
    stats.operations = {f"{op.method.upper()} {op.path}" for op in ops}
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    modes = [schemathesis.GenerationMode.POSITIVE]
    if negative:
        modes.append(schemathesis.GenerationMode.NEGATIVE)
    session = requests.Session()
    tests = [
        (op, mode, _test(server, session, op, mode, stats, rng, examples_per_round))
        for op in ops
        for mode in modes
    ]
    try:
        while True:
            for op, mode, test in tests:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        test()
                    except Exception as e:
                        # An operation with nothing to make invalid has no negative examples; a
                        # positive strategy schemathesis cannot build is reported.
                        if mode == schemathesis.GenerationMode.POSITIVE:
                            key = f"{op.method.upper()} {op.path}"
                            stats.record("unfuzzable", key, 0, repr(e))
            if time.monotonic() > deadline:
                return stats
    finally:
        session.close()


def _test(
    server: FuzzServer,
    session: requests.Session,
    op: Operation,
    mode: schemathesis.GenerationMode,
    stats: FuzzStats,
    rng: random.Random,
    examples: int,
) -> Callable[[], None]:
    params = _PARAM.findall(op.path)
    destructive = op.method.upper() == "DELETE"

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode), pick=st.integers(0, 1 << 30))
    def run(case: TestCase, pick: int) -> None:
        chooser = random.Random(pick ^ rng.getrandbits(30))
        for name in params:
            known = [
                v
                for v in server.ids.get(name, [])
                if not (destructive and PROTECTED.get(name) == v)
            ]
            if known and chooser.random() < 0.6:
                case.path_parameters = {**(case.path_parameters or {}), name: chooser.choice(known)}
        for caller in chooser.sample(CALLERS, 2):
            _send(server, session, case, caller, stats)

    return run


def iter_failures(stats: FuzzStats) -> Iterator[str]:
    for key, detail in stats.failures.items():
        yield f"{key}\n{detail}"
