"""Live usage of a pool's pods from metrics.k8s.io, for the strategies that rank by it (claims) and for
the pods' load states (the pool): one list per pool at most every USAGE_TTL seconds."""

from __future__ import annotations

import logging
import time
from decimal import Decimal

from shoal.api.common import parse_quantity
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import kind_path
from shoal.vocab import LABEL_POOL

USAGE_TTL = 5.0  # metrics-server resolves 10-15 s: a burst of claims or passes needs no read each
log = logging.getLogger("shoal.pool")


class PoolUsage:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._cache: dict[tuple[str, str], tuple[float, dict[str, dict[str, Decimal]]]] = {}

    def read(self, namespace: str, pool_name: str) -> dict[str, dict[str, Decimal]]:
        """pod -> resource -> amount in use, summed over its containers; {} when unavailable."""
        key = (namespace, pool_name)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < USAGE_TTL:
            return cached[1]
        usage: dict[str, dict[str, Decimal]] = {}
        try:
            items = self.kube.list_items(kind_path("PodMetrics", namespace), f"{LABEL_POOL}={pool_name}")
        except ApiError as exc:
            log.warning("pod metrics of pool %s/%s unavailable: %s", namespace, pool_name, exc.message)
            items = []
        for item in items:
            total: dict[str, Decimal] = {}
            for c in item.get("containers") or []:
                for k, v in (c.get("usage") or {}).items():
                    total[k] = total.get(k, Decimal(0)) + parse_quantity(v)
            usage[item["metadata"]["name"]] = total
        self._cache[key] = (time.monotonic(), usage)
        return usage
