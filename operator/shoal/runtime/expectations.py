"""What a pool has asked of the API server and not yet seen in its watch: kcm's ControllerExpectations.

A pool plans from the watch cache. Right after it creates pods, the cache does not show them yet, so
a second pass would create them again; right after it deletes pods, it would delete more. So before
creating or deleting, a pass records what it expects to see (a count of creations, the UIDs of the
deletions); the pod watch lowers the record as each arrives, and until it is down to nothing the pool
creates and deletes nothing more (it still relabels and reports). A record older than `ttl` counts as
met (a watch that dropped an event must not stall the pool forever), with a metric and a log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from shoal import telemetry

log = logging.getLogger("shoal.expectations")

# kube-controller-manager's ExpectationsTimeout.
TTL_SECONDS = 300.0


@dataclass
class _Record:
    creates: int = 0
    deletes: set[str] = field(default_factory=set)
    since: float = 0.0


class Expectations:
    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._records: dict[Hashable, _Record] = {}

    def expect(self, key: Hashable, creates: int = 0, deletes: Iterable[str] = ()) -> None:
        """Before creating `creates` pods or deleting the pods with UIDs `deletes`."""
        uids = set(deletes)
        if not creates and not uids:
            return
        with self._lock:
            rec = self._records.setdefault(key, _Record())
            rec.creates += creates
            rec.deletes |= uids
            rec.since = self.clock()

    def created(self, key: Hashable, n: int = 1) -> None:
        """`n` creations seen by the watch, or failed (a pod the API server refused never arrives)."""
        with self._lock:
            rec = self._records.get(key)
            if rec is not None:
                rec.creates = max(0, rec.creates - n)
                self._drop_if_met(key, rec)

    def deleted(self, key: Hashable, uid: str) -> None:
        """The pod `uid` was seen going (deletionTimestamp or DELETED), or its delete did nothing."""
        with self._lock:
            rec = self._records.get(key)
            if rec is not None:
                rec.deletes.discard(uid)
                self._drop_if_met(key, rec)

    def _drop_if_met(self, key: Hashable, rec: _Record) -> None:
        if rec.creates == 0 and not rec.deletes:
            del self._records[key]

    def satisfied(self, key: Hashable) -> bool:
        """Whether the pool may create and delete again: nothing outstanding, or waited past `ttl`."""
        with self._lock:
            rec = self._records.get(key)
            if rec is None:
                return True
            if self.clock() - rec.since < self.ttl:
                return False
            del self._records[key]
        telemetry.EXPECTATIONS_EXPIRED.inc()
        log.warning(
            "expectations of %s expired after %.0fs: %d creation(s) and %d deletion(s) never seen; "
            "planning from the cache as it is",
            key,
            self.ttl,
            rec.creates,
            len(rec.deletes),
        )
        return True

    def pending(self, key: Hashable) -> tuple[int, int]:
        """(creations, deletions) still expected."""
        with self._lock:
            rec = self._records.get(key)
            return (rec.creates, len(rec.deletes)) if rec else (0, 0)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._records.pop(key, None)
