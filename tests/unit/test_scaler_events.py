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
