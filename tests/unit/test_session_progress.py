"""How an agent's report becomes status: metrics, and which watch events a session needs."""

from __future__ import annotations

from typing import Any

from shoal.config import Settings
from shoal.reconcile.session import SessionReconciler, metrics_of


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


def session_obj(rv: str, event: str = "MODIFIED") -> tuple[str, dict[str, Any]]:
    return event, {"metadata": {"namespace": "ns", "name": "s", "resourceVersion": rv}}


def test_the_echo_of_its_own_status_write_is_not_a_reason_to_reconcile() -> None:
    rec = SessionReconciler(kube=None, settings=Settings.from_env())  # type: ignore[arg-type]
    assert rec.relevant(*session_obj("10", "ADDED"))
    rec.written[("ns", "s")] = "11"
    assert not rec.relevant(*session_obj("11"))  # the write itself coming back
    assert rec.relevant(*session_obj("12"))  # anything after it: a user's edit
    assert rec.relevant(*session_obj("11", "DELETED"))
    assert ("ns", "s") not in rec.written
