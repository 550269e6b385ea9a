"""decide(): one evaluation of a scaler, from observations and history to a decision.

Pipeline: per-metric proposals -> largest -> predictive and scheduled floors -> clamp
-> emergency bypass | stabilization -> cooldown -> rate limit -> clamp. Missing data never
scales down. A manual override (spec.override) set by a person replaces the pipeline while it
holds. Time and history come in as arguments; the new history goes out with the decision.

`now` measures every window and cooldown, so the operator passes a monotonic clock (a wall clock
stepped by NTP would open a cooldown early or hold it for hours); `wall` (UTC seconds) is for the cron
schedule and the demand history, which outlives the process. Simulations on one clock pass `now` alone.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

from shoal.api.scaler import ScalingRules, WorkerScalerSpec
from shoal.scaling.calculator import propose
from shoal.scaling.outlook import describe_gate, look_ahead
from shoal.scaling.schedule import floor_at
from shoal.scaling.types import Decision, EngineConfig, History, Observation, OverrideRule, Proposal, Rules
from shoal.times import format_time

KEEP_EVENTS = 3600.0


def _rules(
    r: ScalingRules | None, cooldown: int, stabilization: int, max_pods: int | None, max_percent: int
) -> Rules:
    r = r or ScalingRules()
    return Rules(
        cooldown=float(r.cooldownSeconds if r.cooldownSeconds is not None else cooldown),
        stabilization=float(
            r.stabilizationWindowSeconds if r.stabilizationWindowSeconds is not None else stabilization
        ),
        max_pods=r.maxPods if r.maxPods is not None or r.maxPercent is not None else max_pods,
        max_percent=r.maxPercent if r.maxPercent is not None or r.maxPods is not None else max_percent,
        period=float(r.periodSeconds),
    )


def config(spec: WorkerScalerSpec) -> EngineConfig:
    """Defaults, HPA's: up +max(4 pods, 100 %) per 15 s; down a 300 s window, 100 % per 15 s; no cooldowns."""
    b = spec.behavior
    p = spec.predictive
    fb = spec.fallback
    return EngineConfig(
        min_replicas=spec.minReplicas,
        max_replicas=spec.maxReplicas,
        mode=spec.mode,
        tolerance=spec.tolerance,
        scale_up=spec.thresholds.scaleUp,
        scale_down=spec.thresholds.scaleDown,
        emergency=spec.thresholds.emergency,
        # No cooldowns by default: HPA's pacing (its 300 s scale-down window, its step limits) and nothing
        # more. B2 measured DESIGN's 30 s / 180 s: the up cooldown only delays a rise (Twitter queue 1.07x,
        # Azure conversation queue 1.15x HPA's under-provisioning, 1.01x and 1.0x without), and the down
        # cooldown keeps pods longer (cost 1.002-1.031x HPA's on every real row) to save changes HPA's
        # window already saves (docs/scalers.md, "Defaults").
        up=_rules(b.scaleUp if b else None, 0, 0, 4, 100),
        down=_rules(b.scaleDown if b else None, 0, 300, None, 100),
        predictive=bool(p and p.forecasting),
        observe_only=bool(p and p.observeOnly),
        horizon=float(p.horizonSeconds) if p else 120.0,
        season=float(p.seasonalityPeriodSeconds) if p and p.seasonalityPeriodSeconds else None,
        history_seconds=float(p.historySeconds) if p else 3600.0,
        poll=float(spec.pollIntervalSeconds),
        fallback_policy=fb.policy if fb else "Hold",
        fallback_replicas=fb.replicas if fb else None,
        failure_threshold=fb.failureThreshold if fb else 3,
        schedule=tuple((w.cron, float(w.durationSeconds), w.minReplicas) for w in spec.schedule),
        override=OverrideRule(
            spec.override.replicas,
            spec.override.reason,
            spec.override.expiresAt.timestamp() if spec.override.expiresAt else None,
        )
        if spec.override
        else None,
    )


def _clamp(n: int, cfg: EngineConfig) -> int:
    return max(cfg.min_replicas, min(cfg.max_replicas, n))


