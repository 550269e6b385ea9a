"""ContainerClaim on the test bed: a job dispatcher's way to take a warm pod and give it back, through
the same claim machinery as TrainingSessions. Counted with a pod watch: pods created and deleted,
which claim holds which pod, and how many claims wait."""

from __future__ import annotations

from typing import Any

import yaml

from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, pods_path
from tests.e2e.conftest import OperatorProcess, pool_manifest
from tests.e2e.util import (
    ROOT,
    PodHistory,
    apply,
    claim_manifest,
    claim_phase_is,
    claim_status,
    condition,
    events_where,
    idle,
    is_idle,
    kubectl,
    live_pods,
    wait_until,
)

SAMPLE = ROOT / "manifests" / "samples" / "build-claim.yaml"


def phases(kube: Kube, namespace: str) -> dict[str, str]:
    items = kube.list_items(custom_path("containerclaims", namespace))
    return {c["metadata"]["name"]: (c.get("status") or {}).get("phase", "") for c in items}


def test_the_sample_claim_binds_a_warm_pod_with_its_address_and_deleting_it_gives_the_pod_back(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    history = PodHistory(kube, namespace, "shoal.dev/pool=builders")
    pool_doc, claim_doc = list(yaml.safe_load_all(SAMPLE.read_text()))
    apply(pool_doc, namespace)
    wait_until(lambda: len(idle(kube, namespace, "builders")) == 2, 60, "2 idle builders")
    apply(claim_doc, namespace)
    st = wait_until(lambda: claim_phase_is(kube, namespace, "build-web-1", "Bound"), 30, "the claim Bound")
    pod = kube.get(pods_path(namespace, st["podName"]))
    assert st["podIP"] and st["podIP"] == pod["status"]["podIP"], (st, pod["status"])
    assert st["nodeName"] == pod["spec"]["nodeName"] and st["expiryTime"] and st["bindMilliseconds"] >= 0
    meta = pod["metadata"]
    assert (
        meta["labels"]["shoal.dev/claim"] == "build-web-1" and meta["labels"]["shoal.dev/state"] == "Claimed"
    )
    assert meta["annotations"]["shoal.dev/claimed-by"] == "containerclaim/build-web-1"
    assert meta["annotations"]["shoal.dev/signature"] == '{"repo":"web","toolchain":"node22"}'
    assert condition(kube.get(custom_path("containerclaims", namespace, "build-web-1")), "Bound")[
        "reason"
    ] == ("PodClaimed")
    events_where(
        kube,
        namespace,
        lambda e: e["reason"] == "Bound" and e["involvedObject"]["name"] == "build-web-1",
        "Bound",
    )
    listed = kubectl("get", "cclaim", "-n", namespace, "-o", "wide").stdout
    header, row = listed.splitlines()[:2]
    assert header.split() == ["NAME", "POOL", "PHASE", "POD", "IP", "REASON", "AGE"], listed
    assert row.split()[:6] == ["build-web-1", "builders", "Bound", st["podName"], st["podIP"], "PodClaimed"]
    wait_until(
        lambda: (
            kube.get(custom_path("containerpools", namespace, "builders"))
            .get("status", {})
            .get("claimedReplicas")
            == 1
        ),
        30,
        "the pool counting the claimed pod",
    )

    kube.delete(custom_path("containerclaims", namespace, "build-web-1"))

    def released() -> dict[str, Any]:
        p = kube.get(pods_path(namespace, st["podName"]))
        ann = p["metadata"].get("annotations") or {}
        free = "shoal.dev/claimed-by" not in ann and is_idle(p)
        return p if free else {}

    back = wait_until(released, 30, "the pod given back to the pool")
    assert "shoal.dev/claim" not in back["metadata"]["labels"]
    ann = back["metadata"]["annotations"]
    assert (
        ann["shoal.dev/last-signature"] == '{"repo":"web","toolchain":"node22"}'
        and "shoal.dev/signature" not in ann
    )
    assert len(history.created) == 2 and history.gone == set(), (
        history.created,
        history.gone,
    )  # reused, not replaced


def test_waiting_claims_grow_the_pool_up_to_its_maximum_and_a_released_pod_wakes_the_next(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    history = PodHistory(kube, namespace, "shoal.dev/pool=burst")
    apply(pool_manifest("burst", 1, maxReplicas=3), namespace)
    wait_until(lambda: len(idle(kube, namespace, "burst")) == 1, 60, "1 idle pod")
    for i in range(5):
        apply(claim_manifest(f"job-{i}", "burst"), namespace)

    def settled() -> dict[str, str]:
        got = phases(kube, namespace)
        return got if sorted(got.values()) == ["Bound"] * 3 + ["Pending"] * 2 else {}

    got = wait_until(settled, 90, "3 claims bound on a pool grown to maxReplicas 3, 2 waiting")
    waiting = sorted(n for n, p in got.items() if p == "Pending")
    for name in waiting:
        st = claim_status(kube, namespace, name)
        bound = next(c for c in st["conditions"] if c["type"] == "Bound")
        assert (bound["status"], bound["reason"]) == ("False", "NoIdlePod") and st["waitingSince"], st

    def limited() -> dict[str, Any]:
        # The pool's status follows the claims' (its next pass counts the two waiting).
        c = condition(kube.get(custom_path("containerpools", namespace, "burst")), "ScalingLimited")
        return c if c.get("reason") == "AboveMaxReplicas" and "2 waiting" in c.get("message", "") else {}

    wait_until(limited, 30, "the pool saying it is held at maxReplicas with 2 claims waiting")
    assert len(history.created) == 3 and history.most_alive == 3, history.created

    holders = {
        p["metadata"]["name"]: p["metadata"]["labels"].get("shoal.dev/claim")
        for p in live_pods(kube, namespace, "shoal.dev/pool=burst")
    }
    bound = sorted(n for n, p in got.items() if p == "Bound")
    assert sorted(holders.values()) == bound  # one pod per bound claim, no pod held twice

    kube.delete(custom_path("containerclaims", namespace, bound[0]))
    # Woken by the released pod's watch event, not by the 30 s fallback recheck.
    wait_until(
        lambda: sorted(phases(kube, namespace).values()) == ["Bound"] * 3 + ["Pending"],
        20,
        "a waiting claim bound to the released pod",
    )
    assert len(history.created) == 3 and history.gone == set()  # the same three pods throughout


def test_a_hold_expires_a_lost_pod_is_reported_and_a_claim_the_pool_cannot_fit_does_not_grow_it(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    history = PodHistory(kube, namespace, "shoal.dev/pool=short")
    apply(pool_manifest("short", 2, maxReplicas=4), namespace)
    wait_until(lambda: len(idle(kube, namespace, "short")) == 2, 60, "2 idle pods")
    # gpuMemory with no GPU-memory resource configured: bound all the same, and flagged as not enforced.
    apply(claim_manifest("brief", "short", holdSeconds=2, resources={"gpuMemory": "4Gi"}), namespace)
    apply(claim_manifest("doomed", "short"), namespace)
    brief = wait_until(lambda: claim_phase_is(kube, namespace, "brief", "Expired"), 30, "the hold expiring")
    assert (
        condition(kube.get(custom_path("containerclaims", namespace, "brief")), "Bound")["reason"]
        == "HoldExpired"
    )
    mem = condition(kube.get(custom_path("containerclaims", namespace, "brief")), "GpuMemoryEnforced")
    assert (mem["status"], mem["reason"]) == ("False", "NoGpuMemoryResource"), mem
    warned = events_where(
        kube,
        namespace,
        lambda e: e["involvedObject"].get("name") == "brief" and e["type"] == "Warning",
        "the gpuMemory Warning",
    )
    assert [e["reason"] for e in warned] == ["NoGpuMemoryResource"]  # once, over Pending, Bound, Expired
    freed = kube.get(pods_path(namespace, brief["podName"]))
    assert "shoal.dev/claimed-by" not in (freed["metadata"].get("annotations") or {})

    doomed = wait_until(
        lambda: claim_phase_is(kube, namespace, "doomed", "Bound"), 30, "the second claim bound"
    )
    kube.delete(pods_path(namespace, doomed["podName"]))
    lost = wait_until(lambda: claim_phase_is(kube, namespace, "doomed", "Lost"), 30, "the claim Lost")
    bound = condition(kube.get(custom_path("containerclaims", namespace, "doomed")), "Bound")
    assert bound["reason"] == "PodLost" and doomed["podName"] in bound["message"], bound
    assert "podIP" not in lost

    wait_until(lambda: len(idle(kube, namespace, "short")) == 2, 60, "the deleted pod replaced")
    created = len(history.created)
    assert created == 3  # the two first pods and the deleted one's replacement

    apply(claim_manifest("wants-gpu", "short", resources={"gpu": 1}), namespace)
    st = wait_until(
        lambda: claim_phase_is(kube, namespace, "wants-gpu", "Pending"), 30, "the GPU claim judged"
    )
    reason = next(c for c in st["conditions"] if c["type"] == "Bound")
    assert reason["reason"] == "NoFittingPod" and "none with the nvidia.com/gpu 1" in reason["message"], (
        reason
    )
    # Three CPU claims on two idle pods: the third waits and grows the pool by one; the GPU claim,
    # which no pod of this pool could serve, is not counted (else a fourth pod would be made).
    for i in range(3):
        apply(claim_manifest(f"cpu-{i}", "short"), namespace)
    wait_until(
        lambda: all(claim_phase_is(kube, namespace, f"cpu-{i}", "Bound") for i in range(3)),
        60,
        "3 CPU claims bound",
    )

    def counted() -> dict[str, Any]:
        status = kube.get(custom_path("containerpools", namespace, "short")).get("status") or {}
        return status if status.get("claimedReplicas") == 3 else {}

    status = wait_until(counted, 30, "the pool counting 3 claimed pods")
    assert status["desiredReplicas"] == 3 and len(history.created) == created + 1, (status, history.created)
    assert claim_phase_is(kube, namespace, "wants-gpu", "Pending")

    try:
        kube.merge_patch(
            custom_path("containerclaims", namespace, "wants-gpu"), {"spec": {"poolRef": {"name": "x"}}}
        )
        raise AssertionError("poolRef changed")
    except ApiError as exc:
        assert exc.status == 422 and "poolRef cannot change" in exc.message, exc.message
