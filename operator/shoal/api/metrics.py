"""What a WorkerScaler reads: its metrics (resource use, a Prometheus query, a pool's own load)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from shoal.api.common import Model, Quantity, cel, validations


class ResourceMetric(Model):
    """CPU or memory use of the target's pods (metrics.k8s.io) against their requests."""

    name: Literal["cpu", "memory"] = Field(description="cpu or memory")
    targetAverageUtilization: int | None = Field(
        default=None, ge=1, le=1000, description="Percent of requests, as in HPA (Target mode)"
    )


class PrometheusMetric(Model):
    """A PromQL query against the operator's configured Prometheus."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.targetPerReplica) != has(self.targetUtilization)",
                "prometheus: set exactly one of targetPerReplica or targetUtilization",
            ),
            cel(
                "!has(self.healthQuery) || self.whenEmpty == 'Zero'",
                "prometheus.healthQuery guards whenEmpty: Zero; set whenEmpty: Zero or remove it",
            ),
        )
    )
    query: str = Field(min_length=1, max_length=2048, description="PromQL instant query returning one series")
    activationValue: Quantity | None = Field(
        default=None,
        description=(
            "Scale from zero (KEDA's activationThreshold): at or below this value the metric asks for "
            "no replicas, so a target with minReplicas 0 stays at (or returns to) zero; above it, at "
            "least one. Unset: any value above 0 activates"
        ),
    )
    whenEmpty: Literal["Fail", "Zero"] = Field(
        default="Fail",
        description=(
            "What a query returning no series means. Fail (default): missing data, the size is held and "
            "after failureThreshold the fallback applies. Zero: the value is 0 (an exporter that emits no "
            "series for an empty queue); guard it with healthQuery so a target that is down is not read as 0"
        ),
    )
    healthQuery: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description=(
            'With whenEmpty: Zero, PromQL that tells an empty queue from a source that is down, e.g. up{job="queue"}: '
            "an empty result counts as 0 only while this returns at least one series, all of them non-zero"
        ),
    )
    targetPerReplica: Quantity | None = Field(
        default=None, description="Query value each replica should carry"
    )
    targetUtilization: Quantity | None = Field(
        default=None, description="Target for a query that returns a 0..1 utilization"
    )


class PoolMetric(Model):
    """The target ContainerPool's own load, from its status: no Prometheus needed."""

    targetUtilization: float = Field(
        gt=0,
        le=1,
        description="The share of the pool's pods that should be claimed (or marked busy); claims and "
        "sessions waiting for a pod of it count as claimed ones",
    )


class MetricSpec(Model):
    """One metric; the scaler follows the one that asks for the most replicas."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(self.type == 'Resource') == has(self.resource) && "
                "(self.type == 'Prometheus') == has(self.prometheus) && (self.type == 'Pool') == has(self.pool)",
                "metrics: set resource for type Resource, prometheus for type Prometheus, pool for type Pool, "
                "and none of the others",
            ),
        )
    )
    type: Literal["Resource", "Prometheus", "Pool"] = Field(
        description="Resource (metrics.k8s.io), Prometheus, or Pool (a ContainerPool target's own claims)"
    )
    resource: ResourceMetric | None = Field(default=None, description="For type Resource")
    prometheus: PrometheusMetric | None = Field(default=None, description="For type Prometheus")
    pool: PoolMetric | None = Field(default=None, description="For type Pool")
