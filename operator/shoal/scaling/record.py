"""What a scaler's status says, pure: the conditions a decision implies, the status written after an
evaluation (metrics, forecast, the last decisions), the Events an override's start and end post, and
the history a restart rebuilds from it."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from shoal import conditions
from shoal.scaling.types import Decision, History
from shoal.times import format_time, parse_time

MAX_DECISIONS = 10


def conditions_of(d: Decision) -> list[dict[str, Any]]:
    return [
        conditions.condition(
            "AbleToScale",
            d.able_to_scale,
            "ReadyForNewScale" if d.able_to_scale else d.reason,
            d.message if not d.able_to_scale else "the target's scale can be changed",
        ),
        conditions.condition(
            "ScalingActive",
            d.scaling_active,
            "ValidMetricFound" if d.scaling_active else d.reason,
            d.message if not d.scaling_active else "",
        ),
        conditions.condition(
            "ScalingLimited",
            d.limited,
            d.limited_reason or "DesiredWithinRange",
            d.message if d.limited else "",
        ),
    ]


def compose(
    obj: dict[str, Any],
    wall: float,
    conds: list[dict[str, Any]],
    current: int | None = None,
    decision: Decision | None = None,
) -> dict[str, Any]:
    """The status after one evaluation at wall time `wall`: conditions merged with the old ones (those
    this evaluation did not speak about are kept), a decision recorded when it scaled or its reason
    changed, at most MAX_DECISIONS of them."""
    meta = obj["metadata"]
    old = obj.get("status") or {}
    when = datetime.fromtimestamp(wall, tz=UTC)
    status: dict[str, Any] = {"observedGeneration": meta.get("generation")}
    if current is not None:
        status["currentReplicas"] = current
    decisions = list(old.get("decisions") or [])
    if decision is not None:
        status["desiredReplicas"] = decision.desired
        status["currentMetrics"] = [
            {
                k: v
                for k, v in {
                    "name": p.name,
                    "type": p.kind,
                    "value": p.value,
                    "target": p.target,
                    "utilization": round(p.utilization, 4) if p.utilization is not None else None,
                    "proposal": p.replicas,
                    "error": p.error,
                }.items()
                if v is not None
            }
            for p in decision.proposals
        ]
        f = decision.forecast
        status["forecast"] = (
            None
            if f is None
            else {
                "demand": round(f.demand, 3),
                "replicas": f.replicas,
                "horizonSeconds": int(f.horizon_seconds),
                "error": round(f.error, 4) if f.error is not None else None,
                "samples": f.samples,
                "model": f.model,
                "stepSeconds": f.step_seconds,
                **outlook_status(decision),
            }
        )
        last = decisions[-1] if decisions else None
        if decision.changed or last is None or last.get("reason") != decision.reason:
            decisions.append(
                {
                    "time": format_time(when),
                    "fromReplicas": decision.current,
                    "toReplicas": decision.desired,
                    "reason": decision.reason,
                    "message": decision.message[:256],
                }
            )
            decisions = decisions[-MAX_DECISIONS:]
        status["decisions"] = decisions
        if decision.changed:
            status["lastScaleTime"] = format_time(when)
    # Conditions this evaluation did not speak about are kept (e.g. ScalingLimited while paused).
    status["conditions"] = conditions.merge_keeping(
        old.get("conditions"), conds, meta.get("generation"), when
    )
    return status


def override_event(old: dict[str, Any], decision: Decision, expired: bool) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event an override's start or end posts, read against the status
    the last evaluation wrote (its ScalingActive condition says whether an override held), so a
    restart posts neither again; None when neither happened."""
    active: dict[str, Any] = next(
        (c for c in old.get("conditions") or [] if c.get("type") == "ScalingActive"), {}
    )
    was = active.get("reason") == "Override"
    if decision.reason == "Override" and not was:
        return ("Normal", "OverrideStarted", decision.message)
    if was and decision.reason != "Override":
        how = "expired" if expired else "was removed"
        return (
            "Normal",
            "OverrideEnded",
            f"the override {how}: the metrics decide again ({decision.message})",
        )
    return None


def seed_history(status: dict[str, Any], now: float, wall: float) -> History:
    """After a restart, cooldowns continue from the scalings recorded in status: their wall times
    become ages, placed on this process's monotonic clock `now`."""
    events = []
    for d in status.get("decisions") or []:
        t = parse_time(d.get("time"))
        if t and d.get("fromReplicas") != d.get("toReplicas"):
            age = max(0.0, wall - t.timestamp())  # a time ahead of our clock counts as just now
            events.append((now - age, int(d["fromReplicas"]), int(d["toReplicas"])))
    return History(events=tuple(events))


def outlook_status(decision: Decision) -> dict[str, Any]:
    """status.forecast's season, gate, error ratio and what the forecast asked for."""
    view = decision.outlook
    if view is None:
        return {}
    ratio = view.skill.ratio
    return {
        "seasonSeconds": round(view.season) if view.season else None,
        "seasonSource": view.season_source,
        "gate": view.gate,
        "errorRatio": round(ratio, 3) if ratio is not None and math.isfinite(ratio) else None,
        "wouldScaleTo": decision.forecast_wants,
    }
