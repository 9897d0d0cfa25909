"""Client certificates (mutual TLS) issued by the tenant's CA, and the CA itself.

A part of `cellplane.client.Client`.
"""

from __future__ import annotations

from typing import cast

from cellplane.client._base import BaseClient, seg
from cellplane.client.models import Certificate, IssuedCertificate

__all__ = ["CertificatesApi"]


class CertificatesApi(BaseClient):
    """The `/v1/certificates` and `/v1/ca` routes of the API."""

    def request_certificate(
        self, csr_pem: str, *, ttl_days: int | None = None, idempotency_key: str | None = None
    ) -> IssuedCertificate:
        """Sign the caller's CSR (PEM): the record with `certificate` and `chain` (PEM)."""
        body: dict[str, object] = {"csr": csr_pem}
        if ttl_days is not None:
            body["ttl_days"] = ttl_days
        data = self._json(
            "POST", "/v1/certificates", json_body=body, idempotency_key=idempotency_key
        )
        return cast(IssuedCertificate, data)

    def list_certificates(self) -> list[Certificate]:
        """The caller's certificates (a tenant admin: the tenant's)."""
        return [cast(Certificate, c) for c in self._iter("/v1/certificates")]

    def revoke_certificate(self, serial: str, *, idempotency_key: str | None = None) -> Certificate:
        """Revoke a certificate (hex serial); it is in the CRL from now on."""
        path = f"/v1/certificates/{seg(serial)}/revoke"
        return cast(Certificate, self._json("POST", path, idempotency_key=idempotency_key))

    def ca_certificates(self, tenant: str | None = None) -> str:
        """The root CA (PEM); with `tenant`, that tenant's intermediate, then the root."""
        params = [("tenant", tenant)] if tenant else None
        response = self._send(
            "GET", "/v1/ca", params=params, headers={"Accept": "application/x-pem-file"}
        )
        return response.text
