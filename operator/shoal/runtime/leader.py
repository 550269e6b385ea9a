"""Leader election on a coordination.k8s.io Lease, so that one replica of the operator acts.

kopf's peering freezes every replica when two have the same priority, which is what identical
replicas of one Deployment have; a Lease gives the usual Kubernetes hand-over instead. The rules are
client-go's (tools/leaderelection):

- Another holder's lease is judged expired on this replica's monotonic clock, `leaseDurationSeconds`
  after this replica last saw the lease record change, never by comparing its renewTime with this
  replica's wall clock: clocks of two nodes may disagree by more than a lease.
- The leader renews every `retry_period`; it counts itself leader only until `renew_deadline` after
  the start of its last successful renewal, and stops acting then even if the renewal is merely slow.
  The others cannot take over before `duration` after that renewal reached the API server, so there
  is a gap of at least `duration - renew_deadline` between two leaders acting.
- Each attempt's requests time out within the renew deadline.

`write_budget()` is the fence the operator's client checks before every write (shoal.k8s.client):
no write starts once the renew deadline has passed, and none may take longer than the lease lasts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import kind_path

log = logging.getLogger("shoal.leader")


def _micro(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        renew_deadline: float | None = None,
        retry_period: float | None = None,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`renew_deadline` and `retry_period` default to client-go's proportions of the lease
        (15 s / 10 s / 2 s)."""
        self.kube = kube
        self.path = kind_path("Lease", namespace, name)
        self.collection = kind_path("Lease", namespace)
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew_deadline = renew_deadline if renew_deadline is not None else duration * 2 / 3
        self.retry_period = retry_period if retry_period is not None else duration * 2 / 15
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError("leader election needs retry period < renew deadline < lease duration")
        self.request_timeout = self.renew_deadline / 3  # a GET and a PUT fit in one deadline, with room
        self.on_change = on_change
        self.clock = clock
        self.is_leader = asyncio.Event()
        self.observed: tuple[Any, ...] | None = None  # the lease record as last seen
        self.observed_at = 0.0  # when it last changed, on this replica's monotonic clock
        self.renewed_at: float | None = None  # when this replica's last successful renewal began
        self.transitions = 0  # leadership changes seen by this replica (gained or lost)

    # --- the fence -------------------------------------------------------------------------------------

    def leading(self) -> bool:
        return self.renewed_at is not None and self.clock() < self.renewed_at + self.renew_deadline

    def write_budget(self) -> float:
        """Seconds a write starting now may take (<= 0: do not write): until the lease could be taken
        over, provided the renew deadline has not passed."""
        if not self.leading():
            return 0.0
        assert self.renewed_at is not None
        return self.renewed_at + self.duration - self.clock()

    # --- one attempt (a worker thread) -----------------------------------------------------------------

    def _observe(self, spec: dict[str, Any]) -> None:
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("leaseDurationSeconds"),
            spec.get("leaseTransitions"),
        )
        if record != self.observed:
            self.observed, self.observed_at = record, self.clock()

    def _try(self) -> bool:
        """Acquire or renew; True if this replica holds the lease now."""
        started = self.clock()
        now = datetime.now(UTC)  # only written, for people reading the Lease
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "renewTime": _micro(now),
        }
        try:
            lease: dict[str, Any] = self.kube.request("GET", self.path, timeout=self.request_timeout)
        except ApiError as exc:
            if not exc.not_found:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": {**spec, "acquireTime": _micro(now), "leaseTransitions": 0},
            }
            try:
                created = self.kube.request("POST", self.collection, body, timeout=self.request_timeout)
            except ApiError as exc2:
                if exc2.conflict:
                    return False
                raise
            self._observe(created["spec"])
            self.renewed_at = started
            return True
        current = lease.get("spec") or {}
        self._observe(current)
        holder = current.get("holderIdentity")
        lasts = float(current.get("leaseDurationSeconds") or self.duration)
        if holder not in (None, "", self.identity) and self.clock() < self.observed_at + lasts:
            return False
        if holder != self.identity:
            spec["acquireTime"] = _micro(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
        # The resourceVersion makes the write fail with 409 if another replica got there first.
        body = {**lease, "spec": {**current, **spec}}
        try:
            written = self.kube.request("PUT", self.path, body, timeout=self.request_timeout)
        except ApiError as exc:
            if exc.conflict:
                return False
            raise
        self._observe(written["spec"])
        self.renewed_at = started
        return True

    # --- the loop (the event loop) ---------------------------------------------------------------------

    def _set(self, held: bool) -> None:
        if held == self.is_leader.is_set():
            return
        self.transitions += 1
        log.info("leadership %s (%s)", "acquired" if held else "lost", self.identity)
        if held:
            self.is_leader.set()
        else:
            self.is_leader.clear()
            self.renewed_at = None
        if self.on_change:
            self.on_change(held)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                held: bool | None = await loop.run_in_executor(None, self._try)
            except Exception as exc:  # unreachable or slow API: keep leading until the deadline only
                log.warning("leader election: %s", exc)
                held = None
            if held is not None:
                self._set(held)  # False: someone else holds it
            wake = self.retry_period
            if self.is_leader.is_set() and self.renewed_at is not None:
                left = self.renewed_at + self.renew_deadline - self.clock()
                if left <= 0:
                    log.warning(
                        "leader election: could not renew within %.1fs; stepping down", self.renew_deadline
                    )
                    self._set(False)
                else:
                    wake = min(wake, left)
            await asyncio.sleep(wake)

    async def release(self) -> None:
        """Hand the lease back on shutdown so that another replica need not wait for it to expire."""
        if not self.is_leader.is_set():
            return
        self._set(False)
        loop = asyncio.get_running_loop()

        def give_back() -> None:
            lease = self.kube.request("GET", self.path, timeout=self.request_timeout)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                self.kube.request("PUT", self.path, lease, timeout=self.request_timeout)

        try:
            await loop.run_in_executor(None, give_back)
        except Exception as exc:
            log.warning("leader election: could not release the lease: %s", exc)
