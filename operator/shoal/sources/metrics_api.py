"""Resource metrics: CPU/memory usage of the target's pods from metrics.k8s.io, against their requests."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from shoal.api.common import parse_quantity
from shoal.api.metrics import MetricSpec
from shoal.k8s.client import ApiError
from shoal.k8s.paths import kind_path, pods_path
from shoal.scaling.types import MetricReading, PodSample
from shoal.sources.base import SourceContext
from shoal.times import parse_time

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def go_duration(text: str | None) -> float | None:
    """Seconds of a Go duration string ("1m0s", "10.5s"), as metrics.k8s.io writes a sample's window
    (metav1.Duration); None if absent or not one. Hand-written: Python has no parser for Go's format."""
    if not text:
        return None
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _epoch(value: Any) -> float | None:
    t = parse_time(value) if isinstance(value, str) else None
    return t.timestamp() if t else None


def _sum(values: list[Any]) -> float | None:
    total = Decimal(0)
    for v in values:
        if v is None:
            return None
        total += parse_quantity(v)
    return float(total)


class MetricsApiSource:
    def read(self, ctx: SourceContext, metric: MetricSpec) -> MetricReading:
        assert metric.resource is not None
        name = metric.resource.name
        target = metric.resource.targetAverageUtilization
        frac = target / 100 if target is not None else None
        if not ctx.selector:
            return MetricReading(name, "Resource", error="the target reports no pod selector")
        try:
            pods = ctx.kube.list_items(pods_path(ctx.namespace), ctx.selector)
            usage_items = ctx.kube.list_items(kind_path("PodMetrics", ctx.namespace), ctx.selector)
        except ApiError as exc:
            return MetricReading(name, "Resource", error=f"metrics API: {exc.message or exc.reason}")
        except OSError as exc:
            return MetricReading(name, "Resource", error=f"metrics API unreachable: {exc}")
        usage = {
            m["metadata"]["name"]: _sum([c.get("usage", {}).get(name) for c in m.get("containers", [])])
            for m in usage_items
        }
        sampled = {
            m["metadata"]["name"]: (_epoch(m.get("timestamp")), go_duration(m.get("window")))
            for m in usage_items
        }
        samples = []
        for pod in pods:
            meta, status = pod["metadata"], pod.get("status") or {}
            if status.get("phase") == "Succeeded":
                continue  # finished: not the target's capacity any more
            containers = pod.get("spec", {}).get("containers", [])
            request = _sum([(c.get("resources") or {}).get("requests", {}).get(name) for c in containers])
            cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
            at, window = sampled.get(meta["name"], (None, None))
            samples.append(
                PodSample(
                    meta["name"],
                    bool(cond and cond.get("status") == "True"),
                    usage.get(meta["name"]),
                    request,
                    phase=str(status.get("phase") or "Pending"),
                    deleting=bool(meta.get("deletionTimestamp")),
                    started=_epoch(status.get("startTime")),
                    ready_since=_epoch(cond.get("lastTransitionTime")) if cond else None,
                    sampled=at,
                    window=window,
                )
            )
        return MetricReading(name, "Resource", pods=tuple(samples), target_utilization=frac)
