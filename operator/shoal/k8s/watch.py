"""List, then watch, one collection in a thread of its own: client-go's reflector, on plain dicts.

The operator's pod watch is its busiest (every pod's create, schedule, start, readiness and every
agent's progress report). Through kopf, each of those events went through kopf's per-object worker
task, its causes and its handler bookkeeping before reaching a handler that only files the pod in a
cache and enqueues a key: B1's profile (bench/results/profile-b1.json, py-spy on the operator) put
kopf's machinery at half the operator's CPU. kopf offers no lighter path for an event handler, so
pods come through this instead; kopf keeps the custom resources, the probes and the lifecycle.

What it does, as client-go's reflector does: a paged LIST gives the objects and a resourceVersion;
a WATCH from there (with bookmarks, so a quiet watch still advances it) delivers each change; a
watch that ends is resumed from the last resourceVersion, one that is too old (410 Gone) starts over
with a LIST, and whatever that LIST no longer holds is delivered as DELETED (it went while the watch
was down). A broken connection or an error answer is retried with a growing delay.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

from shoal import telemetry
from shoal.k8s.client import Kube

log = logging.getLogger("shoal.watch")
WATCH_SECONDS = 270  # the server ends a watch after this; it is resumed at once from where it was
PAGE = 500  # objects per LIST page (client-go's reflector pages at 500 too)
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)

Event = tuple[str | None, dict[str, Any]]  # (None for a listed object, ADDED / MODIFIED / DELETED)
Deliver = Callable[[list[Event]], None]


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class Reflector:
    def __init__(self, kube: Kube, path: str, label_selector: str, deliver: Deliver) -> None:
        """`deliver` gets each batch of events (a page of the list, or what one read of the stream
        brought) in this thread; it may block until they are handled, which paces the reading."""
        self.kube, self.path, self.selector, self.deliver = kube, path, label_selector, deliver
        self.resource_version = ""  # empty: list (again) before watching
        self.synced = threading.Event()  # set after the first LIST has been delivered
        # (namespace, name) -> its identity as last seen, for the DELETED a LIST implies (kept slim:
        # a whole pod per pod would cost B4's 5000 pods tens of MiB).
        self._known: dict[tuple[str, str], dict[str, Any]] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                if not self.resource_version:
                    self._list()
                started = time.monotonic()
                if not self._watch() and time.monotonic() - started < 1.0:
                    # Ended at once with nothing (a proxy closing it, say): not a watch to resume in a
                    # tight loop, but a failure to back off from.
                    raise RuntimeError("the watch ended at once")
                failures = 0
            except Expired:
                log.info("watch of %s expired at %s; listing again", self.path, self.resource_version)
                self.resource_version = ""
            except Exception as exc:  # an API server restart, a dropped connection, an error answer
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("watch of %s failed (%s); again in %.1fs", self.path, exc, delay)
                self._stopping.wait(delay)

    def _list(self) -> None:
        """Each page delivered as it comes (a list of every pod held at once, beside the primer's, was
        the operator's peak memory at a restart over 5,000 pods), then what the list no longer holds."""
        listed: dict[tuple[str, str], dict[str, Any]] = {}
        meta: dict[str, Any] = {}
        for page in self.kube.pages(self.path, self.selector, PAGE):
            items = page.pop("items", None) or []
            listed.update((_key(obj), _slim(obj)) for obj in items)
            self.deliver([(None, obj) for obj in items])
            meta = page.get("metadata") or {}
        # Gone while nobody watched: as a watch would have said it.
        gone: list[Event] = [("DELETED", obj) for key, obj in self._known.items() if key not in listed]
        self._known = listed
        self.resource_version = str(meta.get("resourceVersion", ""))
        if gone:
            self.deliver(gone)
        self.synced.set()

    def _watch(self) -> bool:
        """One watch until the server ends it; True when it delivered anything."""
        query = {
            "watch": "true",
            "labelSelector": self.selector,
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": WATCH_SECONDS,
        }
        _, url, headers, _, _ = self.kube.api.param_serialize(
            "GET",
            f"{self.path}?{urlencode(query)}",
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        answer = self.kube.api.call_api(
            "GET", url, header_params=headers, _request_timeout=(10, WATCH_SECONDS + 30)
        )
        raw = answer.response
        telemetry.API_REQUESTS.labels("GET", str(answer.status)).inc()  # as client-go counts a watch
        delivered = ended = False
        try:
            if answer.status == 410:  # the API server may say it as the answer, not as an event
                raise Expired()
            if answer.status != 200:
                raise RuntimeError(f"{answer.status} {answer.reason}: {raw.data[:200]!r}")
            for chunk in _chunks(raw):
                batch = self._events(chunk)
                if batch:
                    self.deliver(batch)
                    delivered = True
                if self._stopping.is_set():
                    break
            else:
                ended = True  # the server ended it: the connection is clean
        finally:
            if not ended:
                raw.close()  # unread bytes left: never hand this connection to another request
            raw.release_conn()
        return delivered

    def _events(self, chunk: list[bytes]) -> list[Event]:
        batch: list[Event] = []
        for line in chunk:
            event = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Expired()
                raise RuntimeError(f"watch error: {obj.get('message') or obj}")
            if rv:
                self.resource_version = rv
            if kind == "BOOKMARK":
                continue
            if kind == "DELETED":
                self._known.pop(_key(obj), None)
            else:
                self._known[_key(obj)] = _slim(obj)
            batch.append((kind, obj))
        return batch


def _chunks(raw: Any) -> Iterator[list[bytes]]:
    """The stream's lines, grouped by the read that brought them (so a burst is delivered at once)."""
    pending: list[bytes] = []
    rest = b""
    for data in raw.stream(None, decode_content=True):
        rest += data
        *whole, rest = rest.split(b"\n")
        pending.extend(line for line in whole if line.strip())
        if pending:
            yield pending
            pending = []


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    """What a DELETED event's handlers read: the object's identity and labels."""
    meta = obj.get("metadata") or {}
    keep = ("name", "namespace", "uid", "resourceVersion", "labels")
    return {"metadata": {k: meta[k] for k in keep if k in meta}}
