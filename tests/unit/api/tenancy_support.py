"""Two tenants with resources and callers of every role, for the route-policy and isolation tests.

Tenant A is the seeded `default` tenant; tenant B (`beta`) is created through the API. Callers
hold real access tokens minted by each tenant's issuer (the API verifies them like any other),
except the bootstrap admin, who uses the personal access token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellplane_platform_support import Platform
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from cellplane.api import routes_directory, routes_identity, routes_pki, routes_quotas
from cellplane.identity.rbac import claims_for
from cellplane.identity.signing import ACCESS_TOKEN_AUDIENCE
from cellplane.ids import new_id, utcnow
from cellplane.state.cluster_models import Cluster
from cellplane.state.identity_models import User
from cellplane.state.models import Host, Project, Task, Tenant

ROLES = ("system-admin", "tenant-admin", "project-member", "project-viewer", "outsider")
LDAP = {
    "url": "ldap://127.0.0.1:1",
    "bind_dn": "cn=svc,dc=example,dc=org",
    "bind_password": "secret",
    "user_base": "ou=people,dc=example,dc=org",
    "group_base": "ou=groups,dc=example,dc=org",
    "check": False,
}


@dataclass
class TenantWorld:
    name: str
    tenant_id: str = ""
    project_id: str = ""
    side_project_id: str = ""
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> headers
    user_ids: dict[str, str] = field(default_factory=dict)  # role -> user id
    ids: dict[str, str] = field(default_factory=dict)  # path parameter -> value


def token_for(plat: Platform, tenant_id: str, user_id: str) -> dict[str, str]:
    now = time.time()
    with plat.svc.db.reader() as s:
        t = s.get(Tenant, tenant_id)
        u = s.get(User, user_id)
        assert t is not None and u is not None
        claims = claims_for(
            s, tenant_id=t.id, tenant=t.name, subject_kind="user", subject_id=u.id, name=u.name
        )
        issuer_url = f"http://testserver/identity/{t.name}"
    issuer = plat.svc.tokens.issuer(tenant_id, issuer_url, now)
    token = issuer.issue_access_token(user_id, ACCESS_TOKEN_AUDIENCE, claims, now, ttl_s=3600)
    return {"Authorization": f"Bearer {token}"}


def _ok(r: Any, *codes: int) -> Any:
    assert r.status_code in codes, (r.request.method, r.request.url, r.status_code, r.text)
    return r.json() if r.content else None


class Worlds:
    """Builds both tenants; `refresh(world)` recreates resources a DELETE removed."""

    def __init__(self, plat: Platform, image_archive: Path | None = None) -> None:
        self.plat = plat
        self.image_archive = image_archive
        self.flavor = "policy-flavor"
        c = plat.client
        self.a = TenantWorld("default")
        self.b = TenantWorld("beta")
        body = _ok(c.post("/v1/tenants", json={"name": "beta"}, headers=plat.admin), 201)
        self.b.tenant_id = body["id"]
        b_admin = body["admin"]["id"]
        with plat.svc.db.reader() as s:
            self.a.tenant_id = str(s.scalar(select(Tenant.id).where(Tenant.name == "default")))
            admin_a = s.scalar(
                select(User.id).where(User.tenant_id == self.a.tenant_id, User.name == "admin")
            )
        self.a.tokens["system-admin"] = plat.admin
        for w, admin_headers in (
            (self.a, plat.admin),
            (self.b, token_for(plat, self.b.tenant_id, b_admin)),
        ):
            self._populate(w, admin_headers)
        assert admin_a

    def _populate(self, w: TenantWorld, admin: dict[str, str]) -> None:
        c = self.plat.client
        projects = _ok(c.get("/v1/projects", headers=admin), 200)["items"]
        w.project_id = next(p["id"] for p in projects if p["name"] == "default")
        side = _ok(c.post("/v1/projects", json={"name": "side"}, headers=admin), 201)
        w.side_project_id = side["id"]
        users: dict[str, str] = {}
        for role in ("tenant-admin", "project-member", "project-viewer", "outsider"):
            u = _ok(c.post("/v1/users", json={"name": f"{role}-{w.name}"}, headers=admin), 201)
            users[role] = u["id"]
        grants = [
            {"user": users["tenant-admin"], "role": "tenant-admin"},
            {"user": users["project-member"], "role": "project-member", "project": "default"},
            {"user": users["project-viewer"], "role": "project-viewer", "project": "default"},
            {"user": users["outsider"], "role": "project-member", "project": "side"},
        ]
        for g in grants:
            _ok(c.post("/v1/role-assignments", json=g, headers=admin), 201)
        for role, uid in users.items():
            w.tokens[role] = token_for(self.plat, w.tenant_id, uid)
            w.user_ids[role] = uid
        if "system-admin" not in w.tokens:
            w.tokens["system-admin"] = admin  # B's "system admin" slot: its tenant admin
        w.ids["tenant"] = w.name
        w.ids["project"] = w.project_id
        self.refresh(w, admin)

    def join_token(self) -> str:
        """A join token's id (a new one each time: deleting it works)."""
        r = self.plat.client.post("/v1/join-tokens", json={}, headers=self.plat.admin)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def image(self) -> str:
        """An uploaded image no cell uses (so deleting it works), uploaded again when gone."""
        c = self.plat.client
        if c.get("/v1/images/policy-image", headers=self.plat.admin).status_code != 200:
            assert self.image_archive is not None
            r = c.post(
                "/v1/images?name=policy-image",
                content=self.image_archive.read_bytes(),
                headers={**self.plat.admin, "Content-Type": "application/x-tar"},
            )
            assert r.status_code in (201, 202), r.text
        return "policy-image"

    def refresh(self, w: TenantWorld, admin: dict[str, str] | None = None) -> None:
        """(Re)create every per-tenant resource a route may name, where it is missing."""
        admin = admin or (self.plat.admin if w is self.a else w.tokens["tenant-admin"])
        c = self.plat.client
        with self.plat.svc.db.session() as s:  # a drain leaves its host in maintenance
            for h in s.scalars(select(Host).where(Host.maintenance.is_(True))):
                h.maintenance = False

        def exists(path: str) -> bool:
            return bool(c.get(path, headers=admin).status_code == 200)

        if "cell_id" not in w.ids or not exists(f"/v1/cells/{w.ids['cell_id']}"):
            r = _ok(
                c.post(
                    f"/v1/projects/{w.project_id}/cells",
                    json={"name": new_id("c")[-12:], "image": "host", "command": ["true"]},
                    headers=admin,
                ),
                202,
            )
            w.ids["cell_id"] = r["entity"]["id"]
            w.ids["task_id"] = r["id"]
        if "volume_id" not in w.ids or not exists(f"/v1/volumes/{w.ids['volume_id']}"):
            v = _ok(
                c.post(
                    f"/v1/projects/{w.project_id}/volumes",
                    json={"name": new_id("v")[-12:], "size_gb": 1},
                    headers=admin,
                ),
                201,
            )
            w.ids["volume_id"] = v["id"]
        networks = f"/v1/projects/{w.project_id}/networks"
        if "network" not in w.ids or not exists(f"{networks}/{w.ids['network']}"):
            n = _ok(c.post(networks, json={"name": "n" + new_id("n")[-11:]}, headers=admin), 201)
            w.ids["network"] = n["name"]
        services = f"/v1/projects/{w.project_id}/services"
        shown = c.get(f"{services}/{w.ids.get('service', 'none')}", headers=admin)
        if shown.status_code != 200 or shown.json()["state"] == "DELETING":
            name = "s" + new_id("s")[-11:]
            body = {
                "name": name,
                "template": {"image": "host", "command": ["true"]},
                "instances": 1,
            }
            _ok(c.post(services, json=body, headers=admin), 202)
            w.ids["service"] = name
        endpoints = f"/v1/projects/{w.project_id}/docker-endpoints"
        if not c.get(endpoints, headers=admin).json().get("items"):
            _ok(c.post(endpoints, json={}, headers=admin), 201)
        if "cluster_id" not in w.ids or not exists(f"/v1/clusters/{w.ids['cluster_id']}"):
            now = utcnow()
            cid = new_id("cls")
            with self.plat.svc.db.session() as s:
                assert s.get(Project, w.project_id) is not None
                s.add(
                    Cluster(
                        id=cid,
                        project_id=w.project_id,
                        name=new_id("k")[-12:],
                        distro="zookeeper",
                        spec={
                            "nodeGroups": [
                                {
                                    "name": "zookeeper",
                                    "roles": ["zookeeper"],
                                    "instanceNum": 1,
                                    "cpuNum": 1,
                                    "memCapacityMB": 128,
                                    "storage": {"sizeGB": 1},
                                }
                            ]
                        },
                        state="RUNNING",
                        operation=None,
                        operation_args={},
                        created_by="test",
                        created_at=now,
                        updated_at=now,
                    )
                )
            w.ids["cluster_id"] = cid
        if "user" not in w.ids or not exists(f"/v1/users/{w.ids['user']}"):
            u = _ok(c.post("/v1/users", json={"name": new_id("u")[-12:]}, headers=admin), 201)
            w.ids["user"] = u["id"]
        if "group" not in w.ids or not exists(f"/v1/groups/{w.ids['group']}"):
            g = _ok(c.post("/v1/groups", json={"name": new_id("g")[-12:]}, headers=admin), 201)
            w.ids["group"] = g["id"]
        if "client" not in w.ids or not exists(f"/v1/clients/{w.ids['client']}"):
            cl = _ok(c.post("/v1/clients", json={"name": new_id("k")[-12:]}, headers=admin), 201)
            w.ids["client"] = cl["client_id"]
        if not exists("/v1/identity/ldap"):
            _ok(c.put("/v1/identity/ldap", json=LDAP, headers=admin), 200)
        _ok(c.put(f"/v1/groups/{w.ids['group']}/members/{w.ids['user']}", headers=admin), 200)
        if w is self.a and not exists(f"/v1/flavors/{self.flavor}"):
            flavor = {"name": self.flavor, "cpu": 1, "memory_mb": 64, "disk_gb": 1}
            _ok(c.post("/v1/flavors", json=flavor, headers=self.plat.admin), 201)
        with self.plat.svc.db.session() as s:
            task = s.get(Task, w.ids["task_id"])
            assert task is not None
            task.state = "COMPLETED"  # a terminal task: its event stream ends at once
        listed = _ok(c.get("/v1/role-assignments", headers=admin), 200)["items"]
        if "assignment_id" not in w.ids or w.ids["assignment_id"] not in {a["id"] for a in listed}:
            a = _ok(
                c.post(
                    "/v1/role-assignments",
                    json={"user": w.ids["user"], "role": "project-viewer", "project": "side"},
                    headers=admin,
                ),
                201,
            )
            w.ids["assignment_id"] = a["id"]


