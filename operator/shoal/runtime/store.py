"""Objects of one kind as their watch, or this process's own writes, last showed them: a reconcile
reads from here instead of the API server, as client-go's listers do.

Two rules keep it no staler than a GET would be in the cases that matter: an event or answer older
than what is held (by resourceVersion) never replaces it, so the answer to this process's own write
is not undone by the late echo of an earlier one; and an object seen deleted is remembered for a while
(a tombstone), so a late, older event cannot bring it back. What the store has never seen is not
known to be absent: `get` says so, and the caller reads it from the API server (`read`).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from typing import Any

GONE_KEPT = 10_000  # objects seen going, remembered so a late, older event cannot bring one back

Key = tuple[str, str]  # (namespace, name)


def _number(resource_version: object) -> int | None:
    """A resourceVersion as a number. resourceVersions are opaque to clients, but every API server
    backed by etcd3 issues them as increasing integers; None (never compared) otherwise."""
    try:
        return int(str(resource_version))
    except ValueError:
        return None


def version(obj: Mapping[str, Any]) -> int | None:
    return _number((obj.get("metadata") or {}).get("resourceVersion", ""))


def older(new: Mapping[str, Any], than: int | str | None) -> bool:
    """`new` carries an older resourceVersion than `than`; anything not a number is never older."""
    mine, theirs = version(new), _number(than)
    return mine is not None and theirs is not None and mine < theirs


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", ""), meta.get("name", ""))


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._gone: dict[Key, int | None] = {}  # key -> resourceVersion it went at, oldest first

    def put(self, obj: Mapping[str, Any]) -> bool:
        """Keep `obj` unless what is held (or the tombstone) is newer; True when kept."""
        key = key_of(obj)
        with self._lock:
            held = self._objects.get(key)
            if held is not None and older(obj, version(held)):
                return False
            if held is None and key in self._gone and older(obj, self._gone[key]):
                return False
            self._gone.pop(key, None)
            self._objects[key] = dict(obj)
            return True

    def gone(self, obj: Mapping[str, Any]) -> None:
        """`obj` was deleted (its DELETED event, or a 404): forget it, and ignore older versions of it."""
        key = key_of(obj)
        with self._lock:
            self._objects.pop(key, None)
            self._gone.pop(key, None)
            self._gone[key] = version(obj)
            while len(self._gone) > GONE_KEPT:
                del self._gone[next(iter(self._gone))]

    def drop(self, namespace: str, name: str) -> None:
        """Forget an object without a tombstone: it still exists but is no longer this store's to hold
        (a pod given back to its pool); the next `read` asks the API server."""
        with self._lock:
            self._objects.pop((namespace, name), None)

    def event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """A watch event."""
        if event_type == "DELETED":
            self.gone(obj)
        else:
            self.put(obj)

    def get(self, namespace: str, name: str) -> tuple[bool, dict[str, Any] | None]:
        """(known, object): (True, None) for an object seen deleted, (False, None) for one never seen."""
        with self._lock:
            obj = self._objects.get((namespace, name))
            if obj is not None:
                return True, copy.deepcopy(obj)
            return (namespace, name) in self._gone, None

    def read(
        self, namespace: str, name: str, fetch: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """The object from the store; from `fetch` (a GET, None when absent) only when the store has
        never seen it. What `fetch` finds is kept."""
        known, obj = self.get(namespace, name)
        if known:
            return obj
        fetched = fetch()
        if fetched is not None:
            self.put(fetched)
        return fetched

    def items(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's objects (not copies: callers only read them)."""
        with self._lock:
            return [obj for (ns, _), obj in self._objects.items() if ns == namespace]

    def size(self) -> int:
        with self._lock:
            return len(self._objects)
