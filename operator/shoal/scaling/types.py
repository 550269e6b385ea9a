"""Plain data the engine reads and returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.scaling.forecast import Fit
    from shoal.scaling.outlook import Outlook
    from shoal.scaling.skill import Skill


@dataclass(frozen=True)
class PodSample:
    """One pod of the target, for Resource metrics. usage/request in the same unit (cores, bytes)."""

    name: str
    ready: bool
    usage: float | None  # None: the metrics API has no sample for it
    request: float | None
    phase: str = "Running"  # Pending pods are unready to HPA; Failed ones are left out
    deleting: bool = False  # a deletionTimestamp: left out
    # For CPU's initialization rules (UTC seconds): status.startTime, the Ready condition's last
    # transition, and the metric's sample time and window; None where the API gave none (HPA then
    # counts the pod unready). The defaults are a pod started and ready long ago.
    started: float | None = 0.0
    ready_since: float | None = 0.0
    sampled: float | None = None
    window: float | None = None


@dataclass(frozen=True)
class MetricReading:
    name: str
    kind: str  # Resource | Prometheus
    error: str | None = None
    pods: tuple[PodSample, ...] = ()
    target_utilization: float | None = None  # Resource: fraction of requests (0.5 = 50 %)
    value: float | None = None  # Prometheus: the query's value
    target_per_replica: float | None = None
    target_value_utilization: float | None = None  # Prometheus: query is itself a 0..1 utilization
    activation: float = 0.0  # Prometheus: at or below it, the metric asks for zero replicas


@dataclass(frozen=True)
class Observation:
    current_replicas: int
    metrics: tuple[MetricReading, ...]
    pod_startup_seconds: float | None = None


@dataclass(frozen=True)
class Proposal:
    name: str
    kind: str
    replicas: int | None  # None when the metric failed
    utilization: float | None = None  # for thresholds and the emergency band
    demand: float | None = None  # replicas needed right now, for forecasting
    value: str | None = None
    target: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Forecast:
    demand: float  # replicas needed at the horizon
    replicas: int
    horizon_seconds: float
    error: float | None  # RMSE of one-step-ahead in-sample forecasts, in replicas
    samples: int
    model: str = "Holt"  # or HoltWinters (with a season)
    step_seconds: float = 15.0


@dataclass(frozen=True)
class History:
    """What the engine remembers between evaluations; returned anew by each decide()."""

    recommendations: tuple[tuple[float, int], ...] = ()  # (time, clamped raw proposal)
    events: tuple[tuple[float, int, int], ...] = ()  # (time, from, to) of applied scalings
    fit: Fit | None = None  # the demand forecaster's state (predictive scalers only)
    failures: int = 0  # consecutive evaluations with no usable metric
    capped_up: int = 0  # target of a scale-up the step limit cut short, while it is being finished
    skill: Skill | None = None  # how the forecast did at its horizon lately (scaling/skill.py)
    season: float | None = None  # the season found in the history (seconds), when none is configured
    season_checked: float = -math.inf  # when one was last looked for


@dataclass(frozen=True)
class Decision:
    desired: int
    current: int
    reason: str  # ScaleUp, ScaleDown, EmergencyScaleUp, WithinTolerance, CooldownActive, ...
    message: str
    able_to_scale: bool = True
    scaling_active: bool = True
    limited: bool = False
    limited_reason: str = ""
    proposals: tuple[Proposal, ...] = ()
    forecast: Forecast | None = None
    schedule_floor: int | None = None
    outlook: Outlook | None = None  # the predictive look ahead: season, skill, gate
    forecast_wants: int | None = None  # replicas the forecast asked for above the reactive answer

    @property
    def changed(self) -> bool:
        return self.desired != self.current


@dataclass(frozen=True)
class Rules:
    """Resolved behaviour for one direction."""

    cooldown: float
    stabilization: float
    max_pods: int | None
    max_percent: int | None
    period: float


@dataclass(frozen=True)
class OverrideRule:
    """spec.override: a size set by a person, with why, until `expires` (UTC seconds; None: no end)."""

    replicas: int
    reason: str
    expires: float | None = None

    def holds(self, wall: float) -> bool:
        return self.expires is None or wall < self.expires


@dataclass(frozen=True)
class EngineConfig:
    """The scaler spec reduced to what the engine needs (built by shoal.scaling.engine.config)."""

    min_replicas: int
    max_replicas: int
    mode: str = "Target"
    tolerance: float = 0.1
    scale_up: float = 0.8
    scale_down: float = 0.3
    emergency: float = 0.95
    up: Rules = field(default_factory=lambda: Rules(0, 0, 4, 100, 15))  # engine.config's defaults
    down: Rules = field(default_factory=lambda: Rules(0, 300, None, 100, 15))
    predictive: bool = False
    observe_only: bool = False  # forecast, score and show it, never act on it
    horizon: float = 120
    season: float | None = None
    history_seconds: float = 3600
    poll: float = 15
    fallback_policy: str = "Hold"
    fallback_replicas: int | None = None
    failure_threshold: int = 3
    schedule: tuple[tuple[str, float, int], ...] = ()  # (cron, duration seconds, min replicas)
    override: OverrideRule | None = None
