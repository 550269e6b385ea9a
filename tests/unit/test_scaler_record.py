"""A scaler's status, composed purely: what one evaluation records, and what a restart rebuilds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shoal import conditions
from shoal.scaling.record import MAX_DECISIONS, compose, conditions_of, seed_history
from shoal.scaling.types import Decision

WALL = 1_799_661_600.0  # 2027-01-11T10:00:00Z


def scaler(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "s", "generation": 2}, "status": status or {}}


def decision(current: int, desired: int, reason: str = "ScaleUp") -> Decision:
    return Decision(desired=desired, current=current, reason=reason, message=f"{current} -> {desired}")


def evaluate(obj: dict[str, Any], wall: float, d: Decision) -> None:
    """One evaluation's status, merged into the object as the API server merges the patch."""
    obj["status"] = {**obj["status"], **compose(obj, wall, conditions_of(d), current=d.current, decision=d)}


def test_a_decision_is_recorded_when_it_scales_or_its_reason_changes_and_only_the_last_ten_kept() -> None:
    obj = scaler()
    for i in range(14):
        evaluate(obj, WALL + i, decision(i, i + 1))
    decisions = obj["status"]["decisions"]
    assert len(decisions) == MAX_DECISIONS and decisions[-1]["toReplicas"] == 14
    assert decisions[-1]["time"] == "2027-01-11T10:00:13Z" == obj["status"]["lastScaleTime"]
    hold = decision(14, 14, "WithinTolerance")
    evaluate(obj, WALL + 20, hold)
    evaluate(obj, WALL + 30, hold)
    assert [d["reason"] for d in obj["status"]["decisions"][-2:]] == ["ScaleUp", "WithinTolerance"]
    assert obj["status"]["lastScaleTime"] == "2027-01-11T10:00:13Z"  # holding is not a scaling


def test_conditions_this_evaluation_did_not_speak_about_are_kept() -> None:
    old = [conditions.condition("ScalingLimited", True, "AtMax", "wants 12")]
    obj = scaler({"conditions": conditions.merge(None, old, 1, datetime(2027, 1, 11, tzinfo=UTC))})
    paused = [conditions.condition("ScalingActive", False, "Paused", "spec.paused is true")]
    status = compose(obj, WALL, paused, current=3)
    assert {c["type"]: c["reason"] for c in status["conditions"]} == {
        "ScalingActive": "Paused",
        "ScalingLimited": "AtMax",
    }
    assert "decisions" not in status and status["currentReplicas"] == 3 and status["observedGeneration"] == 2


def test_scalings_recorded_in_status_seed_cooldowns_on_the_monotonic_clock() -> None:
    """After a restart the decisions in status (wall times) become ages on this process's clock."""
    status = {
        "decisions": [
            {"time": "2027-01-11T09:59:20Z", "fromReplicas": 2, "toReplicas": 5},
            {"time": "2027-01-11T09:59:50Z", "fromReplicas": 5, "toReplicas": 5},  # no scaling
            {"time": "2027-01-11T10:00:30Z", "fromReplicas": 5, "toReplicas": 6},  # ahead of us
            {"time": "not a time", "fromReplicas": 1, "toReplicas": 2},
        ]
    }
    assert seed_history(status, now=700.0, wall=WALL).events == ((660.0, 2, 5), (700.0, 5, 6))
