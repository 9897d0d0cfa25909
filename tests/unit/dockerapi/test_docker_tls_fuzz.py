"""The Docker-compatible endpoint over its real TLS with client certificates, fuzzed (issue 14),
and a regression test for what it found.

`test_every_identity_on_every_route_over_tls` is the suite's bounded run
(`cellplane.testing.fuzz_docker_tls`): the endpoint of a fuzz server's project served with
`dockerapi.listeners.tls_context`, called with a certificate of each caller role, a revoked, an
expired, a not-yet-valid, a foreign, a forged, a self-signed and a host certificate, or none,
with or without a bearer token; and raw garbage on its port. A longer run:
`bench/fuzz.py --target docker-tls`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from cellplane.testing.fuzz import FuzzServer
from cellplane.testing.fuzz_docker_tls import (
    ADMITTED,
    REFUSED,
    DockerTlsTarget,
    TlsStats,
    client_hello,
    fuzz_docker_tls,
    garbage,
)

# A bounded run, the same on any machine: rounds, not seconds.
ROUNDS = 2


@pytest.fixture(scope="module")
def target() -> Iterator[DockerTlsTarget]:
    with FuzzServer() as server, DockerTlsTarget(server) as t:
        yield t


def _get(t: DockerTlsTarget, identity: str, path: str) -> httpx.Response:
    return t.clients[identity].get(t.url + path, timeout=10)


def test_every_identity_on_every_route_over_tls(target: DockerTlsTarget) -> None:
    stats = fuzz_docker_tls(target, 0, seed=14, rounds=ROUNDS)
    summary = stats.summary()
    assert summary["failures"] == {}, "\n\n".join(f"{k}\n{v}" for k, v in stats.failures.items())
    assert stats.server_errors == stats.bad_error_bodies == stats.state_changes == 0
    assert stats.refused_admitted == stats.listener_failures == 0
    assert summary["not_sent"] == []
    # Every identity was drawn; each valid certificate was served at least once, and the
    # handshake refused the certificates that do not chain to the root.
    assert set(stats.identities) >= {*ADMITTED, *REFUSED}
    for identity in ADMITTED:
        assert any(s.startswith("2") for s in stats.identities[identity]), identity
    for identity in ("cert:expired", "cert:foreign", "cert:forged-issuer", "cert:self-signed"):
        assert set(stats.identities[identity]) == {"tls"}, identity
    assert stats.tls_refusals > 0
    assert "403" in stats.identities["cert:project-viewer"]  # its writes were tried, and refused
    assert stats.requests > 300


def test_the_identities_are_what_they_claim(target: DockerTlsTarget) -> None:
    """The fuzzer's identities reach the endpoint as meant: a valid certificate is served, a
    revoked one and none are 401, a host's is 403, an expired one fails the handshake."""
    assert _get(target, "cert:project-viewer", "/info").status_code == 200
    r = _get(target, "cert:revoked", "/info")
    assert r.status_code == 401 and "revoked" in r.json()["message"]
    assert _get(target, "none", "/info").status_code == 401
    assert _get(target, "cert:host", "/info").status_code == 403
    r = _get(target, "cert:disabled-user", "/info")
    assert r.status_code == 401 and "disabled" in r.json()["message"]
    with pytest.raises(httpx.TransportError):
        _get(target, "cert:expired", "/info")
    target.reconnect("cert:expired")


def test_the_checks_can_fail(target: DockerTlsTarget) -> None:
    """A valid certificate sent where a refused one is expected is reported as admitted."""
    from cellplane.testing import fuzz_docker_tls as f

    stats = TlsStats()
    tex = f._TlsExample(
        "cert:project-viewer",
        None,
        f._Example("", "anonymous", [], {}, None, None, ("none", None)),
    )
    f._check(target, "GET /info", "GET", "/info", tex, stats)
    assert stats.refused_admitted == 0
    saved = f.REFUSED
    f.REFUSED = (*saved, "cert:project-viewer")  # type: ignore[misc]
    try:
        f._check(target, "GET /info", "GET", "/info", tex, stats)
    finally:
        f.REFUSED = saved  # type: ignore[misc]
    assert stats.refused_admitted == 1


@pytest.mark.parametrize(
    "data",
    [
        b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\xff\xff" + b"\x00" * 32,
        client_hello()[:40],
        b"\x00" * 512,
    ],
    ids=["plain-http", "huge-record", "truncated-hello", "zeros"],
)
def test_the_listener_survives_garbage(target: DockerTlsTarget, data: bytes) -> None:
    stats = TlsStats()
    garbage(target, "test", data, stats)
    assert stats.listener_failures == 0 and stats.failures == {}
    assert _get(target, "cert:project-member", "/_ping").text == "OK"


def test_a_listener_that_stopped_answering_is_reported(target: DockerTlsTarget) -> None:
    """`garbage` reports a listener that does not answer (here: a port nobody serves TLS on)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        elsewhere = DockerTlsTarget.__new__(DockerTlsTarget)
        elsewhere.__dict__.update(target.__dict__)
        elsewhere.port = sock.getsockname()[1]
        elsewhere.url = "https://127.0.0.1:1"
        stats = TlsStats()
        garbage(elsewhere, "test", b"x", stats)
    assert stats.listener_failures == 1


# --- what the fuzzer found (each failed before its fix) ----------------------------------------


@pytest.mark.parametrize("prefix", ["/v9.99", "/vx", "/v1.12"])
@pytest.mark.parametrize("identity", ["none", "cert:host", "cert:revoked", "cert:disabled-user"])
def test_a_refused_caller_is_refused_before_the_version_is_read(
    target: DockerTlsTarget, identity: str, prefix: str
) -> None:
    """A caller with no identity, a host's or a revoked certificate was answered 400 about an
    unknown or too old version prefix (the version was checked before the caller): it is 401 or
    403, as on every other route. A caller the endpoint serves still gets Docker's 400."""
    r = _get(target, identity, f"{prefix}/info")
    assert r.status_code in (401, 403), r.text
    r = _get(target, "cert:project-member", f"{prefix}/info")
    assert r.status_code == 400 and "version" in r.json()["message"]


def test_a_bearer_token_sent_with_a_certificate_decides(target: DockerTlsTarget) -> None:
    """With both, the token is who calls (as the REST API reads them): a garbage token is
    refused whatever the certificate, a valid one is served whatever the certificate."""
    client = target.clients["cert:system-admin"]
    r = client.get(f"{target.url}/info", headers={"Authorization": "Bearer not.a.token"})
    assert r.status_code == 401
    headers = target.server.headers["project-viewer"]
    r = target.clients["cert:revoked"].get(f"{target.url}/info", headers=headers)
    assert r.status_code == 200
    r = target.clients["cert:system-admin"].post(f"{target.url}/volumes/create", headers=headers)
    assert r.status_code == 403  # the viewer's rights, not the certificate's admin