# Routes that need no credentials: health and metrics for probes and Prometheus, the OIDC
# provider's endpoints (they authenticate their own callers), the CA's public certificates.
PUBLIC = {"/healthz", "/readyz", "/metrics"} | (
    routes_identity.PUBLIC_ROUTES
    | routes_pki.PUBLIC_ROUTES
    | routes_quotas.PUBLIC_ROUTES
    | routes_directory.PUBLIC_ROUTES
)
# Path parameters naming something that belongs to a tenant (the rest are the operator's:
# hosts, flavors, images).
TENANT_PARAMS = {
    "project",
    "cell_id",
    "volume_id",
    "cluster_id",
    "task_id",
    "tenant",
    "user",
    "group",
    "client",
    "assignment_id",
    "serial",
    "service",
}
# Parameters inside a project: a caller with a role only in another project gets 404.
PROJECT_PARAMS = {"project", "cell_id", "volume_id", "cluster_id", "task_id", "service"}


def csr_pem(cn: str = "someone") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# Valid bodies, so that a refusal can only come from the policy (an invalid body answers 422
# before the service could say 404). Keyed by "METHOD path".
BODIES: dict[str, Callable[[TenantWorld], Any]] = {
    "POST /v1/projects": lambda w: {"name": "p" + _n()},
    "POST /v1/flavors": lambda w: {"name": "f" + _n(), "cpu": 1, "memory_mb": 64, "disk_gb": 1},
    "POST /v1/hosts/{host_id}/maintenance": lambda w: {"enabled": False},
    "POST /v1/join-tokens": lambda w: {"ttl_s": 60, "uses": 1},
    "POST /v1/projects/{project}/cells": lambda w: {
        "name": "c" + _n(),
        "image": "host",
        "command": ["true"],
    },
    "POST /v1/cells/{cell_id}/stop": lambda w: {"timeout": 1},
    "POST /v1/cells/{cell_id}/restart": lambda w: {"timeout": 1},
    "POST /v1/cells/{cell_id}/move": lambda w: {"host": "host-1"},
    "POST /v1/cells/{cell_id}/exec": lambda w: {"command": ["true"]},
    "POST /v1/projects/{project}/services": lambda w: {
        "name": "s" + _n(),
        "template": {"image": "host", "command": ["true"]},
        "instances": 1,
    },
    "POST /v1/projects/{project}/services/{service}/scale": lambda w: {"instances": 1},
    "POST /v1/projects/{project}/services/{service}/update": lambda w: {
        "template": {"image": "host", "command": ["true"]}
    },
    "POST /v1/projects/{project}/volumes": lambda w: {"name": "v" + _n(), "size_gb": 1},
    "POST /v1/projects/{project}/networks": lambda w: {"name": "n" + _n()},
    "POST /v1/cells/{cell_id}/networks": lambda w: {"network": w.ids["network"]},
    "POST /v1/projects/{project}/docker-endpoints": lambda w: {},
    # One node: a second host registered by the tests makes instancePerHost binding (3 nodes).
    "POST /v1/projects/{project}/clusters": lambda w: {
        "name": "k" + _n(),
        "distro": "zookeeper",
        "overrides": {"zk": {"instanceNum": 1}},
    },
    "POST /v1/clusters/{cluster_id}/resize": lambda w: {"nodeGroup": "zookeeper", "instanceNum": 1},
    "POST /v1/clusters/{cluster_id}/config": lambda w: {"configuration": {}},
    "POST /v1/agent/register": lambda w: {"join_token": "x", "name": "h"},
    "POST /v1/agent/hosts/{host_id}/status": lambda w: {"cells": []},
    "POST /v1/agent/hosts/{host_id}/heartbeat": lambda w: {"api_version": "agent/v1"},
    "POST /v1/tenants": lambda w: {"name": "t" + _n()},
    "PATCH /v1/tenants/{tenant}": lambda w: {"isolation": None},
    "PATCH /v1/projects/{project}": lambda w: {"isolation": "standard"},
    "POST /v1/users": lambda w: {"name": "u" + _n()},
    "PATCH /v1/users/{user}": lambda w: {"display_name": "renamed"},
    "POST /v1/groups": lambda w: {"name": "g" + _n()},
    "POST /v1/clients": lambda w: {"name": "k" + _n()},
    "POST /v1/role-assignments": lambda w: {"user": w.ids["user"], "role": "project-viewer"},
    "PUT /v1/identity/ldap": lambda w: {
        "url": "ldap://127.0.0.1:1",
        "bind_dn": "cn=x",
        "bind_password": "x",
        "user_base": "dc=x",
        "group_base": "dc=x",
        "check": False,
    },
    "PUT /v1/tenants/{tenant}/quota": lambda w: {"cells": 1000},
    "PUT /v1/projects/{project}/quota": lambda w: {"cells": 1000},
    "POST /v1/certificates": lambda w: {"csr": csr_pem()},
}
_counter = [0]


