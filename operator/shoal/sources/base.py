"""The interface every metric source implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shoal.api.metrics import MetricSpec
from shoal.k8s.client import Kube
from shoal.scaling.types import MetricReading


@dataclass(frozen=True)
class SourceContext:
    kube: Kube
    namespace: str
    selector: str  # the target's pod selector, from its scale subresource
    current_replicas: int
    target_name: str = ""  # the targetRef's name (a Pool metric reads that pool)


class MetricSource(Protocol):
    def read(self, ctx: SourceContext, metric: MetricSpec) -> MetricReading:
        """Never raises for a metric problem: failures come back as MetricReading.error."""
        ...
