"""A fault-injecting HTTP proxy in front of the test bed's API server, for tests of what the operator does
when requests fail: a status write answered 500, a response lost after the write was made, a throttled
POST (429 with Retry-After), a slow or dropped connection.

Clients reach it over plain HTTP on loopback (`kubeconfig()` writes one); it forwards to the API server
over TLS with the test bed's admin certificate, or, when the client sends its own bearer token (a pod's
agent), with that token alone, so the API server still judges that client's permissions. Responses are
streamed, so watches work through it. A real reverse proxy (e.g. toxiproxy) works at the TCP level and
cannot fail one kind of request; hence this one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from testbed.cluster import HOST, PKI, PORTS

DROPPED = "fault proxy dropped the connection"


def _not_a_drop(record: logging.LogRecord) -> bool:
    """aiohttp logs a traceback for every connection the handler closed; a dropped one is on purpose."""
    exc = record.exc_info[1] if record.exc_info else None
    return not (isinstance(exc, ConnectionResetError) and str(exc) == DROPPED)


logging.getLogger("aiohttp.server").addFilter(_not_a_drop)

HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
    "upgrade",
}


@dataclass
class Fault:
    """Requests matching `method` and the `path` pattern fail with `probability`, at most `limit` times;
    the first `at_least` of them fail whatever the probability (a test that counts on each fault happening
    gets it however few matching requests its run makes). `after`: the request reaches the API server
    first and only its answer is replaced (a lost response)."""

    name: str
    method: str
    path: str
    status: int = 500
    probability: float = 1.0
    limit: int | None = None
    at_least: int = 0
    after: bool = False
    retry_after: float | None = None
    delay: float = 0.0
    drop: bool = False  # close the connection instead of answering
    passes: bool = False  # latency only: after `delay`, the request goes on to the API server
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self.pattern = re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and bool(self.pattern.search(path))


class FaultProxy:
    def __init__(self, seed: int = 0) -> None:
        self.faults: list[Fault] = []
        self.injected: Counter[str] = Counter()  # fault name → times it fired
        self.requests: Counter[tuple[str, str]] = Counter()  # (verb, path without query) → count
        # Every write that reached the API server: (monotonic time it was sent on, verb, path, status,
        # holderIdentity for a Lease write). What a test of "who wrote when" reads.
        self.journal: list[tuple[float, str, str, int, str | None]] = []
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._upstream = f"https://{HOST}:{PORTS['kube-apiserver']}"

    # --- control (from the test's thread) --------------------------------------------------------------

    def add(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()

    def start(self) -> int:
        threading.Thread(target=self._serve, name="fault-proxy", daemon=True).start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self.port

    def stop(self) -> None:
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: proxy\n  cluster:\n    server: http://{HOST}:{self.port}\n"
            "users:\n- name: proxy\n  user: {}\n"
            "contexts:\n- name: proxy\n  context: {cluster: proxy, user: proxy}\ncurrent-context: proxy\n"
        )
        return path

    # --- serving (on the proxy's own loop) -------------------------------------------------------------

    def _pick(self, method: str, path: str, after: bool, delay_only: bool = False) -> Fault | None:
        """A fault to apply now; `delay_only`: the latency faults (they delay, then pass the request on)."""
        with self.lock:
            for f in self.faults:
                if f.after != after or not f.matches(method, path) or delay_only != f.passes:
                    continue
                if f.limit is not None and self.injected[f.name] >= f.limit:
                    continue
                if self.injected[f.name] < f.at_least or self.rng.random() < f.probability:
                    self.injected[f.name] += 1
                    return f
        return None

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._open())
        self._ready.set()
        self._loop.run_forever()

    async def _open(self) -> None:
        admin = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
        admin.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
        self._as_admin = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=admin, limit=0))
        bare = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
        self._as_client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=bare, limit=0))
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _close(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
        await self._as_admin.close()
        await self._as_client.close()

    async def _answer(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.drop:
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError(DROPPED)
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": f"injected by the fault proxy: {fault.name}",
            "reason": "TooManyRequests" if fault.status == 429 else "InternalError",
            "code": fault.status,
        }
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        return web.json_response(status, status=fault.status, headers=headers)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        with self.lock:
            self.requests[(method, path)] += 1
        fault = self._pick(method, path, after=False)
        if fault:
            return await self._answer(request, fault)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        session = self._as_client if "Authorization" in request.headers else self._as_admin
        body = await request.read()
        if fault := self._pick(method, path, after=False, delay_only=True):
            await asyncio.sleep(fault.delay)  # latency on the way in: the write lands later
        sent = time.monotonic()
        async with session.request(
            method, self._upstream + request.path_qs, headers=headers, data=body or None, timeout=None
        ) as upstream:
            if method != "GET":
                holder = None
                if "/leases" in path and body:
                    holder = (json.loads(body).get("spec") or {}).get("holderIdentity")
                with self.lock:
                    self.journal.append((sent, method, path, upstream.status, holder))
            late = self._pick(method, path, after=True)
            if late:
                await upstream.read()  # the write is made; its answer is lost
                return await self._answer(request, late)
            out = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP},
            )
            try:
                await out.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
            except (ConnectionResetError, aiohttp.ClientError):
                pass  # the client went away (a killed operator), or the API server ended the watch
            return out
