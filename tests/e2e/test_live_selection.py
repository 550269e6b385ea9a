"""Selection strategies on the data production supplies, on the test bed: LeastLoaded and ResourceAware
on live pod usage from the real metrics-server (KWOK's simulated CPU use), Affinity on the job
history the pods gather from real claims and releases (ContainerClaims, each job saying how it ended
on its own pod, as a runner's hook would), WeightedRoundRobin on the weights workloads declare on their
own pods."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, pods_path
from tests.e2e.conftest import OperatorProcess, pool_manifest
from tests.e2e.util import apply, claim_manifest, claim_phase_is, idle, pod_cpu, sample, wait_until


def bound_pod(kube: Kube, ns: str, name: str) -> str:
    return str(wait_until(lambda: claim_phase_is(kube, ns, name, "Bound"), 30, f"{name} bound")["podName"])


def test_least_loaded_and_resource_aware_rank_idle_pods_by_live_usage(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(
        pool_manifest("live", 3, selection="LeastLoaded", resources={"cpu": "1", "memory": "64Mi"}), namespace
    )
    wait_until(lambda: len(idle(kube, namespace, "live")) == 3, 60, "3 idle pods")
    names = sorted(p["metadata"]["name"] for p in idle(kube, namespace, "live"))
    # By name the first pod would win every tie; give it the most load.
    use = dict(zip(names, ("900m", "100m", "500m"), strict=True))
    for name, cpu in use.items():
        kube.merge_patch(
            pods_path(namespace, name), {"metadata": {"annotations": {"kwok.x-k8s.io/usage-cpu": cpu}}}
        )
    want = {n: Decimal(v[:-1]) / 1000 for n, v in use.items()}

    def reported() -> bool:
        got = pod_cpu(kube, namespace, "shoal.dev/pool=live")
        return all(abs(got.get(n, Decimal(-1)) - v) < Decimal("0.05") for n, v in want.items())

    wait_until(reported, 90, "metrics-server reporting each pod's simulated CPU")
    apply(claim_manifest("light", "live"), namespace)
    assert bound_pod(kube, namespace, "light") == names[1]  # 100m of its 1 CPU in use

    pool = kube.get(custom_path("containerpools", namespace, "live"))
    kube.merge_patch(
        custom_path("containerpools", namespace, "live"), {"spec": {"selection": "ResourceAware"}}
    )
    wait_until(
        lambda: (
            kube.get(custom_path("containerpools", namespace, "live"))["metadata"]["generation"]
            > pool["metadata"]["generation"]
        ),
        10,
        "the selection change",
    )
    # Free headroom: names[0] 100m, names[2] 500m. 600m fits neither (their requests, 1 CPU, would).
    apply(claim_manifest("roomy", "live", resources={"cpu": "600m"}), namespace)

    def waiting() -> dict[str, Any]:
        st = kube.get(custom_path("containerclaims", namespace, "roomy")).get("status") or {}
        cond: dict[str, Any] = next((c for c in st.get("conditions") or [] if c["type"] == "Bound"), {})
        return cond if cond.get("reason") == "NoFittingPod" else {}

    cond = wait_until(waiting, 30, "the 600m claim waiting as NoFittingPod")
    assert "none with cpu 600m free (requests minus live usage)" in cond["message"], cond
    apply(claim_manifest("snug", "live", resources={"cpu": "400m"}), namespace)
    assert bound_pod(kube, namespace, "snug") == names[2]  # 500m free; names[0] has 100m


def test_affinity_ranks_by_similarity_of_past_jobs_then_their_success(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("aff", 2, selection="Affinity"), namespace)
    wait_until(lambda: len(idle(kube, namespace, "aff")) == 2, 60, "2 idle pods")

    def run_job(claim: str, signature: dict[str, str], outcome: str) -> str:
        apply(claim_manifest(claim, "aff", signature=signature), namespace)
        pod = bound_pod(kube, namespace, claim)
        # The job reports how it ended on its own pod (with ownPodAccess, from its completion hook).
        kube.merge_patch(
            pods_path(namespace, pod), {"metadata": {"annotations": {"shoal.dev/job-outcome": outcome}}}
        )
        kube.delete(custom_path("containerclaims", namespace, claim))

        def remembered() -> list[Any]:
            ann = kube.get(pods_path(namespace, pod))["metadata"].get("annotations") or {}
            jobs = json.loads(ann.get("shoal.dev/history", "[]"))
            return (
                jobs
                if "shoal.dev/claimed-by" not in ann
                and jobs
                and jobs[-1][0] == json.dumps(dict(sorted(signature.items())), separators=(",", ":"))
                else []
            )

        jobs = wait_until(remembered, 30, f"{claim}'s job in {pod}'s history")
        assert jobs[-1][1] is (outcome == "Succeeded") and jobs[-1][2] >= 0, jobs
        return pod

    x = run_job("web-linux", {"repo": "web", "os": "linux"}, "Failed")
    y = run_job(
        "api-mac", {"repo": "api", "os": "mac"}, "Succeeded"
    )  # nothing shared with x's: least recently used
    assert y != x
    # web/mac shares one pair with each pod's job (1/3 each): the pod whose job succeeded wins,
    # although x was released longer ago (least recently used would pick x).
    assert run_job("web-mac", {"repo": "web", "os": "mac"}, "Succeeded") == y
    # api/mac is exactly y's first job: similarity beats y being the most recently released.
    apply(claim_manifest("api-mac-2", "aff", signature={"repo": "api", "os": "mac"}), namespace)
    assert bound_pod(kube, namespace, "api-mac-2") == y


def test_weighted_round_robin_serves_pods_in_proportion_to_the_weights_they_declare(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("wrr", 3, selection="WeightedRoundRobin"), namespace)
    wait_until(lambda: len(idle(kube, namespace, "wrr")) == 3, 60, "3 idle pods")
    names = sorted(p["metadata"]["name"] for p in idle(kube, namespace, "wrr"))
    # Each workload says what it can take, as a hook would on its own pod; the last says nothing and
    # counts its CPU request (100m: 0.1) against the others' 2 and 1.
    for name, weight in zip(names[:2], ("2", "1"), strict=True):
        kube.merge_patch(
            pods_path(namespace, name), {"metadata": {"annotations": {"shoal.dev/weight": weight}}}
        )
    served = []
    for i in range(6):  # one at a time, each job done before the next comes
        apply(claim_manifest(f"job-{i}", "wrr"), namespace)
        served.append(bound_pod(kube, namespace, f"job-{i}"))
        kube.delete(custom_path("containerclaims", namespace, f"job-{i}"))
        wait_until(lambda: len(idle(kube, namespace, "wrr")) == 3, 30, "the pod given back")
    a, b, c = names
    assert served == [a, b, c, a, a, b], served  # 2 : 1 : 0.1, ties by name
    claims = {
        p["metadata"]["name"]: p["metadata"]["annotations"]["shoal.dev/claims"]
        for p in idle(kube, namespace, "wrr")
    }
    assert claims == {a: "3", b: "2", c: "1"}


def test_claimed_pods_are_labelled_by_live_load_and_counted_overloaded(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(
        pool_manifest("hot", 2, selection="LeastLoaded", resources={"cpu": "1", "memory": "64Mi"}), namespace
    )
    wait_until(lambda: len(idle(kube, namespace, "hot")) == 2, 60, "2 idle pods")
    for name in ("job-a", "job-b"):
        apply(claim_manifest(name, "hot"), namespace)
    held = {name: bound_pod(kube, namespace, name) for name in ("job-a", "job-b")}
    hot, cool = held["job-a"], held["job-b"]
    for name, cpu in ((hot, "950m"), (cool, "100m")):
        kube.merge_patch(
            pods_path(namespace, name), {"metadata": {"annotations": {"kwok.x-k8s.io/usage-cpu": cpu}}}
        )

    def labels() -> dict[str, str | None]:
        pods = kube.list_items(pods_path(namespace), "shoal.dev/pool=hot")
        return {p["metadata"]["name"]: p["metadata"]["labels"].get("shoal.dev/load-state") for p in pods}

    wait_until(
        lambda: labels() == {hot: "Overloaded", cool: "Healthy"}, 90, "the hot pod labelled Overloaded"
    )
    st = wait_until(
        lambda: (
            (s := kube.get(custom_path("containerpools", namespace, "hot"))["status"])
            and s.get("overloadedReplicas") == 1
            and s
        ),
        30,
        "one overloaded pod counted",
    )
    assert st["claimedReplicas"] == 2
    gauge = f'shoal_pool_overloaded_pods{{namespace="{namespace}",pool="hot"}}'
    assert sample(running_operator.metrics(), gauge) == 1  # what ShoalPoolOverloaded watches
    # The hot pod's claim goes: the pod is idle, with no load state left.
    kube.delete(custom_path("containerclaims", namespace, "job-a"))
    wait_until(lambda: labels() == {hot: None, cool: "Healthy"}, 30, "the label off the freed pod")
