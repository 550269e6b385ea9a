"""Pool metrics: a ContainerPool target's own load from its status, claimed pods plus the claims and
sessions waiting for one. No Prometheus and no metrics API: the pool's reconciler counts both."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shoal.api.metrics import MetricSpec
from shoal.k8s.client import ApiError
from shoal.k8s.paths import custom_path
from shoal.scaling.types import MetricReading
from shoal.sources.base import SourceContext

NAME = "claimed + waiting"
PoolLookup = Callable[[str, str], Mapping[str, Any] | None]


def pool_reading(pool: Mapping[str, Any] | None, target_utilization: float) -> MetricReading:
    """The pool's busy pods' worth (slots held, a busy pod's all, and claims waiting, claimsPerPod to a
    pod) as a value each replica should carry `target_utilization` of: the calculator's per-replica
    rule then asks for ceil(busy / target_utilization) replicas, and a waiting claim wakes a pool at
    zero."""
    if pool is None:
        return MetricReading(NAME, "Pool", error="the target pool is not found")
    status = pool.get("status") or {}
    if "claimedReplicas" not in status:
        return MetricReading(NAME, "Pool", error="the pool has not reported its pods yet")
    held = status.get("claimedSlots", status["claimedReplicas"])  # a status from before slots: pods
    slots = int((pool.get("spec") or {}).get("claimsPerPod") or 1)
    busy = (int(held or 0) + int(status.get("waitingClaims") or 0)) / slots
    return MetricReading(NAME, "Pool", value=busy, target_per_replica=target_utilization)


class PoolSource:
    def __init__(self, pools: PoolLookup | None = None) -> None:
        self.pools = pools  # the operator's pool cache; None: GET the pool

    def read(self, ctx: SourceContext, metric: MetricSpec) -> MetricReading:
        assert metric.pool is not None  # the CRD's CEL rule demands it for type Pool
        pool = self.pools(ctx.namespace, ctx.target_name) if self.pools is not None else None
        if pool is None:
            try:
                pool = ctx.kube.get_if_exists(custom_path("containerpools", ctx.namespace, ctx.target_name))
            except ApiError as exc:
                return MetricReading(NAME, "Pool", error=f"reading the pool: {exc.message}")
        return pool_reading(pool, metric.pool.targetUtilization)
