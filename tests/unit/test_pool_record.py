"""A pool's status, conditions and Events, decided without the API server (shoal.pool.record)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shoal.api.pool import ContainerPoolSpec
from shoal.pool import record
from shoal.pool.plan import Counts, Plan
from tests.unit.fakes import POOL, T0


def spec(**fields: Any) -> ContainerPoolSpec:
    return ContainerPoolSpec.model_validate({**POOL, **fields})


def by_type(conds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conds}


def test_a_pass_that_creates_says_scaling_up_not_ready_and_posts_one_scaled_up_event() -> None:
    p = Plan(desired=4, create=3, counts=Counts(replicas=4, ready=1, idle=1, pending=3))
    conds = by_type(record.conditions_of(p, spec(), 0, created=3, deleted={}, create_error=""))
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "ReplicasNotReady")
    assert conds["Ready"]["message"] == "1/4 pods ready"
    assert (conds["Scaling"]["reason"], conds["Scaling"]["message"]) == (
        "ScalingUp",
        "creating 3 pod(s) towards 4",
    )
    assert conds["Degraded"]["status"] == "False" and conds["ScalingLimited"]["reason"] == "WithinBounds"
    assert record.events_of(p, 3, {}, "") == [("Normal", "ScaledUp", "Created 3 pod(s); desired 4")]


def test_failures_and_create_errors_degrade_the_pool_and_warn() -> None:
    p = Plan(desired=2, create=1, counts=Counts(replicas=2, ready=1, idle=1, failed=1))
    deleted = {"Failed": ["a"], "MaxAge": ["b", "c"]}
    error = "pods is forbidden: exceeded quota"
    conds = by_type(record.conditions_of(p, spec(), 0, created=0, deleted=deleted, create_error=error))
    assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == ("True", "CreateFailed")
    assert conds["Degraded"]["message"] == error
    assert record.events_of(p, 0, deleted, error) == [
        ("Normal", "Recycled", "Replacing pod(s) b, c: MaxAge"),
        ("Warning", "PodFailed", "Replacing unhealthy pod(s) a: Failed"),
        ("Warning", "CreateFailed", error),
    ]
    failing = by_type(record.conditions_of(p, spec(), 0, created=0, deleted={}, create_error=""))["Degraded"]
    assert (failing["reason"], failing["message"]) == ("PodsFailing", "1 pod(s) failed or never became ready")


def test_a_bound_that_sets_the_size_is_scaling_limited() -> None:
    p = Plan(desired=3, counts=Counts(replicas=3, ready=3, claimed=3))
    conds = by_type(record.conditions_of(p, spec(replicas=5, maxReplicas=3), 0, 0, {}, ""))
    assert (conds["ScalingLimited"]["status"], conds["ScalingLimited"]["reason"]) == (
        "True",
        "AboveMaxReplicas",
    )
    assert conds["Ready"]["status"] == "True" and conds["Scaling"]["reason"] == "Stable"


def test_event_messages_name_at_most_five_pods() -> None:
    pods = [f"p{i}" for i in range(8)]
    p = Plan(desired=0, adopt=pods[:2])
    events = record.events_of(p, 0, {"ScaleDown": pods, "Orphan": ["o"]}, "")
    assert events == [
        ("Normal", "ScaledDown", "Deleted 8 idle pod(s) (p0, p1, p2, p3, p4 and 3 more); desired 0"),
        ("Normal", "OrphanRemoved", "Deleted unowned pod(s) o from an older template"),
        ("Normal", "Adopted", "Adopted pod(s) p0, p1"),
    ]


def test_status_counts_only_the_creations_that_happened_and_keeps_unchanged_transition_times() -> None:
    pool = {
        "metadata": {"name": "w", "generation": 7},
        "status": {
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-12-01T11:00:00Z"}]
        },
    }
    p = Plan(desired=4, create=3, counts=Counts(replicas=4, ready=1, idle=1, claimed=1))
    conds = record.conditions_of(p, spec(), 0, created=2, deleted={}, create_error="")
    later = T0 + timedelta(minutes=5)
    status = record.compose(pool, p, conds, later, scaled=True, created=2, waiting=5)
    assert status["replicas"] == 3  # 4 planned with 3 to create, of which 2 were made
    assert status["waitingClaims"] == 5  # what a scaler's Pool metric reads
    assert (status["desiredReplicas"], status["readyReplicas"], status["claimedReplicas"]) == (4, 1, 1)
    assert status["selector"] == "shoal.dev/pool=w" and status["observedGeneration"] == 7
    assert status["lastScaleTime"] == "2026-12-01T12:05:00Z"
    ready = by_type(status["conditions"])["Ready"]
    assert ready["lastTransitionTime"] == "2026-12-01T11:00:00Z"  # still False: not a transition
    assert by_type(status["conditions"])["Scaling"]["lastTransitionTime"] == "2026-12-01T12:05:00Z"


def test_an_invalid_spec_is_not_ready_and_degraded_with_no_counts() -> None:
    status = record.compose({"metadata": {"name": "w"}}, None, record.invalid_spec("x" * 600), T0)
    assert set(status) == {"observedGeneration", "conditions"}
    conds = by_type(status["conditions"])
    assert conds["Ready"]["reason"] == conds["Degraded"]["reason"] == "InvalidSpec"
    assert len(conds["Ready"]["message"]) == 512
