"""Resource metrics: CPU/memory usage of the target's pods from metrics.k8s.io, against their requests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shoal.api.common import parse_quantity
from shoal.api.scaler import MetricSpec
from shoal.k8s.client import ApiError, pods_path
from shoal.scaling.types import MetricReading, PodSample
from shoal.sources.base import SourceContext


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
            usage_items = ctx.kube.list_items(
                f"/apis/metrics.k8s.io/v1beta1/namespaces/{ctx.namespace}/pods", ctx.selector
            )
        except ApiError as exc:
            return MetricReading(name, "Resource", error=f"metrics API: {exc.message or exc.reason}")
        except OSError as exc:
            return MetricReading(name, "Resource", error=f"metrics API unreachable: {exc}")
        usage = {
            m["metadata"]["name"]: _sum([c.get("usage", {}).get(name) for c in m.get("containers", [])])
            for m in usage_items
        }
        samples = []
        for pod in pods:
            meta, status = pod["metadata"], pod.get("status") or {}
            if meta.get("deletionTimestamp") or status.get("phase") in ("Failed", "Succeeded"):
                continue  # as HPA: terminating and finished pods are not counted
            containers = pod.get("spec", {}).get("containers", [])
            request = _sum([(c.get("resources") or {}).get("requests", {}).get(name) for c in containers])
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
            )
            samples.append(PodSample(meta["name"], ready, usage.get(meta["name"]), request))
        return MetricReading(name, "Resource", pods=tuple(samples), target_utilization=frac)
