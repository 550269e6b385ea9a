"""The leader's fence, checked again as each request's bytes go onto the socket.

`Kube.request` checks the fence before it hands a write to the transport, but a replica frozen after
that check (SIGSTOP, a paused VM, a long stall of the process) sends the write when it thaws, after
another replica may have taken over: the e2e hand-over test caught one landing 10 ms after a thaw.
The API server has no fencing tokens, so the check goes as close to the send as urllib3 allows: the
connection's send(), for every chunk of a fenced request (a request cut off after its headers is
never acted on). What is left is the few bytecodes between that check and the system call.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_armed = threading.local()  # this thread's open() check while it sends a fenced request


class FenceClosed(Exception):
    """Raised from a connection's send(): the fence closed before the bytes went out."""


def _check() -> None:
    is_open: Callable[[], bool] | None = getattr(_armed, "is_open", None)
    if is_open is not None and not is_open():
        raise FenceClosed()


@contextlib.contextmanager
def armed(is_open: Callable[[], bool]) -> Iterator[None]:
    """Every send() this thread makes inside the block first asks `is_open`."""
    _armed.is_open = is_open
    try:
        yield
    finally:
        _armed.is_open = None


class _FencedHTTPConnection(HTTPConnection):
    def send(self, data: Any) -> None:
        _check()
        super().send(data)


class _FencedHTTPSConnection(HTTPSConnection):
    def send(self, data: Any) -> None:
        _check()
        super().send(data)


class _FencedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _FencedHTTPConnection


class _FencedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _FencedHTTPSConnection


def install(manager: PoolManager) -> None:
    """Connections the manager opens from now on check the armed fence (none is open before the first
    request)."""
    manager.pool_classes_by_scheme = {"http": _FencedHTTPPool, "https": _FencedHTTPSPool}
