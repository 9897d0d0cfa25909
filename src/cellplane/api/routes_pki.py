"""Certificates: the CA's public material, users' client certificates, revocation.

``GET /v1/ca`` and ``GET /v1/ca/crl`` are public (PEM, for ``curl -o``); issuing, listing and
revoking need the ``self`` permission, and the service decides whose certificates the caller
may see or revoke.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from cellplane.api import models
from cellplane.api.deps import IdempotencyContext, idempotency, require, services
from cellplane.api.openapi import Pem, problem_response
from cellplane.api.respond import idempotent
from cellplane.services.context import Principal, Services
from cellplane.services.idempotency import Outcome

__all__ = ["PUBLIC_ROUTES", "router"]

router = APIRouter(tags=["certificates"])
#: Paths anyone may call without credentials (the route-policy test allows exactly these).
PUBLIC_ROUTES: set[str] = {"/v1/ca", "/v1/ca/crl"}

PEM_MEDIA_TYPE = "application/x-pem-file"
_DAY = 86400.0
_NO_TENANT = problem_response(404, "No tenant of that name.")


class CertificateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csr: str = Field(description="A PEM certificate signing request; its CN is your user id.")
    ttl_days: int = Field(default=30, ge=1, le=365)


@router.get("/v1/ca", response_class=Pem, responses={404: _NO_TENANT})
def get_ca(
    tenant: str | None = Query(default=None, min_length=1, max_length=63),
    svc: Services = Depends(services),
) -> Response:
    """The root certificate; with ``?tenant=``, that tenant's intermediate then the root."""
    from cellplane.identity import pki  # x509 only when a CA route is used

    return Response(pki.ca_chain_pem(svc, tenant), media_type=PEM_MEDIA_TYPE)


@router.get("/v1/ca/crl", response_class=Pem, responses={404: _NO_TENANT})
def get_crl(
    tenant: str | None = Query(default=None, min_length=1, max_length=63),
    svc: Services = Depends(services),
) -> Response:
    """The CRL of ``tenant``'s intermediate; without it, of the system one (host certificates)."""
    from cellplane.identity import pki  # x509 only when a CA route is used

    return Response(pki.crl_pem(svc, tenant), media_type=PEM_MEDIA_TYPE)


@router.post("/v1/certificates", status_code=201, response_model=models.IssuedCertificate)
def create_certificate(
    body: CertificateRequest,
    svc: Services = Depends(services),
    p: Principal = Depends(require("self")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    """Sign the caller's CSR: ``{serial, certificate, chain, not_after, ...}``."""
    from cellplane.identity import pki  # x509 only when a CA route is used

    def issue(s: Session) -> Outcome:
        out = pki.sign_user_csr(svc, s, p, body.csr, body.ttl_days * _DAY)
        return Outcome(201, out)

    return idempotent(svc, p, ctx, issue)


@router.get("/v1/certificates", response_model=models.CertificateList)
def list_certificates(
    svc: Services = Depends(services), p: Principal = Depends(require("self"))
) -> dict[str, Any]:
    """The caller's certificates; their tenant's for a caller with ``users:read``."""
    from cellplane.identity import pki  # x509 only when a CA route is used

    return pki.list_certificates(svc, p)


@router.post("/v1/certificates/{serial}/revoke", response_model=models.Certificate)
def revoke_certificate(
    serial: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("self")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    from cellplane.identity import pki  # x509 only when a CA route is used

    return idempotent(svc, p, ctx, lambda s: Outcome(200, pki.revoke(svc, s, p, serial)))