def _rate_limit(current: int, desired: int, history: History, rules: Rules, now: float, up: bool) -> int:
    """At most max(maxPods, maxPercent of the size at the start of the period) per period. The size at
    the start is HPA's: the current size less what was added in the period, plus what was removed."""
    recent = [e for e in history.events if now - e[0] < rules.period]
    base = max(0, current - sum(to - frm for _, frm, to in recent))
    allowed = 0
    if rules.max_pods is not None:
        allowed = max(allowed, rules.max_pods)
    if rules.max_percent is not None:
        allowed = max(allowed, math.ceil(base * rules.max_percent / 100))
    if rules.max_pods is None and rules.max_percent is None:
        return desired
    if up:
        return min(desired, max(current, base + max(allowed, 1 if base == 0 else allowed)))
    return max(desired, min(current, base - allowed))


def _overridden(
    cfg: EngineConfig,
    ov: OverrideRule,
    current: int,
    proposals: tuple[Proposal, ...],
    history: History,
    events: tuple[tuple[float, int, int], ...],
    now: float,
    wall: float,
) -> tuple[Decision, History]:
    """A person's size, set as it is: no window, cooldown or step limit (the person chose the step),
    within min and max (which the schema already demands). The metrics are read and shown, and the
    forecaster keeps learning, so the scaler takes over with its history when the override ends."""
    desired = _clamp(ov.replicas, cfg)
    if desired != current:
        events = (*events, (now, current, desired))
    demand = max((p.demand for p in proposals if p.demand is not None), default=None)
    if cfg.predictive:  # learning goes on under an override: the scaler takes over with its history
        view = look_ahead(cfg, history, demand, wall, cfg.horizon)
        history = view.remembered(history)
    until = f" until {format_time(datetime.fromtimestamp(ov.expires, UTC))}" if ov.expires is not None else ""
    msg = f"manual override to {desired}{until}: {ov.reason}"
    decision = Decision(desired, current, "Override", msg, scaling_active=False, proposals=proposals)
    return decision, replace(history, events=events, capped_up=0)