def _n() -> str:
    _counter[0] += 1
    return str(_counter[0])


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    ops = [(m.upper(), path, op) for path, item in doc["paths"].items() for m, op in item.items()]
    # Deleting a tenant goes last: a system admin may delete the other tenant.
    return sorted(ops, key=lambda o: o[1] == "/v1/tenants/{tenant}" and o[0] == "DELETE")


def declared(op: dict[str, Any]) -> tuple[str, str] | None:
    """(security scheme, permission) of an operation, from its OpenAPI security requirement."""
    for requirement in op.get("security") or []:
        for scheme, scopes in requirement.items():
            if len(scopes) == 1:
                return scheme, scopes[0]
    return None


def fill(path: str, world: TenantWorld, plat: Platform, worlds: Worlds) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "host_id" and path.endswith("/revoke"):
            return plat.register_host("spare-" + _n())[0]  # not the host the other routes use
        if name == "host_id":
            return plat.host_id
        if name == "name":
            return worlds.flavor
        if name in ("ref", "image_id"):
            return worlds.image()
        if name == "serial":
            return serial_of(world, plat, worlds)
        if name == "token_id":
            return worlds.join_token()
        if name not in world.ids:
            raise AssertionError(f"no fixture for path parameter {name!r} of {path}")
        return world.ids[name]

    return re.sub(r"\{(\w+)\}", value, path)


def serial_of(world: TenantWorld, plat: Platform, worlds: Worlds) -> str:
    if "serial" not in world.ids:
        r = plat.client.post(
            "/v1/certificates",
            json={"csr": csr_pem(world.user_ids["tenant-admin"])},
            headers=world.tokens["tenant-admin"],
        )
        assert r.status_code == 201, r.text
        world.ids["serial"] = r.json()["serial"]
    return world.ids["serial"]
