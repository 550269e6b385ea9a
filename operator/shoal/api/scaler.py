"""WorkerScaler (short name wscale): metric-driven autoscaling of anything with a scale subresource."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from shoal.api.common import Condition, Model, NonNegativeInt, PositiveInt, cel, validations
from shoal.api.metrics import MetricSpec

NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class TargetRef(Model):
    """What to scale: any object with a scale subresource in the scaler's namespace."""

    apiVersion: str = Field(
        min_length=1,
        max_length=253,
        examples=["apps/v1", "shoal.dev/v1alpha1"],
        description="API group/version of the target, e.g. apps/v1",
    )
    kind: str = Field(
        min_length=1, max_length=63, pattern=r"^[A-Z][A-Za-z0-9]*$", description="Kind, e.g. Deployment"
    )
    name: str = Field(min_length=1, max_length=253, pattern=NAME, description="The target's name")
    namespace: str | None = Field(
        default=None,
        max_length=63,
        description="Must be the scaler's own namespace if set: other namespaces are refused",
    )


class Thresholds(Model):
    """Utilization bands: scale up above scaleUp, down below scaleDown, jump at emergency."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.scaleDown < self.scaleUp && self.scaleUp <= self.emergency",
                "thresholds must satisfy scaleDown < scaleUp <= emergency",
            ),
        )
    )
    scaleUp: float = Field(default=0.8, gt=0, le=10, description="Thresholds mode: scale up above this")
    scaleDown: float = Field(default=0.3, ge=0, le=10, description="Thresholds mode: scale down below this")
    emergency: float = Field(
        default=0.95,
        gt=0,
        le=10,
        description="Either mode: one step up past cooldowns and windows above this",
    )


class ScalingRules(Model):
    """How fast one direction may go."""

    cooldownSeconds: int | None = Field(
        default=None,
        ge=0,
        le=86400,
        description="Wait after a change before the next one (none by default, as HPA: the stabilization "
        "window and step limits pace it)",
    )
    stabilizationWindowSeconds: int | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Act on the most conservative recommendation of this window (up 0 s, down 300 s)",
    )
    maxPods: PositiveInt | None = Field(default=None, description="At most this many pods per period")
    maxPercent: int | None = Field(default=None, ge=1, le=1000, description="At most this percent per period")
    periodSeconds: int = Field(default=15, ge=1, le=1800, description="The period of maxPods and maxPercent")


class Behavior(Model):
    """Speed limits per direction, as HPA's behavior."""

    scaleUp: ScalingRules | None = Field(default=None, description="Rules for growing")
    scaleDown: ScalingRules | None = Field(default=None, description="Rules for shrinking")


class Predictive(Model):
    """Forecast demand (Holt, Holt-Winters with a season) and scale ahead of it."""

    @property
    def forecasting(self) -> bool:
        """Whether the forecaster runs: to act on it (enabled) or only to show it (observeOnly)."""
        return self.enabled or self.observeOnly

    enabled: bool = Field(
        default=False,
        description="Scale for the forecast too, never below the reactive size, and only while its recent "
        "error at the horizon is below the reactive answer's (status.forecast.gate)",
    )
    horizonSeconds: int = Field(
        default=120,
        ge=0,
        le=86400,
        description="Scale for demand this far ahead (the pods' start-up time if that is longer)",
    )
    seasonalityPeriodSeconds: int | None = Field(
        default=None,
        ge=60,
        le=604800,
        description="Length of a repeating pattern (86400 for daily); needs historySeconds of two periods. "
        "Unset: found in the history by autocorrelation, up to 1440 polls long",
    )
    observeOnly: bool = Field(
        default=False,
        description="Forecast and score the forecast, and show in status.forecast what it would have done "
        "(wouldScaleTo, gate), without acting on it, whatever enabled says",
    )
    historySeconds: int = Field(
        default=3600,
        ge=60,
        le=604800,
        description="Demand history the forecast learns from; kept in a ConfigMap the scaler owns "
        "(<name>-history), so it survives operator restarts and leader changes",
    )


class ScheduleWindow(Model):
    """A cron window that raises the floor."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.cron.matches('^\\\\s*(\\\\S+\\\\s+){4}\\\\S+\\\\s*$')",
                "cron must have five fields: minute hour day-of-month month day-of-week",
                ".cron",
            ),
        )
    )
    name: str | None = Field(default=None, max_length=63, description="A name for people and Events")
    cron: str = Field(
        min_length=9, max_length=100, examples=["0 8 * * 1-5"], description="When the window opens (UTC)"
    )
    durationSeconds: int = Field(ge=1, le=604800, description="How long it stays open")
    minReplicas: NonNegativeInt = Field(description="The floor while it is open")


class Fallback(Model):
    """What to do while metrics fail; never a scale-down on missing data."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.policy == 'Hold' || has(self.replicas)",
                "fallback.replicas is required with policy Replicas",
                ".replicas",
            ),
        )
    )
    policy: Literal["Hold", "Replicas"] = Field(
        default="Hold", description="Hold the current size, or go to replicas (never lower than current)"
    )
    replicas: NonNegativeInt | None = Field(default=None, description="The size for policy Replicas")
    failureThreshold: int = Field(
        default=3, ge=1, le=1000, description="Failed evaluations in a row before the fallback applies"
    )


