"""The running Docker-compatible listeners (aiohttp), one TLS port per endpoint in the database.

Loaded by `cellplane.dockerapi.supervisor` only once the database holds an endpoint: aiohttp,
the handlers and the CA code (~19 MB resident) stay out of a server that has none.

TLS: the server certificate from Cellplane's CA (the one `server --tls` uses); a client
certificate is asked for and checked against the same CA (optional at the TLS layer, so scripts
may send a bearer token instead; a request with neither is refused by the endpoint).
"""

from __future__ import annotations

import contextlib
import ssl

import structlog
from aiohttp import web

from cellplane.dockerapi.base import EndpointContext, blocking
from cellplane.dockerapi.server import make_app
from cellplane.identity import pki
from cellplane.identity.authn import Authenticator
from cellplane.services import agent_tls, docker_endpoints
from cellplane.services.context import Services

__all__ = ["Listeners", "tls_context"]

log = structlog.get_logger("cellplane.dockerapi")


def tls_context(svc: Services) -> ssl.SSLContext:
    """The endpoints' server-side TLS: Cellplane's server certificate, client certificates
    requested and verified against Cellplane's CA.

    Besides the root, the CA's intermediates (the system one and each tenant's at the time) are
    trust anchors, partial chains allowed: a client's chain (its certificate, its tenant's CA)
    then ends at that CA, which is Cellplane's own, and the CA's own signature by the root (EC
    P-384: ~1.7 ms, on the event loop, per handshake, against ~0.25 ms for the P-256 leaf) is not
    checked again on every connection. It accepts the same certificates as the root alone: the
    root stays an anchor, so a tenant made after this context still verifies through it."""
    cert, key = pki.server_certificate(svc, pki.default_server_names(svc.docker_listen_host))
    authority = pki.ca(svc)
    cas = [authority.system, *(authority.tenant(t) for t in authority.tenants)]
    ctx = ssl.create_default_context(
        ssl.Purpose.CLIENT_AUTH,
        cadata=authority.root_cert_pem + "".join(ca.cert_pem for ca in cas),
    )
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class Listeners:
    """The running listeners, reconciled with the `docker_endpoints` table."""

    def __init__(self, svc: Services, authn: Authenticator) -> None:
        self.svc = svc
        self.authn = authn
        self.agent = agent_tls.async_client(svc)
        self.running: dict[str, tuple[int, web.AppRunner]] = {}
        self._tls: ssl.SSLContext | None = None

    async def reconcile(self, rows: list[docker_endpoints.Listener]) -> None:
        """Start and stop listeners to match `rows` ((endpoint id, project id, port) each, as
        `services.docker_endpoints.listeners` reads them)."""
        wanted = {ep_id: (project_id, port) for ep_id, project_id, port in rows}
        for ep_id in [
            e for e in self.running if e not in wanted or self.running[e][0] != wanted[e][1]
        ]:
            await self._stop(ep_id)
        for ep_id, (_, port) in wanted.items():
            if ep_id not in self.running:
                try:
                    await self._start(ep_id, port)
                except Exception as exc:  # a port taken meanwhile: retried at the next pass
                    log.warning(
                        "docker endpoint not started", endpoint=ep_id, port=port, error=str(exc)
                    )

    async def _start(self, ep_id: str, port: int) -> None:
        found = await blocking(docker_endpoints.endpoint_project, self.svc, ep_id)
        if found is None:
            return
        project_id, project_name, _ = found
        if self._tls is None:
            self._tls = await blocking(tls_context, self.svc)
        ctx = EndpointContext(
            svc=self.svc,
            authn=self.authn,
            agent=self.agent,
            endpoint_id=ep_id,
            project_id=project_id,
            project_name=project_name,
        )
        runner = web.AppRunner(make_app(ctx), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, self.svc.docker_listen_host, port, ssl_context=self._tls, reuse_address=True
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.running[ep_id] = (port, runner)
        log.info("docker endpoint listening", endpoint=ep_id, project=project_name, port=port)

    async def _stop(self, ep_id: str) -> None:
        _, runner = self.running.pop(ep_id)
        await runner.cleanup()
        log.info("docker endpoint closed", endpoint=ep_id)

    async def close(self) -> None:
        for ep_id in list(self.running):
            with contextlib.suppress(Exception):
                await self._stop(ep_id)
        await self.agent.aclose()
