"""Metric sources behind one small interface: a new source is one new file and one registry line."""

from __future__ import annotations

from shoal.config import PrometheusAccess
from shoal.sources.base import MetricSource, SourceContext
from shoal.sources.metrics_api import MetricsApiSource
from shoal.sources.pool import PoolLookup, PoolSource
from shoal.sources.prometheus import PrometheusSource

__all__ = ["MetricSource", "SourceContext", "default_sources"]


def default_sources(prometheus: PrometheusAccess, pools: PoolLookup | None = None) -> dict[str, MetricSource]:
    return {
        "Resource": MetricsApiSource(),
        "Prometheus": PrometheusSource(prometheus),
        "Pool": PoolSource(pools),
    }
