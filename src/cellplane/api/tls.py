"""The TLS peer certificate in the ASGI scope, which uvicorn does not put there itself.

:class:`TLSH11Protocol` is uvicorn's h11 HTTP protocol plus the ASGI TLS extension: on a TLS
connection every request's ``scope["extensions"]["tls"]`` holds, as the extension specifies,
``client_cert_chain`` (PEM strings, the client certificate first; empty when the client sent
none) and ``tls_version``. Python's ``ssl`` exposes only the verified peer's leaf certificate
(``getpeercert(binary_form=True)``), so the chain holds that one certificate; the handshake
(``CERT_OPTIONAL`` against the deployment's root) has already verified it chains to our root.

Select it with ``uvicorn.Config(..., http=TLSH11Protocol)``; without TLS it behaves exactly as
uvicorn's own h11 protocol. A WebSocket upgrade hands the connection to uvicorn's WebSocket
protocol, which gets the same extension.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Final, cast

import h11
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["TLSH11Protocol", "tls_extension"]

_TLS_VERSIONS: Final = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """The ASGI TLS extension's dict for one established TLS connection."""
    der = ssl_object.getpeercert(binary_form=True)
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }


class _WithTLS:
    """Adds one connection's TLS extension to each request's scope, then calls the app."""

    def __init__(self, app: ASGI3Application, extension: dict[str, Any]) -> None:
        self._app = app
        self._extension = extension

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = cast(dict[str, Any], scope)
            extensions = raw.get("extensions")
            if not isinstance(extensions, dict):
                extensions = raw["extensions"] = {}
            extensions["tls"] = self._extension
        await self._app(scope, receive, send)


class TLSH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that reports the TLS client certificate (ASGI TLS extension)."""

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        self._tls: dict[str, Any] | None = None
        if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            # asyncio calls connection_made once the handshake (client certificate included)
            # has completed, so the peer certificate is known here, once per connection.
            self._tls = tls_extension(ssl_object)
            self.app = _WithTLS(self.app, self._tls)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """The WebSocket protocol that takes the connection over builds its app from the config:
        it gets the TLS extension too (for `GET /v1/cells/{id}/exec` with a client certificate).
        Synchronous, on the event loop's thread: no other connection sees the swap."""
        if self._tls is None:
            super().handle_websocket_upgrade(event)
            return
        config = self.config
        app = config.loaded_app
        config.loaded_app = _WithTLS(cast(ASGI3Application, app), self._tls)
        try:
            super().handle_websocket_upgrade(event)
        finally:
            config.loaded_app = app
