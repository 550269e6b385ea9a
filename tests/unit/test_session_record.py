"""A session's status write, pure: conditions from the phase, the fields it clears, the status patch
every kind writes with, the phase Event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shoal import conditions
from shoal.sessions import record

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_conditions_follow_the_phase_and_keep_their_transition_time_while_unchanged() -> None:
    queued = record.complete({}, {"reason": "Queued", "message": "waiting"}, 1, T0)
    assert queued["phase"] == "Pending" and queued["observedGeneration"] == 1
    assert cond(queued, "Admitted")["status"] == "False" and cond(queued, "Running")["status"] == "False"
    assert record.queued_since(queued) == T0
    still = record.complete(queued, {**queued, "message": "still waiting"}, 1, T0 + timedelta(seconds=9))
    assert record.queued_since(still) == T0  # waiting since the first write, not the latest
    running = record.complete(still, {"phase": "Running", "lastCheckpoint": "/c/1.zip"}, 2, T0 + timedelta(1))
    assert cond(running, "Admitted")["status"] == "True" and cond(running, "Running")["status"] == "True"
    assert cond(running, "Checkpointed")["message"] == "/c/1.zip"
    assert record.queued_since(running) is None


def test_a_preempted_session_was_admitted_and_a_backoff_is_not_queueing() -> None:
    preempted = record.complete({}, {"phase": "Pending", "reason": "Preempted"}, 1, T0)
    assert cond(preempted, "Admitted")["status"] == "True"
    backoff = record.complete({}, {"phase": "Pending", "reason": "BackoffRestart"}, 1, T0)
    assert record.queued_since(backoff) is None


def test_the_patch_carries_changes_and_nulls_cleared_fields_and_nothing_when_equal() -> None:
    old = record.complete({}, {"phase": "Running", "podName": "p-1", "checkpointAcknowledged": True}, 1, T0)
    assert "checkpointAcknowledged" not in old
    assert conditions.status_patch(old, dict(old)) == {}
    new = record.complete(old, {"phase": "Pending", "reason": "Paused"}, 1, T0)
    p = conditions.status_patch(old, new)
    assert p["podName"] is None and p["phase"] == "Pending" and p["reason"] == "Paused" and "conditions" in p
    assert "observedGeneration" not in p  # unchanged fields are not sent


def test_a_status_patch_keeps_what_it_does_not_name_and_ignores_condition_timestamps() -> None:
    ready = conditions.condition("Ready", True, "AllReady")
    was = conditions.merge(None, [ready], 1, T0)
    old: dict[str, Any] = {"replicas": 3, "lastScaleTime": "t0", "conditions": was}
    later = conditions.merge(None, [ready], 1, T0 + timedelta(hours=1))  # another stamp, same meaning
    assert conditions.status_patch(old, {"replicas": 3, "conditions": later}) == {}
    p = conditions.status_patch(old, {"replicas": 4, "conditions": later})
    assert p == {"replicas": 4}  # lastScaleTime, left out, stays as it is
    gone = conditions.condition("Ready", False, "Scaling")
    p = conditions.status_patch(old, {"replicas": 3, "conditions": conditions.merge(was, [gone], 1, T0)})
    assert list(p) == ["conditions"] and p["conditions"][0]["status"] == "False"


def test_a_phase_or_reason_change_posts_one_event_and_failures_warn() -> None:
    assert record.phase_event({"phase": "Running"}, {"phase": "Running"}) is None
    e = record.phase_event({"phase": "Running"}, {"phase": "Failed", "message": "boom"})
    assert e is not None and (e.type, e.reason, e.message) == ("Warning", "Failed", "boom")
    e = record.phase_event({}, {"phase": "Pending", "reason": "Queued"})
    assert e is not None and (e.type, e.reason) == ("Normal", "Pending")
    # A start held by the kubelet or the scheduler warns; one going as it should does not.
    starting = {"phase": "Starting", "reason": "PodStarting"}
    e = record.phase_event(starting, {"phase": "Starting", "reason": "ErrImagePull", "message": "pod s-1: x"})
    assert e is not None and (e.type, e.reason, e.message) == ("Warning", "Starting", "pod s-1: x")
    e = record.phase_event({"phase": "Starting", "reason": "PodCreated"}, starting)
    assert e is not None and e.type == "Normal"


def test_a_session_given_gpus_that_trains_on_the_cpu_says_so_once() -> None:
    spec = {"resources": {"gpu": 2}}
    assert record.resource_conditions(spec, {}, "") == []  # no report yet: nothing known
    assert record.resource_conditions({}, {"device": "cpu"}, "") == []  # no GPU asked for: nothing to say
    first = record.complete(
        {}, {"phase": "Running"}, 1, T0, record.resource_conditions(spec, {"device": "cpu"}, "")
    )
    gpu = cond(first, "GpuInUse")
    assert (gpu["status"], gpu["reason"]) == ("False", "TrainingOnCpu")
    assert "spec.resources.gpu is 2 but the trainer runs on cpu" in gpu["message"]
    assert [(e.type, e.reason) for e in record.condition_events({}, first)] == [("Warning", "TrainingOnCpu")]
    again = record.complete(
        first, {"phase": "Running"}, 1, T0, record.resource_conditions(spec, {"device": "cpu"}, "")
    )
    assert record.condition_events(first, again) == []  # every later write: no second Event
    on_gpu = record.resource_conditions(spec, {"device": "cuda:0"}, "")
    fixed = record.complete(again, {"phase": "Running"}, 1, T0, on_gpu)
    assert (
        cond(fixed, "GpuInUse")["status"] == "True" and cond(fixed, "GpuInUse")["reason"] == "TrainingOnGpu"
    )
    assert record.condition_events(again, fixed) == []


def test_gpu_memory_is_requested_as_the_operators_resource_or_flagged_as_not_enforced() -> None:
    spec = {"resources": {"gpu": 1, "gpuMemory": "16Gi"}}
    [mapped] = record.resource_conditions(spec, {}, "nvidia.com/gpumem")
    assert (mapped["status"], mapped["reason"]) == ("True", "MappedToResource")
    assert mapped["message"] == "requested as nvidia.com/gpumem: 16Gi"
    [dropped] = record.resource_conditions(spec, {}, "")
    assert (dropped["status"], dropped["reason"]) == ("False", "NoGpuMemoryResource")
    assert (
        "gpuMemory 16Gi is not enforced" in dropped["message"] and "gpu.memoryResource" in dropped["message"]
    )
    status = record.complete({}, {"reason": "Queued"}, 1, T0, [dropped])
    assert [e.reason for e in record.condition_events({}, status)] == ["NoGpuMemoryResource"]