class Override(Model):
    """A person's size for the target, with why, until an optional time: the metrics are still read
    and shown, but they do not decide while it holds."""

    replicas: NonNegativeInt = Field(description="The size the target is set to")
    reason: str = Field(
        min_length=1, max_length=200, description="Why, for people: in the decisions, Events and conditions"
    )
    expiresAt: datetime | None = Field(
        default=None,
        description="When the override ends by itself and the metrics decide again (RFC 3339); "
        "without it, it holds until removed",
    )


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
                "self.metrics.all(m, m.type != 'Pool') || "
                "(self.targetRef.kind == 'ContainerPool' && self.targetRef.apiVersion == 'shoal.dev/v1alpha1')",
                "a metric of type Pool reads the target's own claims: targetRef must be a ContainerPool",
                ".metrics",
            ),
            cel(
                "!has(self.override) || (self.override.replicas >= self.minReplicas && "
                "self.override.replicas <= self.maxReplicas)",
                "override.replicas must lie within minReplicas and maxReplicas",
                ".override.replicas",
            ),
            cel(
                "!has(self.override) || !self.paused",
                "override and paused exclude each other: paused leaves the size to kubectl scale, "
                "override sets it",
                ".override",
            ),
            cel(
                "!has(self.fallback) || !has(self.fallback.replicas) || self.fallback.replicas <= self.maxReplicas",
                "fallback.replicas must not exceed maxReplicas",
                ".fallback.replicas",
            ),
            # The forecaster needs enough history at the poll step; anything less is silently unused.
            cel(
                "!has(self.predictive) || self.predictive.historySeconds >= 5 * self.pollIntervalSeconds",
                "predictive.historySeconds must hold at least six polls (5 x pollIntervalSeconds) for a "
                "forecast: raise historySeconds or poll more often",
                ".predictive.historySeconds",
            ),
            # And no more points than it keeps: one per poll, or per 1/1440 of a season if coarser.
            cel(
                "!has(self.predictive) || self.predictive.historySeconds <= 20160 * self.pollIntervalSeconds || "
                "(has(self.predictive.seasonalityPeriodSeconds) && "
                "self.predictive.historySeconds <= 20160 * (self.predictive.seasonalityPeriodSeconds / 1440))",
                "predictive.historySeconds may hold at most 20160 points, one per poll (or per 1/1440 of "
                "seasonalityPeriodSeconds if that is longer): poll less often or keep less history",
                ".predictive.historySeconds",
            ),
            cel(
                "!has(self.predictive) || self.predictive.horizonSeconds <= self.predictive.historySeconds",
                "predictive.horizonSeconds must not exceed historySeconds: a forecast cannot look further "
                "ahead than the history it learns from",
                ".predictive.horizonSeconds",
            ),
            cel(
                "!has(self.predictive) || !has(self.predictive.seasonalityPeriodSeconds) || "
                "self.predictive.seasonalityPeriodSeconds >= 2 * self.pollIntervalSeconds",
                "predictive.seasonalityPeriodSeconds must span at least two polls (2 x pollIntervalSeconds)",
                ".predictive.seasonalityPeriodSeconds",
            ),
            cel(
                "!has(self.predictive) || !has(self.predictive.seasonalityPeriodSeconds) || "
                "self.predictive.historySeconds >= "
                "2 * self.predictive.seasonalityPeriodSeconds + 2 * self.pollIntervalSeconds",
                "predictive.historySeconds must hold two seasonality periods plus two polls "
                "(2 x seasonalityPeriodSeconds + 2 x pollIntervalSeconds): raise historySeconds or "
                "shorten seasonalityPeriodSeconds",
                ".predictive.historySeconds",
            ),
        )
    )
    targetRef: TargetRef = Field(description="The object to scale, through its scale subresource")
    minReplicas: NonNegativeInt = Field(
        default=1, description="Never fewer replicas (0 allows scale to zero)"
    )
    maxReplicas: PositiveInt = Field(description="Never more replicas")
    pollIntervalSeconds: int = Field(
        default=15,
        ge=1,
        le=3600,
        description="Seconds per evaluation on average; a Resource metric is read as its new samples land",
    )
    mode: Literal["Target", "Thresholds"] = Field(
        default="Target",
        description="Target: HPA's ceil(current*value/target); Thresholds: the utilization bands",
    )
    tolerance: float = Field(
        default=0.1, ge=0, lt=1, description="Ignore ratios within 1 +/- this (and forecasts within it)"
    )
    metrics: list[MetricSpec] = Field(
        min_length=1, max_length=10, description="What to scale on; the largest proposal wins"
    )
    thresholds: Thresholds = Field(default_factory=Thresholds, description="Utilization bands")
    behavior: Behavior | None = Field(default=None, description="Cooldowns, windows and step limits")
    predictive: Predictive | None = Field(default=None, description="Forecast-driven scaling")
    schedule: list[ScheduleWindow] = Field(
        default_factory=list, max_length=20, description="Cron windows that raise minReplicas"
    )
    fallback: Fallback | None = Field(default=None, description="What to do while metrics fail")
    paused: bool = Field(default=False, description="Freeze: the target's replicas are left alone")
    override: Override | None = Field(
        default=None, description="Manual scale with a reason: this size, until expiresAt or removed"
    )


