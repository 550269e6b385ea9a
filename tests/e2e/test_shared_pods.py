"""Pods shared by several ContainerClaims end to end (claimsPerPod above 1): claims spread over the
pods with LeastConnections, join a pod with a free slot, the pool counts slots and grows a pod when
every slot is taken, and shrinks back without ever deleting a pod a claim holds (the pure rules:
tests/unit/test_shared_pods.py)."""

from __future__ import annotations

from collections import Counter
from functools import partial

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path
from tests.e2e.conftest import OperatorProcess, pool_manifest
from tests.e2e.util import (
    PodHistory,
    apply,
    claim_manifest,
    claim_phase_is,
    claim_status,
    kubectl,
    live_pods,
    pool,
    wait_until,
)

SEL = "shoal.dev/pool=fn"


def bound(kube: Kube, namespace: str, names: list[str]) -> dict[str, str]:
    """claim -> the pod it is bound to, once every one of `names` is Bound."""
    for name in names:
        wait_until(partial(claim_phase_is, kube, namespace, name, "Bound"), 60, f"{name} bound")
    return {name: claim_status(kube, namespace, name)["podName"] for name in names}


def test_claims_share_pods_by_slots_and_the_pool_grows_and_shrinks_by_them(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("fn", 2, claimsPerPod=2, selection="LeastConnections"), namespace)
    wait_until(
        lambda: pool(kube, namespace, "fn").get("status", {}).get("idleReplicas") == 2, 60, "2 idle pods"
    )
    history = PodHistory(kube, namespace, SEL)
    first = [f"q-{i}" for i in range(3)]
    for name in first:
        apply(claim_manifest(name, "fn"), namespace)
    pods = bound(kube, namespace, first)
    # LeastConnections: the first two went to different pods, the third joined one of them.
    assert sorted(Counter(pods.values()).values()) == [1, 2], pods
    st = wait_until(
        lambda: (s := pool(kube, namespace, "fn")["status"]).get("claimedSlots") == 3 and s,
        30,
        "3 slots held",
    )
    assert (st["claimedReplicas"], st["idleReplicas"], st["utilization"], st["replicas"]) == (2, 0, 0.75, 2)
    shared = next(p for p, n in Counter(pods.values()).items() if n == 2)
    holders = kube.get(f"/api/v1/namespaces/{namespace}/pods/{shared}")["metadata"]
    assert sorted(holders["annotations"]["shoal.dev/claimed-by"].split(",")) == sorted(
        f"containerclaim/{c}" for c, p in pods.items() if p == shared
    )
    assert "shoal.dev/claim" not in holders["labels"]
    listed = kubectl("get", "pods", "-n", namespace, "-l", f"{SEL},shoal.dev/state=Claimed", "-o", "name")
    assert len(listed.stdout.split()) == 2

    # The fourth takes the last free slot; the fifth finds none, and the pool grows one pod for it.
    more = ["q-3", "q-4"]
    for name in more:
        apply(claim_manifest(name, "fn"), namespace)
    pods |= bound(kube, namespace, more)
    assert len(set(pods.values())) == 3 and max(Counter(pods.values()).values()) == 2
    assert len(history.created - {p["metadata"]["uid"] for p in live_pods(kube, namespace, SEL)}) == 0
    wait_until(lambda: pool(kube, namespace, "fn")["status"].get("claimedSlots") == 5, 30, "5 slots held")

    # Claims leave one by one: a pod another claim still holds is never deleted; the pool returns to 2.
    for name in [*first, *more]:
        kube.delete(custom_path("containerclaims", namespace, name))
    wait_until(
        lambda: history.alive() == 2 and pool(kube, namespace, "fn")["status"].get("claimedSlots") == 0,
        60,
        "2 pods, none held",
    )
    history.stop.set()
    assert len(history.created) == 3, "one pod made for the fifth claim, none other"
    assert all(not a.get("shoal.dev/claimed-by") for a in history.at_deletion.values()), history.at_deletion
