"""A WorkerScaler on its pool's own load (metric type Pool) end to end: a burst of ContainerClaims
grows the pool ahead of them through the scaler, with no Prometheus, and it shrinks once they are
gone (the pure rules: tests/unit/test_pool_metric.py)."""

from __future__ import annotations

from functools import partial

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path
from tests.e2e.conftest import OperatorProcess, pool_manifest, scaler_manifest
from tests.e2e.util import (
    PodHistory,
    apply,
    claim_manifest,
    claim_phase_is,
    decisions,
    live_pods,
    pool,
    scaler,
    wait_until,
)

POOL = {"apiVersion": "shoal.dev/v1alpha1", "kind": "ContainerPool", "name": "fn"}


def test_a_burst_of_claims_grows_the_pool_through_its_pool_metric_and_it_shrinks_after(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("fn", 2, minReplicas=1, maxReplicas=12), namespace)
    wait_until(
        lambda: pool(kube, namespace, "fn").get("status", {}).get("idleReplicas") == 2, 60, "2 idle pods"
    )
    history = PodHistory(kube, namespace, "shoal.dev/pool=fn")
    metric = [{"type": "Pool", "pool": {"targetUtilization": 0.5}}]
    behavior = {"scaleDown": {"cooldownSeconds": 0, "stabilizationWindowSeconds": 0}}
    apply(scaler_manifest("fn", POOL, metric, minReplicas=1, maxReplicas=12, behavior=behavior), namespace)
    wait_until(
        lambda: scaler(kube, namespace, "fn").get("status", {}).get("currentMetrics"), 30, "a first read"
    )
    first = scaler(kube, namespace, "fn")["status"]["currentMetrics"][0]
    assert (first["name"], first["type"], first["value"], first["proposal"]) == (
        "claimed + waiting",
        "Pool",
        "0",
        0,
    )
    # Nothing busy: the scaler takes the pool to its minimum.
    wait_until(lambda: pool(kube, namespace, "fn")["spec"]["replicas"] == 1, 30, "down to minReplicas 1")

    for i in range(5):
        apply(claim_manifest(f"job-{i}", "fn"), namespace)
    # 5 busy at half a pod each: 10 pods, from the pool's own status (claimed + waiting).
    wait_until(lambda: pool(kube, namespace, "fn")["spec"]["replicas"] == 10, 60, "the scaler's 10")
    for name in (f"job-{i}" for i in range(5)):
        wait_until(partial(claim_phase_is, kube, namespace, name, "Bound"), 60, f"{name} bound")
    grew = [d for d in decisions(kube, namespace, "fn") if d["toReplicas"] > d["fromReplicas"]]
    assert grew and grew[-1]["toReplicas"] == 10 and grew[-1]["reason"] == "ScaleUp", grew
    wait_until(lambda: len(live_pods(kube, namespace, "shoal.dev/pool=fn")) == 10, 60, "10 pods")
    assert pool(kube, namespace, "fn")["status"]["waitingClaims"] == 0
    read = scaler(kube, namespace, "fn")["status"]["currentMetrics"][0]
    assert (read["value"], read["target"], read["proposal"]) == ("5", "0.5/replica", 10)

    for i in range(5):
        kube.delete(custom_path("containerclaims", namespace, f"job-{i}"))
    wait_until(
        lambda: pool(kube, namespace, "fn")["spec"]["replicas"] == 1, 60, "back to 1 once they are gone"
    )
    wait_until(lambda: history.alive() == 1, 60, "one pod left")
    history.stop.set()
    # 2 at the start, 1 after the first scale-down, 9 made for the burst: no pod made twice.
    assert len(history.created) == 2 + 9, sorted(history.created)
