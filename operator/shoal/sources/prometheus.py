"""Prometheus metrics: an instant query against the operator's configured server (never a user URL)."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request

from shoal.api.common import parse_quantity
from shoal.api.scaler import MetricSpec
from shoal.scaling.types import MetricReading
from shoal.sources.base import SourceContext

TIMEOUT_SECONDS = 5.0


class PrometheusSource:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def query(self, promql: str) -> tuple[float | None, str | None]:
        """(value, error) of an instant query that must return exactly one sample."""
        if not self.url:
            return None, "no Prometheus address configured (operator setting SHOAL_PROMETHEUS_URL)"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as resp:
                payload = json.load(resp)
        except urllib.error.HTTPError as exc:
            try:
                detail = json.load(exc).get("error", "")
            except ValueError:
                detail = ""
            return None, f"Prometheus answered {exc.code}: {detail or exc.reason}"[:300]
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return None, f"Prometheus unreachable: {reason}"[:300]
        data = payload.get("data", {})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            value = float(result[1])
        elif kind == "vector":
            if not result:
                return None, "query returned no series"
            if len(result) > 1:
                return None, f"query returned {len(result)} series; aggregate it to one (e.g. sum(...))"
            value = float(result[0]["value"][1])
        else:
            return None, f"query returned a {kind}; an instant vector or scalar is needed"
        if math.isnan(value) or math.isinf(value):
            return None, f"query returned {value}"
        return value, None

    def read(self, ctx: SourceContext, metric: MetricSpec) -> MetricReading:
        assert metric.prometheus is not None
        spec = metric.prometheus
        name = spec.query if len(spec.query) <= 60 else spec.query[:57] + "..."
        value, error = self.query(spec.query)
        per_replica = (
            float(parse_quantity(spec.targetPerReplica)) if spec.targetPerReplica is not None else None
        )
        util = float(parse_quantity(spec.targetUtilization)) if spec.targetUtilization is not None else None
        if (per_replica is not None and per_replica <= 0) or (util is not None and util <= 0):
            error = "targetPerReplica and targetUtilization must be greater than zero"
        return MetricReading(
            name,
            "Prometheus",
            error=error,
            value=value,
            target_per_replica=per_replica,
            target_value_utilization=util,
        )
