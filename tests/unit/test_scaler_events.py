"""Which WorkerScaler watch events lead to a reconcile: not the echo of the scaler's own status write."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any, cast

from shoal.api.metrics import MetricSpec
from shoal.config import Settings
from shoal.k8s.client import Kube
from shoal.reconcile.scaler import ScalerReconciler, _State
from shoal.scaling.types import History, MetricReading
from shoal.sources import SourceContext


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


class CountingKube:
    """The API server as an evaluation uses it: a Deployment's /scale, one scaler, requests by path."""

    SCALER = "/apis/shoal.dev/v1alpha1/namespaces/ns/workerscalers/s"
    SCALE = "/apis/apps/v1/namespaces/ns/deployments/web/scale"

    def __init__(self, scaler: dict[str, Any]) -> None:
        self.scaler = scaler
        self.requests: Counter[tuple[str, str]] = Counter()
        self.rv = 10

    def get(self, path: str) -> dict[str, Any]:
        self.requests[("GET", path)] += 1
        if path == "/apis/apps/v1":
            return {
                "resources": [{"name": "deployments", "kind": "Deployment"}, {"name": "deployments/scale"}]
            }
        assert path == self.SCALE
        return {"spec": {"replicas": 2}, "status": {"selector": "app=web"}}

    def get_if_exists(self, path: str) -> dict[str, Any] | None:
        self.requests[("GET", path)] += 1
        return copy.deepcopy(self.scaler) if path == self.SCALER else None

    def list_items(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        self.requests[("LIST", path)] += 1
        return []

    def merge_patch_if_exists(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.requests[("PATCH", path)] += 1
        self.rv += 1
        self.scaler = {**self.scaler, "status": patch["status"]}
        self.scaler["metadata"] = {**self.scaler["metadata"], "resourceVersion": str(self.rv)}
        return copy.deepcopy(self.scaler)

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.requests[("EVENT", reason)] += 1


class Steady:
    """A metric that asks for the replicas there are."""

    def read(self, ctx: SourceContext, metric: MetricSpec) -> MetricReading:
        return MetricReading("q", "Prometheus", value=float(ctx.current_replicas), target_per_replica=1.0)


def test_an_evaluation_reads_its_scaler_from_the_watch_and_composes_on_its_own_last_write() -> None:
    obj = scaler(resourceVersion="5", creationTimestamp="2026-01-01T00:00:00Z")
    obj["spec"] = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "maxReplicas": 5,
        "pollIntervalSeconds": 15,
        "metrics": [{"type": "Prometheus", "prometheus": {"query": "q", "targetPerReplica": 1}}],
    }
    kube = CountingKube(obj)
    now = [100.0]
    r = ScalerReconciler(cast(Kube, kube), Settings(), {"Prometheus": Steady()}, clock=lambda: now[0])
    assert r.relevant("ADDED", obj)
    assert r.reconcile("ns", "s") == 15.0
    assert kube.requests[("GET", kube.SCALER)] == 0  # the watch delivered it
    assert kube.requests[("GET", kube.SCALE)] == 1
    assert kube.requests[("PATCH", kube.SCALER + "/status")] == 1
    # The next poll, before the status write's echo: it composes on what it wrote, so an unchanged
    # evaluation writes nothing and records no second decision.
    now[0] += 15
    assert r.reconcile("ns", "s") == 15.0
    assert kube.requests[("GET", kube.SCALER)] == 0
    assert kube.requests[("PATCH", kube.SCALER + "/status")] == 1
    # A late echo of an older version does not replace the write's answer.
    assert not r.relevant("MODIFIED", {**obj, "status": {}})
    assert r.store.get("ns", "s")[1]["status"]["currentReplicas"] == 2  # type: ignore[index]


def test_a_scaler_the_watch_never_showed_is_read_from_the_api_server_and_a_deleted_one_is_not() -> None:
    obj = scaler(resourceVersion="5")
    obj["spec"] = {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}
    kube = CountingKube(obj)
    r = ScalerReconciler(cast(Kube, kube), Settings(), {})
    r.reconcile("ns", "s")  # a resync's listing enqueued it before its watch event came
    assert kube.requests[("GET", kube.SCALER)] == 1
    assert r.relevant("DELETED", obj)
    assert r.reconcile("ns", "s") is None
    assert kube.requests[("GET", kube.SCALER)] == 1


def pool_scaler(kube_scaler: dict[str, Any]) -> dict[str, Any]:
    kube_scaler["spec"] = {
        "targetRef": {"apiVersion": "shoal.dev/v1alpha1", "kind": "ContainerPool", "name": "web"},
        "maxReplicas": 9,
        "pollIntervalSeconds": 15,
        "metrics": [{"type": "Prometheus", "prometheus": {"query": "q", "targetPerReplica": 1}}],
    }
    return kube_scaler


class PoolKube(CountingKube):
    SCALE = "/apis/shoal.dev/v1alpha1/namespaces/ns/containerpools/web/scale"

    def __init__(self, scaler: dict[str, Any], replicas: int) -> None:
        super().__init__(scaler)
        self.replicas, self.pool_rv = replicas, 20

    def get(self, path: str) -> dict[str, Any]:
        self.requests[("GET", path)] += 1
        if path == "/apis/shoal.dev/v1alpha1":
            return {
                "resources": [
                    {"name": "containerpools", "kind": "ContainerPool"},
                    {"name": "containerpools/scale"},
                ]
            }
        assert path == self.SCALE
        return {"spec": {"replicas": self.replicas}, "status": {"selector": "pool=web"}}

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.requests[("PATCH", path)] += 1
        self.replicas, self.pool_rv = patch["spec"]["replicas"], self.pool_rv + 1
        return {"metadata": {"resourceVersion": str(self.pool_rv)}, "spec": {"replicas": self.replicas}}


class Demand:
    def __init__(self, value: float) -> None:
        self.value = value

    def read(self, ctx: SourceContext, metric: MetricSpec) -> MetricReading:
        return MetricReading("q", "Prometheus", value=self.value, target_per_replica=1.0)


def test_a_pool_target_is_read_from_the_pool_cache_unless_older_than_our_own_scale_patch() -> None:
    kube = PoolKube(pool_scaler(scaler(resourceVersion="5")), replicas=2)
    pools = {
        ("ns", "web"): {
            "metadata": {"resourceVersion": "20"},
            "spec": {"replicas": 2},
            "status": {"selector": "pool=web"},
        }
    }
    now, demand = [100.0], Demand(2.0)
    r = ScalerReconciler(
        cast(Kube, kube),
        Settings(),
        {"Prometheus": demand},
        clock=lambda: now[0],
        pools=lambda ns, n: pools.get((ns, n)),
    )
    r.relevant("ADDED", kube.scaler)
    r.reconcile("ns", "s")
    assert kube.requests[("GET", kube.SCALE)] == 0  # from the cache: nothing to scale
    demand.value = 4.0
    now[0] += 15
    r.reconcile("ns", "s")
    assert kube.requests[("PATCH", kube.SCALE)] == 1 and kube.replicas == 4
    # The next poll comes before the pool's watch event: the cache still says 2 at an older version,
    # so the scale is read afresh and the scaler does not scale (or record a scaling) a second time.
    now[0] += 15
    r.reconcile("ns", "s")
    assert kube.requests[("GET", kube.SCALE)] == 1
    assert kube.requests[("PATCH", kube.SCALE)] == 1
    assert kube.requests[("EVENT", "Scaled")] == 1
    pools[("ns", "web")] = {
        "metadata": {"resourceVersion": "21"},
        "spec": {"replicas": 4},
        "status": {"selector": "pool=web"},
    }
    now[0] += 15
    r.reconcile("ns", "s")  # the watch caught up
    assert kube.requests[("GET", kube.SCALE)] == 1
    assert kube.requests[("PATCH", kube.SCALE)] == 1
