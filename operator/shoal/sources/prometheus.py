"""Prometheus metrics: an instant query against the operator's configured server (never a user URL)."""

from __future__ import annotations

import math

from shoal.api.common import quantity
from shoal.api.metrics import MetricSpec
from shoal.config import PrometheusAccess
from shoal.scaling.types import MetricReading
from shoal.sources.base import SourceContext
from shoal.sources.promhttp import TIMEOUT_SECONDS, PrometheusHttp
from shoal.sources.promscope import ScopeError, scope

EMPTY = "query returned no series"


class PrometheusSource:
    def __init__(self, access: PrometheusAccess | str) -> None:
        self.access = PrometheusAccess(url=access.rstrip("/")) if isinstance(access, str) else access
        self.http = PrometheusHttp(self.access)

    def scoped(self, promql: str, namespace: str) -> str:
        """The query as sent: limited to `namespace` when the operator scopes queries (ScopeError
        says why it cannot be)."""
        label = self.access.namespace_label
        return scope(promql, label, namespace) if label else promql

    def query(self, promql: str) -> tuple[float | None, str | None]:
        """(value, error) of an instant query that must return exactly one sample."""
        values, error = self.samples(promql)
        if error is not None:
            return None, error
        assert values is not None
        if not values:
            return None, EMPTY
        if len(values) > 1:
            return None, f"query returned {len(values)} series; aggregate it to one (e.g. sum(...))"
        value = values[0]
        if math.isnan(value) or math.isinf(value):
            return None, f"query returned {value}"
        return value, None

    def samples(self, promql: str) -> tuple[list[float] | None, str | None]:
        """(values, error) of an instant query: a scalar is one value, a vector one per series."""
        # Prometheus stops evaluating at its own `timeout`, before the client gives up on the socket.
        params = {"query": promql, "timeout": f"{TIMEOUT_SECONDS - 1:g}s"}
        payload, error = self.http.get("/api/v1/query", params)
        if error is not None:
            return None, error
        assert payload is not None
        data = payload.get("data", {})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return [float(result[1])], None
        if kind == "vector":
            return [float(r["value"][1]) for r in result], None
        return None, f"query returned a {kind}; an instant vector or scalar is needed"

    def empty_means_zero(self, health_query: str | None) -> str | None:
        """None if an empty result may be read as 0: no guard, or the guard returns series, all of
        them non-zero (a scrape target that is down has up == 0, or no series at all); else why not."""
        if health_query is None:
            return None
        values, error = self.samples(health_query)
        if error is not None:
            return f"{EMPTY}, and healthQuery failed: {error}"
        if not values or any(v == 0 or math.isnan(v) for v in values):
            shown = "no series" if not values else ", ".join(f"{v:g}" for v in values[:5])
            return f"{EMPTY}, and healthQuery says the source is down ({shown})"
        return None

    def read(self, ctx: SourceContext, metric: MetricSpec) -> MetricReading:
        assert metric.prometheus is not None
        spec = metric.prometheus
        name = spec.query if len(spec.query) <= 60 else spec.query[:57] + "..."
        value: float | None = None
        try:
            query = self.scoped(spec.query, ctx.namespace)
            health = self.scoped(spec.healthQuery, ctx.namespace) if spec.healthQuery else None
        except ScopeError as exc:
            error: str | None = f"query refused: cannot limit it to namespace {ctx.namespace}: {exc}"
        else:
            value, error = self.query(query)
            if error == EMPTY and spec.whenEmpty == "Zero":
                error = self.empty_means_zero(health)
                value = 0.0 if error is None else None
        per_replica, util = quantity(spec.targetPerReplica), quantity(spec.targetUtilization)
        if (per_replica is not None and per_replica <= 0) or (util is not None and util <= 0):
            error = "targetPerReplica and targetUtilization must be greater than zero"
        return MetricReading(
            name,
            "Prometheus",
            error=error,
            value=value,
            target_per_replica=per_replica,
            target_value_utilization=util,
            activation=quantity(spec.activationValue) or 0.0,
        )
