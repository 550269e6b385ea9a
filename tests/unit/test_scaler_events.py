"""Which WorkerScaler watch events lead to a reconcile: not the echo of the scaler's own status write."""

from __future__ import annotations

from typing import Any, cast

from shoal.config import Settings
from shoal.k8s.client import Kube
from shoal.reconcile.scaler import ScalerReconciler, _State
from shoal.scaling.types import History


def scaler(generation: int = 3, uid: str = "u1", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "s", "uid": uid, "generation": generation, **meta}}


def test_status_echoes_are_dropped_but_spec_changes_deletions_and_new_objects_are_not() -> None:
    r = ScalerReconciler(cast(Kube, None), Settings(), {})
    assert r.relevant("ADDED", scaler())  # never evaluated yet
    r.states[("ns", "s")] = _State("u1", History(), last_eval=1.0, generation=3)
    assert not r.relevant("MODIFIED", scaler())  # our own status write: the next poll is queued
    assert r.relevant("MODIFIED", scaler(generation=4))  # the spec changed
    assert r.relevant("MODIFIED", scaler(uid="u2"))  # deleted and created again under the name
    assert r.relevant("DELETED", scaler())
    assert r.relevant("MODIFIED", scaler(deletionTimestamp="2026-01-01T00:00:00Z"))
    assert r.relevant(None, scaler())  # the listing at start-up and after a watch restart


def test_scalings_recorded_in_status_seed_cooldowns_on_the_monotonic_clock() -> None:
    """After a restart the decisions in status (wall times) become ages on this process's clock."""
    r = ScalerReconciler(cast(Kube, None), Settings(), {})
    obj = scaler() | {
        "status": {
            "decisions": [
                {"time": "2027-01-11T09:59:20Z", "fromReplicas": 2, "toReplicas": 5},
                {"time": "2027-01-11T09:59:50Z", "fromReplicas": 5, "toReplicas": 5},  # no scaling
                {"time": "2027-01-11T10:00:30Z", "fromReplicas": 5, "toReplicas": 6},  # ahead of us
            ]
        }
    }
    wall = 1_799_661_600.0  # 2027-01-11T10:00:00Z
    history = r._seed_history(obj, now=700.0, wall=wall)
    assert history.events == ((660.0, 2, 5), (700.0, 5, 6))
