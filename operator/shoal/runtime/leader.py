"""Leader election on a coordination.k8s.io Lease, so that one replica of the operator acts.

kopf's peering freezes every replica when two have the same priority, which is what identical
replicas of one Deployment have; a Lease gives the usual Kubernetes hand-over instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shoal.k8s.client import ApiError, Kube
from shoal.times import parse_time

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
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.kube = kube
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.name = name
        self.identity = identity
        self.duration = duration
        self.on_change = on_change
        self.is_leader = asyncio.Event()

    def _try(self) -> bool:
        now = datetime.now(UTC)
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "renewTime": _micro(now),
        }
        try:
            lease: dict[str, Any] = self.kube.get(self.path)
        except ApiError as exc:
            if not exc.not_found:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": {**spec, "acquireTime": _micro(now)},
            }
            try:
                self.kube.create(self.collection, body)
                return True
            except ApiError as exc2:
                if exc2.conflict:
                    return False
                raise
        current = lease.get("spec", {})
        holder = current.get("holderIdentity")
        renewed = parse_time(current.get("renewTime"))
        expired = renewed is None or (now - renewed).total_seconds() > current.get("leaseDurationSeconds", 15)
        if holder not in (None, "", self.identity) and not expired:
            return False
        if holder != self.identity:
            spec["acquireTime"] = _micro(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions", 0)) + 1
        # The resourceVersion makes the write fail with 409 if another replica got there first.
        body = {**lease, "spec": {**current, **spec}}
        try:
            self.kube.request("PUT", self.path, body)
        except ApiError as exc:
            if exc.conflict:
                return False
            raise
        return True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        period = max(1.0, self.duration / 3)
        while True:
            try:
                held = await loop.run_in_executor(None, self._try)
            except Exception as exc:  # API unavailable: keep trying, drop leadership if it lapses
                log.warning("leader election: %s", exc)
                held = False
            if held != self.is_leader.is_set():
                log.info("leadership %s (%s)", "acquired" if held else "lost", self.identity)
                if held:
                    self.is_leader.set()
                else:
                    self.is_leader.clear()
                if self.on_change:
                    self.on_change(held)
            await asyncio.sleep(period)

    async def release(self) -> None:
        if not self.is_leader.is_set():
            return
        try:
            lease = self.kube.get(self.path)
            lease["spec"]["holderIdentity"] = ""
            self.kube.request("PUT", self.path, lease)
        except ApiError:
            pass
