"""The agent's client of the server API (register, heartbeat, assignments, status, image content).

The agent talks to the server only through these HTTP calls, in `cellplane up` as on a thousand hosts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import re
import ssl
import time
from pathlib import Path
from typing import Any, Final

import httpx

from cellplane.files import ensure_private_dir, read_private_file, write_private_file
from cellplane.server_urls import ServerRotation, parse_servers
from cellplane.validation import DNS_LABEL
from cellplane.wire import agent_plain as wire

__all__ = ["ProtocolMismatch", "Refused", "ServerClient", "ServerUnavailable", "host_csr"]

# What the CA accepts as a common name, and as a DNS name (lowercase labels).
_CN: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._@-]{0,62}[A-Za-z0-9])?$")
_DNS_LABEL: Final = DNS_LABEL


def host_csr(cert_dir: Path, name: str, address: str) -> str | None:
    """A CSR for this host's certificate (CN: ``name``; SANs: ``name`` if it is a DNS name,
    ``address`` if it is an IP), signed by the host key ``cert_dir/host.key`` (EC P-256,
    created 0600 on first use and kept). None if ``name`` cannot be a certificate's name."""
    # Imported here: only agents of a TLS server ask for a certificate (~6 MB less otherwise).
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    sans: list[x509.GeneralName] = []
    if len(name) <= 253 and all(_DNS_LABEL.fullmatch(label) for label in name.split(".")):
        sans.append(x509.DNSName(name))
    with contextlib.suppress(ValueError):
        sans.append(x509.IPAddress(ipaddress.ip_address(address)))
    if not _CN.fullmatch(name) or not sans:
        return None
    ensure_private_dir(cert_dir)
    key_path = cert_dir / "host.key"
    if key_path.exists():
        loaded = serialization.load_pem_private_key(read_private_file(key_path), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        key = loaded
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(key_path, pem)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


class ServerUnavailable(Exception):
    """The server did not answer or answered 5xx: retry later."""


class Refused(RuntimeError):
    """The server refused the agent's credential (401/403): e.g. its certificate was revoked."""


class ProtocolMismatch(Exception):
    """The server speaks another version of the agent protocol (`wire.agent.API_VERSION`)."""


class ServerClient:
    """``ca_file``: the root certificate to verify an HTTPS server with (the deployment's CA)
    instead of the system's bundle. ``cert_dir``: where to keep a host certificate; when set,
    registration sends a CSR and stores the certificate the server answers with (``host.pem``,
    the chain; ``host.key`` 0600): a credential for mTLS between server and agent."""

    def __init__(
        self,
        base_url: str,
        *,
        verify: bool | str = True,
        ca_file: str | Path | None = None,
        cert_dir: Path | None = None,
    ) -> None:
        # Several replicas ("http://a:7400,http://b:7400"): a connection error moves on.
        self._servers = ServerRotation(parse_servers(base_url))
        self._cert_dir = cert_dir
        self._verify = verify
        self._ca_file = ca_file
        self.host_id: str | None = None
        self._token: str | None = None
        self._last_register: wire.RegisterRequest | None = None
        # With a valid host certificate from an earlier run: mutual TLS from the first call.
        self._http = self._client(with_cert=self._certificate_valid())

    def _client(self, *, with_cert: bool) -> httpx.Client:
        trust: bool | str | ssl.SSLContext = self._verify
        if self._ca_file is not None or with_cert:
            trust = ssl.create_default_context(
                cafile=str(self._ca_file) if self._ca_file is not None else None
            )
            if with_cert and self._cert_dir is not None:
                trust.load_cert_chain(self._cert_dir / "host.pem", self._cert_dir / "host.key")
        self._mtls = with_cert
        return httpx.Client(
            base_url=self.base_url,
            # The CA bundle costs ~5 MB of memory: load it only for an HTTPS server.
            verify=trust if self.base_url.startswith("https") else False,
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    @property
    def base_url(self) -> str:
        """The server (replica) the agent talks to now."""
        return self._servers.current

    def _fail_over(self) -> None:
        if len(self._servers) > 1:
            self._http.base_url = httpx.URL(self._servers.failed(str(self._http.base_url)))

    def _swap_client(self, *, with_cert: bool) -> None:
        old, self._http = self._http, self._client(with_cert=with_cert)
        old.close()

    def _certificate(self) -> Any:
        """This host's certificate (``cert_dir/host.pem``), None if there is none."""
        if self._cert_dir is None or not self.base_url.startswith("https"):
            return None
        from cryptography import x509

        try:
            return x509.load_pem_x509_certificate((self._cert_dir / "host.pem").read_bytes())
        except (OSError, ValueError):
            return None

    def _certificate_valid(self) -> bool:
        cert = self._certificate()
        if cert is None or not (self._cert_dir / "host.key").exists():  # type: ignore[operator]
            return False
        now = time.time()
        return bool(
            cert.not_valid_before_utc.timestamp() <= now < cert.not_valid_after_utc.timestamp()
        )

    def rotation_due(self, now: float | None = None) -> bool:
        """Whether the host certificate is in the last third of its lifetime: time to ask for
        a new one (registration with the current certificate; cells are not touched)."""
        cert = self._certificate()
        if cert is None or not self._mtls:
            return False
        start = cert.not_valid_before_utc.timestamp()
        end = cert.not_valid_after_utc.timestamp()
        return bool((time.time() if now is None else now) >= end - (end - start) / 3)

    @property
    def mutual_tls(self) -> bool:
        """Whether the agent authenticates with its host certificate (no bearer token)."""
        return self._mtls

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _call(self, method: str, url: str, **kw: Any) -> httpx.Response:
        tries = len(self._servers)
        while True:
            try:
                r = self._http.request(method, url, headers=self._headers(), **kw)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                # Never reached that replica: the next one gets the same request at once.
                self._fail_over()
                tries -= 1
                if tries <= 0:
                    raise ServerUnavailable(f"{method} {url}: {e}") from e
            except httpx.HTTPError as e:
                self._fail_over()  # may have reached it: the caller retries later, elsewhere
                raise ServerUnavailable(f"{method} {url}: {e}") from e
        if r.status_code >= 500:
            raise ServerUnavailable(f"{method} {url}: HTTP {r.status_code}")
        if r.status_code == 422 and "api_version" in r.text:
            raise ProtocolMismatch(
                f"{method} {url}: this agent speaks {wire.API_VERSION}: {r.text[:300]}"
            )
        if r.status_code in (401, 403):
            raise Refused(f"{method} {url}: HTTP {r.status_code}: {r.text[:300]}")
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {url}: HTTP {r.status_code}: {r.text[:300]}")
        return r

    def _read(self, model: type[wire.M], data: Any) -> wire.M:
        try:
            return wire.parse(model, data)
        except wire.ProtocolError as e:
            if e.version_mismatch:
                raise ProtocolMismatch(str(e)) from None
            raise

    def register(self, request: wire.RegisterRequest | dict[str, Any]) -> str:
        """Register (join): with the host certificate if this host has a valid one, else with
        the join token; a certificate the server refuses (revoked) is dropped and the join token
        tried. The certificate received is kept and used from then on (mutual TLS)."""
        body = wire.parse(
            wire.RegisterRequest,
            {"api_version": wire.API_VERSION, **request} if isinstance(request, dict) else request,
        )
        self._last_register = body
        if self._cert_dir is not None and body.csr is None:
            csr = host_csr(self._cert_dir, body.name, str(body.address))
            body = dataclasses.replace(body, csr=csr)
        payload = wire.dump(body, exclude_none=True)
        try:
            r = self._call("POST", "/v1/agent/register", json=payload)
        except Refused:
            if not self._mtls:
                raise
            self._swap_client(with_cert=False)  # e.g. revoked: join again with the token
            r = self._call("POST", "/v1/agent/register", json=payload)
        data = self._read(wire.RegisterAnswer, r.json())
        self.host_id = data.host_id
        self._token = data.host_token or None
        chain = data.certificate_chain
        if self._cert_dir is not None and isinstance(chain, str):
            write_private_file(self._cert_dir / "host.pem", chain.encode("ascii"))
            if not data.host_token:  # the server wants mutual TLS from now on
                self._swap_client(with_cert=True)
        return self.host_id

    def heartbeat(self) -> None:
        if self._last_register is not None and self.rotation_due():
            self.register(self._last_register)  # a new certificate before this one expires
        self._call(
            "POST",
            f"/v1/agent/hosts/{self.host_id}/heartbeat",
            json={"api_version": wire.API_VERSION},
        )

    def assignments(self, revision: int, wait: float) -> wire.Assignments:
        r = self._call(
            "GET",
            f"/v1/agent/hosts/{self.host_id}/assignments",
            params={"revision": revision, "wait": wait},
            timeout=wait + 15,
        )
        return self._read(wire.Assignments, r.json())

    def overlay(self) -> wire.Overlay:
        """The host's overlay networks: the peer hosts and their cells (`wire.Overlay`)."""
        r = self._call("GET", f"/v1/agent/hosts/{self.host_id}/overlay")
        return self._read(wire.Overlay, r.json())

    def report(self, cells: list[dict[str, Any]]) -> None:
        body = {"api_version": wire.API_VERSION, "cells": cells}
        # Checked before it is sent; sent as given, since a field's presence matters to the
        # server (`message: null` clears a message, no `message` keeps it).
        wire.parse(wire.StatusReport, body)
        self._call("POST", f"/v1/agent/hosts/{self.host_id}/status", json=body)

    def download_image(self, image_id: str, dest: Path) -> None:
        tmp = dest.with_suffix(".part")
        try:
            with self._http.stream(
                "GET",
                f"/v1/agent/hosts/{self.host_id}/images/{image_id}/content",
                headers=self._headers(),
                timeout=300,
            ) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"image {image_id}: HTTP {r.status_code}")
                with tmp.open("wb") as f:
                    for chunk in r.iter_bytes(1 << 20):
                        f.write(chunk)
            tmp.replace(dest)
        except httpx.HTTPError as e:
            self._fail_over()
            raise ServerUnavailable(f"image {image_id}: {e}") from e
        finally:
            tmp.unlink(missing_ok=True)