class MetricStatus(Model):
    name: str = Field(description="The metric: cpu, memory or the PromQL query")
    type: str = Field(description="Resource or Prometheus")
    value: str | None = Field(default=None, description="The last reading")
    target: str | None = Field(default=None, description="What it is compared with")
    utilization: float | None = Field(default=None, description="Reading / target, for Thresholds mode")
    proposal: int | None = Field(default=None, description="Replicas this metric alone asks for")
    error: str | None = Field(default=None, description="Why the reading failed")


class ForecastStatus(Model):
    demand: float = Field(description="Forecast demand at the horizon, in replicas")
    replicas: int = Field(description="Replicas that demand needs")
    horizonSeconds: int = Field(description="How far ahead")
    error: float | None = Field(default=None, description="RMSE of one-step-ahead forecasts, in replicas")
    samples: int = Field(default=0, description="History points the forecaster has learned from")
    model: str | None = Field(default=None, description="Holt, or HoltWinters with a season")
    stepSeconds: float | None = Field(default=None, description="Seconds between history points")
    seasonSeconds: int | None = Field(default=None, description="The season the forecast works with")
    seasonSource: str | None = Field(
        default=None, description="Configured (seasonalityPeriodSeconds) or Detected (in the history)"
    )
    gate: str | None = Field(
        default=None,
        description="Whether the forecast may raise the size: Trusted, Learning (too few forecasts scored), "
        "LessAccurateThanReactive, or ObserveOnly",
    )
    errorRatio: float | None = Field(
        default=None,
        description="The forecast's recent mean absolute error at the horizon over the reactive "
        "assumption's (demand stays as it is); below 1 the forecast is Trusted",
    )
    wouldScaleTo: int | None = Field(
        default=None, description="Replicas the forecast asked for above the reactive answer, used or not"
    )


class DecisionRecord(Model):
    time: datetime = Field(description="When")
    fromReplicas: int = Field(description="Size before")
    toReplicas: int = Field(description="Size after")
    reason: str = Field(description="Why (ScaleUp, EmergencyScaleUp, PredictiveScaleUp, ...)")
    message: str = Field(default="", description="Details")


class WorkerScalerStatus(Model):
    observedGeneration: int | None = Field(default=None, description="The generation this status describes")
    currentReplicas: int | None = Field(default=None, description="The target's size at the last evaluation")
    desiredReplicas: int | None = Field(default=None, description="The size the scaler decided on")
    lastScaleTime: datetime | None = Field(default=None, description="When the scaler last changed the size")
    currentMetrics: list[MetricStatus] = Field(default_factory=list, description="The last readings")
    forecast: ForecastStatus | None = Field(default=None, description="The last forecast (predictive only)")
    decisions: list[DecisionRecord] = Field(
        default_factory=list, max_length=10, description="The last size changes, newest last"
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="AbleToScale, ScalingActive, ScalingLimited"
    )


class WorkerScaler(Model):
    """Scales any kind with a scale subresource (a Deployment, a ContainerPool) on CPU or memory from metrics.k8s.io or on a Prometheus query, as a HorizontalPodAutoscaler does, optionally ahead of a forecast."""

    spec: WorkerScalerSpec = Field(
        description="The target, its bounds, the metrics and what each should read, and how fast to scale either way"
    )
    status: WorkerScalerStatus | None = Field(
        default=None,
        description="The replicas the scaler read and decided, each metric's current value, the last size changes and the conditions AbleToScale, ScalingActive and ScalingLimited",
    )


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
