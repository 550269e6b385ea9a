"""How an agent's report becomes status: metrics, and which watch events a session needs."""

from __future__ import annotations

from typing import Any

from shoal.config import Settings
from shoal.reconcile.session import SessionReconciler
from shoal.sessions.progress import apply_progress, metrics_of


def test_the_agents_report_becomes_status_metrics() -> None:
    report = {
        "timesteps": 12288,
        "episodes": 340,
        "meanReward": 187.25,
        "loss": 0.0123,
        "fps": 1510.4,
        "device": "cuda",
        "gpu": [
            {"gpu": 0, "utilization": 40.0, "memoryUsed": 2**30},
            {"gpu": 1, "utilization": 60.0, "memoryUsed": 2**30},
        ],
        "lastCheckpoint": {"path": "/checkpoints/ckpt-000000012288"},
    }
    assert metrics_of(report) == {
        "timesteps": 12288,
        "episodes": 340,
        "meanReward": 187.25,
        "loss": 0.0123,
        "fps": 1510.4,
        "gpuUtilization": 50.0,
        "gpuMemoryUsedBytes": 2**31,
        "device": "cuda",
    }
    # Before the first episode ends there is no reward; junk is dropped, not a crash.
    assert metrics_of({"timesteps": "7", "meanReward": None, "fps": "fast", "gpu": "none"}) == {
        "timesteps": 7,
        "episodes": 0,
    }


def session_obj(
    generation: int, event: str = "MODIFIED", preempted_by: str | None = None, **meta: Any
) -> tuple[str, dict[str, Any]]:
    return event, {
        "metadata": {"namespace": "ns", "name": "s", "uid": "u1", "generation": generation, **meta},
        "status": {"phase": "Running", "preemptedBy": preempted_by},
    }


def test_only_new_specs_and_deletions_need_a_reconcile_from_the_sessions_own_watch() -> None:
    rec = SessionReconciler(kube=None, settings=Settings.from_env())  # type: ignore[arg-type]
    assert rec.relevant(*session_obj(1, "ADDED"))
    assert rec.relevant(*session_obj(1))  # never reconciled yet
    rec.seen[("ns", "s")] = ("u1", 1, None)
    assert not rec.relevant(*session_obj(1))  # the echo of a status write: same spec
    assert rec.relevant(*session_obj(1, preempted_by="vip"))  # another session's reconcile wrote it
    assert rec.relevant(*session_obj(2))  # the user changed the spec
    assert rec.relevant(*session_obj(1, deletionTimestamp="2026-01-01T00:00:00Z"))
    assert rec.relevant(*session_obj(1, uid="u2"))  # deleted and created again under the same name
    assert rec.relevant(*session_obj(1, "DELETED"))
    assert ("ns", "s") not in rec.seen


def test_only_a_change_beyond_the_metrics_is_read_by_the_lifecycle() -> None:
    import json as _json

    from shoal.sessions.progress import lifecycle_view

    def pod(progress: dict[str, object] | None, phase: str = "Running", **ann: str) -> dict[str, object]:
        annotations = dict(ann)
        if progress is not None:
            annotations["shoal.dev/progress"] = _json.dumps(progress)
        return {"metadata": {"uid": "u", "annotations": annotations}, "status": {"phase": phase}}

    base = lifecycle_view(pod({"timesteps": 10, "fps": 100.0}), "shoal.dev/progress")
    assert lifecycle_view(pod({"timesteps": 20, "fps": 90.0}), "shoal.dev/progress") == base  # metrics
    assert lifecycle_view(pod(None), "shoal.dev/progress") != base  # the first report is news
    assert lifecycle_view(pod({"timesteps": 20, "ack": 1}), "shoal.dev/progress") != base  # an ack
    assert lifecycle_view(pod({"timesteps": 20, "exitCode": 0}), "shoal.dev/progress") != base
    assert lifecycle_view(pod({"timesteps": 10}, phase="Failed"), "shoal.dev/progress") != base
    cmd = lifecycle_view(pod({"timesteps": 10}, **{"shoal.dev/command": "pause"}), "shoal.dev/progress")
    assert cmd != base
    # A container the kubelet holds, while the pod's phase and conditions stay as they were.
    held = pod({"timesteps": 10})
    held["status"] = {
        "phase": "Running",
        "containerStatuses": [{"name": "t", "state": {"waiting": {"reason": "ErrImagePull"}}}],
    }
    assert lifecycle_view(held, "shoal.dev/progress") != base


def test_progress_is_rounded_down_and_reaches_100_only_at_the_end() -> None:
    for steps, shown in ((600, "0%"), (99_600, "99%"), (100_000, "100%"), (120_000, "100%")):
        new: dict[str, object] = {}
        apply_progress(new, {"timesteps": steps}, 100_000)
        assert new["progress"] == shown, (steps, new)
