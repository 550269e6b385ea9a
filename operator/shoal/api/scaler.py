"""WorkerScaler (short name wscale): metric-driven autoscaling of anything with a scale subresource."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from shoal.api.common import Condition, Model, NonNegativeInt, PositiveInt, Quantity, cel, validations

NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class TargetRef(Model):
    apiVersion: str = Field(min_length=1, max_length=253, examples=["apps/v1", "shoal.dev/v1alpha1"])
    kind: str = Field(min_length=1, max_length=63, pattern=r"^[A-Z][A-Za-z0-9]*$")
    name: str = Field(min_length=1, max_length=253, pattern=NAME)
    namespace: str | None = Field(
        default=None,
        max_length=63,
        description="Must be the scaler's own namespace if set: other namespaces are refused",
    )


class ResourceMetric(Model):
    name: Literal["cpu", "memory"]
    targetAverageUtilization: int | None = Field(
        default=None, ge=1, le=1000, description="Percent of requests, as in HPA (Target mode)"
    )


class PrometheusMetric(Model):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.targetPerReplica) != has(self.targetUtilization)",
                "set exactly one of targetPerReplica or targetUtilization",
            ),
        )
    )
    query: str = Field(min_length=1, max_length=2048, description="PromQL instant query returning one series")
    targetPerReplica: Quantity | None = Field(
        default=None, description="Query value each replica should carry"
    )
    targetUtilization: Quantity | None = Field(
        default=None, description="Target for a query that returns a 0..1 utilization"
    )


class MetricSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.type == 'Resource' ? (has(self.resource) && !has(self.prometheus)) "
                ": (has(self.prometheus) && !has(self.resource))",
                "set resource for type Resource, prometheus for type Prometheus, and not the other",
            ),
        )
    )
    type: Literal["Resource", "Prometheus"]
    resource: ResourceMetric | None = None
    prometheus: PrometheusMetric | None = None


class Thresholds(Model):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.scaleDown < self.scaleUp && self.scaleUp <= self.emergency",
                "thresholds must satisfy scaleDown < scaleUp <= emergency",
            ),
        )
    )
    scaleUp: float = Field(default=0.8, gt=0, le=10)
    scaleDown: float = Field(default=0.3, ge=0, le=10)
    emergency: float = Field(default=0.95, gt=0, le=10)


class ScalingRules(Model):
    cooldownSeconds: NonNegativeInt | None = Field(default=None, le=86400)
    stabilizationWindowSeconds: NonNegativeInt | None = Field(default=None, le=3600)
    maxPods: PositiveInt | None = Field(default=None, description="At most this many pods per period")
    maxPercent: PositiveInt | None = Field(
        default=None, le=1000, description="At most this percent per period"
    )
    periodSeconds: PositiveInt = Field(default=15, le=1800)


class Behavior(Model):
    scaleUp: ScalingRules | None = None
    scaleDown: ScalingRules | None = None


class Predictive(Model):
    enabled: bool = False
    horizonSeconds: NonNegativeInt = Field(
        default=120, le=3600, description="Scale for demand this far ahead"
    )
    seasonalityPeriodSeconds: PositiveInt | None = Field(default=None, ge=60, le=604800)
    historySeconds: PositiveInt = Field(default=3600, ge=60, le=604800)


class ScheduleWindow(Model):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.cron.matches('^\\\\s*(\\\\S+\\\\s+){4}\\\\S+\\\\s*$')",
                "cron must have five fields: minute hour day-of-month month day-of-week",
                ".cron",
            ),
        )
    )
    name: str | None = Field(default=None, max_length=63)
    cron: str = Field(min_length=9, max_length=100, examples=["0 8 * * 1-5"])
    durationSeconds: PositiveInt = Field(le=604800)
    minReplicas: NonNegativeInt


class Fallback(Model):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.policy == 'Hold' || has(self.replicas)",
                "fallback.replicas is required with policy Replicas",
                ".replicas",
            ),
        )
    )
    policy: Literal["Hold", "Replicas"] = "Hold"
    replicas: NonNegativeInt | None = None
    failureThreshold: PositiveInt = Field(default=3, le=1000)


class WorkerScalerSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must be less than or equal to maxReplicas",
                ".minReplicas",
            ),
            cel(
                "self.mode == 'Thresholds' || self.metrics.all(m, m.type != 'Resource' || "
                "has(m.resource.targetAverageUtilization))",
                "Resource metrics need resource.targetAverageUtilization in Target mode",
                ".metrics",
            ),
            cel(
                "!has(self.schedule) || self.schedule.all(w, w.minReplicas <= self.maxReplicas)",
                "schedule minReplicas must not exceed maxReplicas",
                ".schedule",
            ),
            cel(
                "!has(self.fallback) || !has(self.fallback.replicas) || self.fallback.replicas <= self.maxReplicas",
                "fallback.replicas must not exceed maxReplicas",
                ".fallback.replicas",
            ),
        )
    )
    targetRef: TargetRef
    minReplicas: NonNegativeInt = 1
    maxReplicas: PositiveInt
    pollIntervalSeconds: PositiveInt = Field(default=15, le=3600)
    mode: Literal["Target", "Thresholds"] = Field(
        default="Target",
        description="Target: HPA's ceil(current*value/target); Thresholds: the utilization bands",
    )
    tolerance: float = Field(
        default=0.1, ge=0, lt=1, description="Target mode: ignore ratios within 1 +/- this"
    )
    metrics: list[MetricSpec] = Field(min_length=1, max_length=10)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    behavior: Behavior | None = None
    predictive: Predictive | None = None
    schedule: list[ScheduleWindow] = Field(default_factory=list, max_length=20)
    fallback: Fallback | None = None
    paused: bool = Field(default=False, description="Freeze: the target's replicas are left alone")


class MetricStatus(Model):
    name: str
    type: str
    value: str | None = None
    target: str | None = None
    utilization: float | None = None
    proposal: int | None = None
    error: str | None = None


class ForecastStatus(Model):
    demand: float
    replicas: int
    horizonSeconds: int
    error: float | None = Field(default=None, description="RMSE of one-step-ahead forecasts, in replicas")
    samples: int = 0


class DecisionRecord(Model):
    time: datetime
    fromReplicas: int
    toReplicas: int
    reason: str
    message: str = ""


class WorkerScalerStatus(Model):
    observedGeneration: int | None = None
    currentReplicas: int | None = None
    desiredReplicas: int | None = None
    lastScaleTime: datetime | None = None
    currentMetrics: list[MetricStatus] = Field(default_factory=list)
    forecast: ForecastStatus | None = None
    decisions: list[DecisionRecord] = Field(default_factory=list, max_length=10)
    conditions: list[Condition] = Field(default_factory=list)


class WorkerScaler(Model):
    spec: WorkerScalerSpec
    status: WorkerScalerStatus | None = None


KIND = {
    "kind": "WorkerScaler",
    "plural": "workerscalers",
    "singular": "workerscaler",
    "shortNames": ["wscale"],
    "categories": ["shoal"],
    "model": WorkerScaler,
    "printerColumns": [
        {"name": "Target", "type": "string", "jsonPath": ".spec.targetRef.name"},
        {"name": "Min", "type": "integer", "jsonPath": ".spec.minReplicas"},
        {"name": "Max", "type": "integer", "jsonPath": ".spec.maxReplicas"},
        {"name": "Current", "type": "integer", "jsonPath": ".status.currentReplicas"},
        {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
        {
            "name": "Active",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="ScalingActive")].status',
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}