def decide(
    cfg: EngineConfig, obs: Observation, history: History, now: float, wall: float | None = None
) -> tuple[Decision, History]:
    current = obs.current_replicas
    wall = now if wall is None else wall
    proposals = tuple(propose(m, cfg, current, wall) for m in obs.metrics)
    events = tuple(e for e in history.events if now - e[0] < KEEP_EVENTS)
    if cfg.override is not None and cfg.override.holds(wall):
        return _overridden(cfg, cfg.override, current, proposals, history, events, now, wall)
    usable = [p for p in proposals if p.replicas is not None]
    failed = [p for p in proposals if p.replicas is None]
    floor = floor_at(cfg.schedule, wall) if cfg.schedule else None

    if not usable:
        failures = history.failures + 1
        reasons = "; ".join(f"{p.name}: {p.error}" for p in failed) or "no metrics configured"
        desired, reason = current, "MetricsUnavailable"
        msg = f"holding at {current}: {reasons}"
        if (
            cfg.fallback_policy == "Replicas"
            and cfg.fallback_replicas is not None
            and failures >= cfg.failure_threshold
        ):
            # Never below current on missing data: the fallback can only raise the size.
            desired, reason = max(current, cfg.fallback_replicas), "FallbackReplicas"
            msg = f"{failures} failed evaluations: fallback to {desired}; {reasons}"
        if floor is not None and floor > desired:
            desired, reason = floor, "ScheduledFloor"
        # Only configuration (min/max) may lower the size here, never the missing data.
        desired = _clamp(max(desired, current), cfg)
        new_hist = replace(history, failures=failures, events=events)
        if desired != current:
            new_hist = replace(new_hist, events=(*events, (now, current, desired)))
        return Decision(
            desired, current, reason, msg, scaling_active=False, proposals=proposals, schedule_floor=floor
        ), new_hist

    best = max(usable, key=lambda p: p.replicas or 0)
    raw = int(best.replicas or 0)
    suffix = "Threshold" if cfg.mode == "Thresholds" else ""
    reason = (
        f"ScaleUp{suffix}" if raw > current else f"ScaleDown{suffix}" if raw < current else "WithinTolerance"
    )
    msg = f"{best.name}={best.value} (target {best.target}) proposes {raw}"
    if failed and raw < current:
        # HPA's rule: with some metrics missing, never scale down on the rest.
        raw, reason = current, "MetricsUnavailable"
        msg = "not scaling down while " + ", ".join(p.name for p in failed) + " unavailable"

    demand = max((p.demand for p in usable if p.demand is not None), default=None)
    fc, view, wants = None, None, None
    if not cfg.predictive:
        history = replace(history, fit=None, skill=None, season=None)
    else:
        view = look_ahead(cfg, history, demand, wall, max(cfg.horizon, obs.pod_startup_seconds or 0.0))
        history = view.remembered(history)
        fc = view.forecast
        # Like the reactive rule, ignore forecasts within the tolerance band, and within the forecast's
        # own error (2 x its one-step RMSE): noise is not a trend. Only ever upward.
        margin = max(current * cfg.tolerance, 2 * (fc.error or 0.0)) if fc is not None else 0.0
        if fc is not None and fc.replicas > raw and fc.demand > current + margin:
            wants = fc.replicas
            if view.may_raise:
                raw, reason = fc.replicas, "PredictiveScaleUp"
                msg = f"forecast demand {fc.demand:.2f} replicas in {fc.horizon_seconds:.0f}s"
            else:
                msg += f"; the forecast asks for {fc.replicas} in {fc.horizon_seconds:.0f}s ({describe_gate(view)})"
    if floor is not None and floor > raw:
        raw, reason, msg = floor, "ScheduledFloor", f"schedule window raises the floor to {floor}"

    limited, limited_reason = False, ""
    clamped = _clamp(raw, cfg)
    if clamped != raw:
        limited = True
        limited_reason = "AtMax" if raw > cfg.max_replicas else "AtMin"
    recs = tuple(
        r for r in history.recommendations if now - r[0] <= max(cfg.up.stabilization, cfg.down.stabilization)
    )
    recs = (*recs, (now, clamped))
    emergency = any(p.utilization is not None and p.utilization > cfg.emergency for p in usable)

    desired = clamped
    able = True
    capped_up = 0
    if emergency and clamped > current:
        reason = "EmergencyScaleUp"
        msg = f"utilization above {cfg.emergency:.0%}: scaling to {clamped} in one step"
    else:
        if desired > current:
            window = [clamped, *(r for t, r in recs if now - t < cfg.up.stabilization)]
            desired = max(current, min(window))
        elif desired < current:
            window = [clamped, *(r for t, r in recs if now - t < cfg.down.stabilization)]
            desired = min(current, max(window))
            if desired == current:
                reason, msg = (
                    "StabilizationWindow",
                    f"highest recommendation in the last {cfg.down.stabilization:.0f}s is {current}",
                )
        last_up = max((t for t, f, to in events if to > f), default=None)
        last_any = max((t for t, _, _ in events), default=None)
        # The cooldown keeps the scaler from reacting to the effects of its own last step; finishing a
        # scale-up that the step limit cut short is not a new reaction, so only the step limit paces it.
        finishing = history.capped_up > current
        if desired > current and last_up is not None and now - last_up < cfg.up.cooldown and not finishing:
            able, reason = False, "CooldownActive"
            msg = f"scale-up cooldown: {cfg.up.cooldown - (now - last_up):.0f}s left (wants {desired})"
            desired = current
        elif desired < current and last_any is not None and now - last_any < cfg.down.cooldown:
            able, reason = False, "CooldownActive"
            msg = f"scale-down cooldown: {cfg.down.cooldown - (now - last_any):.0f}s left (wants {desired})"
            desired = current
        if desired != current:
            limited_to = _rate_limit(
                current, desired, history, cfg.up if desired > current else cfg.down, now, desired > current
            )
            if limited_to != desired:
                if desired > current:
                    capped_up = desired
                limited, limited_reason = True, "ScaleUpLimited" if desired > current else "ScaleDownLimited"
                msg += f"; step limit allows {limited_to}"
                desired = limited_to
    desired = _clamp(desired, cfg)
    if (
        limited_reason == "AtMax"
        and reason.startswith(("ScaleUp", "EmergencyScaleUp", "PredictiveScaleUp"))
        and desired == current
    ):
        reason = "AtMax"
    new_events = (*events, (now, current, desired)) if desired != current else events
    new_hist = replace(history, recommendations=recs, events=new_events, failures=0, capped_up=capped_up)
    return Decision(
        desired,
        current,
        reason,
        msg,
        able_to_scale=able,
        limited=limited,
        limited_reason=limited_reason,
        proposals=proposals,
        forecast=fc,
        schedule_floor=floor,
        outlook=view,
        forecast_wants=wants,
    ), new_hist
