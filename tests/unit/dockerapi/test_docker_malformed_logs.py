"""A malformed request to an aiohttp listener (the Docker endpoint's) is logged as one line that
names the problem, not as an ERROR with a traceback per request; errors of the server's own
code keep theirs. Against a real aiohttp server on a loopback port."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
from aiohttp import web

from cellplane.logs import MalformedRequests


async def _serve_and_send(raw: bytes) -> bytes:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("the handler's own defect")

    app = web.Application()
    app.router.add_get("/boom", boom)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
        return answer
    finally:
        await runner.cleanup()


@pytest.fixture
def filtered() -> Iterator[logging.Logger]:
    server = logging.getLogger("aiohttp.server")
    f = MalformedRequests()
    server.addFilter(f)
    yield server
    server.removeFilter(f)


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon in this header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    ],
    ids=["bad-header", "oversized-header", "bad-version"],
)
def test_a_malformed_request_is_one_warning_without_a_traceback(
    raw: bytes, filtered: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        answer = asyncio.run(_serve_and_send(raw))
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "aiohttp logged nothing: the test no longer sees what it checks"
    for r in records:
        assert r.levelno == logging.WARNING and r.exc_info is None and r.exc_text is None
        assert "malformed request refused (400)" in r.getMessage()


def test_the_servers_own_error_keeps_its_traceback(
    filtered: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        answer = asyncio.run(_serve_and_send(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert b" 500 " in answer.split(b"\r\n")[0]
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.levelno for r in records] == [logging.ERROR]
    assert records[0].exc_info is not None and "the handler's own defect" in caplog.text


def test_the_daemons_logging_installs_the_filter_once() -> None:
    probe = (
        "import logging; from cellplane import logs; logs.configure(); logs.configure();"
        "print(sum(isinstance(f, logs.MalformedRequests)"
        " for f in logging.getLogger('aiohttp.server').filters))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
