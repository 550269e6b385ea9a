"""ContainerPool end to end: the real API server, scheduler and controller-manager, KWOK pods."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, pods_path
from tests.e2e.conftest import OperatorProcess, pool_manifest
from tests.e2e.util import (
    SEL,
    PodHistory,
    apply,
    condition,
    events_where,
    is_idle,
    kubectl,
    live_pods,
    pool,
    running,
    sample,
    wait_until,
)


def pool_settled(kube: Kube, ns: str, name: str, n: int, **status: int) -> bool:
    pods = live_pods(kube, ns, SEL.format(name))
    st = pool(kube, ns, name).get("status", {})
    return (
        len(pods) == n
        and len(running(pods)) == n
        and st.get("replicas") == n
        and st.get("readyReplicas") == n
        and all(st.get(k) == v for k, v in status.items())
    )


def test_pool_of_five_runs_and_kubectl_shows_the_columns(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("web", 5), namespace)
    wait_until(
        lambda: pool_settled(kube, namespace, "web", 5, idleReplicas=5, claimedReplicas=0), 60, "5 ready pods"
    )
    out = kubectl("get", "cpool", "-n", namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "IDLE", "CLAIMED", "AGE"]
    assert out[1].split()[:6] == ["web", "5", "5", "5", "5", "0"]
    obj = pool(kube, namespace, "web")
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(obj, "Scaling")["reason"] == "Stable"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    for p in live_pods(kube, namespace, SEL.format("web")):
        assert is_idle(p)
        assert p["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    events_where(
        kube,
        namespace,
        lambda e: e["reason"] == "ScaledUp" and e["involvedObject"]["name"] == "web",
        "ScaledUp",
    )


def test_kubectl_scale_and_an_hpa_style_client_use_the_scale_subresource(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("api", 2), namespace)
    wait_until(lambda: pool_settled(kube, namespace, "api", 2), 60, "2 pods")
    kubectl("scale", "cpool/api", "-n", namespace, "--replicas=8")
    wait_until(lambda: pool_settled(kube, namespace, "api", 8), 60, "8 pods after kubectl scale")

    # What HPA and KEDA do: read /scale (replicas + selector), write spec.replicas through it.
    scale_path = custom_path("containerpools", namespace, "api", "scale")
    scale = kube.get(scale_path)
    assert scale["kind"] == "Scale" and scale["status"]["replicas"] == 8
    assert scale["status"]["selector"] == "shoal.dev/pool=api"
    assert len(live_pods(kube, namespace, scale["status"]["selector"])) == 8
    scale["spec"]["replicas"] = 3
    kube.request("PUT", scale_path, scale)
    wait_until(lambda: pool_settled(kube, namespace, "api", 3), 60, "3 pods after a /scale write")


def test_warm_pool_keeps_idle_pods_and_scale_down_spares_busy_ones(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("runners", 3, warm={"minIdle": 2}), namespace)
    wait_until(lambda: pool_settled(kube, namespace, "runners", 3), 60, "3 pods")
    busy = sorted(p["metadata"]["name"] for p in live_pods(kube, namespace, SEL.format("runners")))
    for name in busy:  # CI runners mark themselves busy when they pick up a job
        kube.merge_patch(
            pods_path(namespace, name), {"metadata": {"annotations": {"shoal.dev/busy": "true"}}}
        )
    wait_until(
        lambda: pool_settled(kube, namespace, "runners", 5, idleReplicas=2, claimedReplicas=3),
        60,
        "pool grown to 3 busy + 2 idle",
    )
    # kubectl shows what the pool decided (3 busy + minIdle 2), not spec.replicas (3).
    row = kubectl("get", "cpool", "runners", "-n", namespace, "--no-headers").stdout.split()
    assert row[1:3] == ["5", "5"], row

    kube.merge_patch(
        custom_path("containerpools", namespace, "runners"), {"spec": {"replicas": 1, "warm": {"minIdle": 0}}}
    )
    wait_until(
        lambda: pool_settled(kube, namespace, "runners", 3, idleReplicas=0, claimedReplicas=3),
        60,
        "scaled down to the 3 busy pods",
    )
    survivors = sorted(p["metadata"]["name"] for p in live_pods(kube, namespace, SEL.format("runners")))
    assert survivors == busy
    labels = {
        p["metadata"]["labels"]["shoal.dev/state"] for p in live_pods(kube, namespace, SEL.format("runners"))
    }
    assert labels == {"Claimed"}


def test_old_pods_are_recycled_and_deleted_pods_replaced(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("fresh", 2, recycle={"maxAgeSeconds": 6}), namespace)
    wait_until(lambda: pool_settled(kube, namespace, "fresh", 2), 60, "2 pods")
    first = {p["metadata"]["uid"] for p in live_pods(kube, namespace, SEL.format("fresh"))}
    wait_until(
        lambda: (
            pool_settled(kube, namespace, "fresh", 2)
            and not first & {p["metadata"]["uid"] for p in live_pods(kube, namespace, SEL.format("fresh"))}
        ),
        60,
        "both pods replaced after maxAgeSeconds",
    )
    events_where(
        kube, namespace, lambda e: e["reason"] == "Recycled" and "MaxAge" in e["message"], "Recycled"
    )

    apply(pool_manifest("steady", 3), namespace)
    wait_until(lambda: pool_settled(kube, namespace, "steady", 3), 60, "3 pods")
    victim = live_pods(kube, namespace, SEL.format("steady"))[0]["metadata"]
    kube.delete(pods_path(namespace, victim["name"]))
    wait_until(
        lambda: (
            pool_settled(kube, namespace, "steady", 3)
            and victim["uid"]
            not in {p["metadata"]["uid"] for p in live_pods(kube, namespace, SEL.format("steady"))}
        ),
        60,
        "deleted pod replaced",
    )


def test_sigkill_during_a_scale_from_0_to_30_converges_to_exactly_30(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("burst", 0), namespace)
    wait_until(
        lambda: pool(kube, namespace, "burst").get("status", {}).get("observedGeneration"), 30, "pool seen"
    )
    history = PodHistory(kube, namespace, SEL.format("burst"))
    kubectl("scale", "cpool/burst", "-n", namespace, "--replicas=30")
    # Kill as soon as the scale-up is under way, mid-creation.
    seen = wait_until(
        lambda: len(kube.list_items(pods_path(namespace), SEL.format("burst"))),
        30,
        "first pods created",
        interval=0.01,
    )
    running_operator.kill()
    at_kill = len(kube.list_items(pods_path(namespace), SEL.format("burst")))
    running_operator.start()
    wait_until(lambda: pool_settled(kube, namespace, "burst", 30), 90, "30 ready pods after restart")
    pods = kube.list_items(pods_path(namespace), SEL.format("burst"))
    uid = pool(kube, namespace, "burst")["metadata"]["uid"]
    assert len(pods) == 30, f"duplicates: {len(pods)} pods"
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == uid for p in pods), "orphans"
    # Counted as they happened, not only at the end (the operator would remove a duplicate itself):
    # exactly 30 pods were ever created, none deleted, never more than 30 alive.
    history.stop.set()
    assert (len(history.created), len(history.gone), history.most_alive) == (30, 0, 30), (
        len(history.created),
        len(history.gone),
        history.most_alive,
    )
    print(f"pods when first seen: {seen}, at SIGKILL: {at_kill}, after convergence: {len(pods)}")


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        (
            {"replicas": 3, "minReplicas": 5, "maxReplicas": 2},
            ["spec.minReplicas", "less than or equal to maxReplicas"],
        ),
        ({"replicas": -1}, ["spec.replicas", "greater than or equal to 0"]),
        ({"replicas": 1, "resources": {"cpu": "2x"}}, ["spec.resources.cpu", "should match"]),
        ({"replicas": 1, "resources": {"memory": "-1Gi"}}, ["spec.resources.memory"]),
        ({"replicas": 1, "selection": "Random"}, ["spec.selection", "Unsupported value"]),
        (
            {"replicas": 1, "maxReplicas": 2, "warm": {"minIdle": 5}},
            ["spec.warm.minIdle", "must not exceed maxReplicas"],
        ),
        ({"replicas": 1, "bogus": True}, ['unknown field "spec.bogus"']),
    ],
)
def test_invalid_pools_are_rejected_by_the_api_server_naming_the_field(
    kube: Kube, namespace: str, spec: dict[str, object], fragments: list[str]
) -> None:
    manifest = pool_manifest("bad", 1)
    manifest["spec"].update(spec)
    result = kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(manifest), check=False)
    assert result.returncode != 0
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert kube.list_items(custom_path("containerpools", namespace)) == []


@pytest.mark.parametrize("namespace", [{"pod-security.kubernetes.io/enforce": "restricted"}], indirect=True)
def test_pool_pods_pass_pod_security_restricted(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("secure", 2), namespace)
    wait_until(lambda: pool_settled(kube, namespace, "secure", 2), 60, "2 pods admitted under restricted")
    assert condition(pool(kube, namespace, "secure"), "Degraded")["status"] == "False"


def test_operator_metrics_report_reconciles_and_pool_sizes(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("observed", 2), namespace)
    wait_until(lambda: pool_settled(kube, namespace, "observed", 2), 60, "2 pods")
    gauge = f'shoal_pool_pods{{namespace="{namespace}",pool="observed",state="Idle"}} 2.0'

    def scrape() -> str:
        text = running_operator.metrics()
        return text if gauge in text else ""

    text = wait_until(scrape, 30, "pool gauge on /metrics")
    assert 'shoal_reconcile_duration_seconds_count{kind="ContainerPool"}' in text
    assert "shoal_leader 1.0" in text


def test_failed_pods_are_replaced_with_a_warning_event(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("brittle", 2), namespace)
    wait_until(lambda: pool_settled(kube, namespace, "brittle", 2), 60, "2 pods")
    victim = live_pods(kube, namespace, SEL.format("brittle"))[0]["metadata"]
    kube.merge_patch(pods_path(namespace, victim["name"]) + "/status", {"status": {"phase": "Failed"}})
    wait_until(
        lambda: (
            pool_settled(kube, namespace, "brittle", 2)
            and victim["uid"]
            not in {p["metadata"]["uid"] for p in live_pods(kube, namespace, SEL.format("brittle"))}
        ),
        60,
        "failed pod replaced",
    )
    events_where(
        kube,
        namespace,
        lambda e: e["reason"] == "PodFailed" and e["type"] == "Warning" and victim["name"] in e["message"],
        "a PodFailed warning naming the pod",
    )


def test_two_replicas_one_leader_and_hand_over_on_kill(
    kube: Kube, namespace: str, running_operator: OperatorProcess, tmp_path: Path
) -> None:
    standby = OperatorProcess(running_operator.kubeconfig, tmp_path)
    standby.start()
    try:
        assert "shoal_leader 0.0" in standby.metrics()
        apply(pool_manifest("led", 2), namespace)
        wait_until(lambda: pool_settled(kube, namespace, "led", 2), 60, "pool served by the leader")
        assert "shoal_leader 0.0" in standby.metrics()
        assert 'pool="led"' not in standby.metrics()  # the standby did not reconcile it
        running_operator.kill()
        wait_until(lambda: "shoal_leader 1.0" in standby.metrics(), 30, "standby takes the lease")
        apply(pool_manifest("after", 3), namespace)
        wait_until(lambda: pool_settled(kube, namespace, "after", 3), 60, "pool served by the new leader")
    finally:
        standby.stop()


def test_progress_reports_on_pool_pods_do_not_re_list_the_pool(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("quiet", 2), namespace)
    wait_until(lambda: pool_settled(kube, namespace, "quiet", 2, idleReplicas=2), 60, "2 idle pods")
    # The reconcile count is the operator's, over every pool: wait until earlier tests' namespaces
    # (and their pools' pod deletions) are gone.
    wait_until(
        lambda: (
            not [
                n
                for n in kube.list_items("/api/v1/namespaces")
                if n["metadata"]["name"].startswith("e2e-")
                and n.get("status", {}).get("phase") == "Terminating"
            ]
        ),
        120,
        "earlier tests' namespaces deleted",
    )
    first, second = sorted(p["metadata"]["name"] for p in live_pods(kube, namespace, SEL.format("quiet")))
    reconciles = 'shoal_reconcile_duration_seconds_count{kind="ContainerPool"}'
    events = 'shoal_pod_events_total{watch="pool"}'
    before = running_operator.metrics()
    for step in range(10):  # what an agent in a pool pod sends while it works
        report = json.dumps({"timesteps": 1000 * step})
        kube.merge_patch(
            pods_path(namespace, first), {"metadata": {"annotations": {"shoal.dev/progress": report}}}
        )
    # Then a change the pool must act on; once it shows, the reports' events were handled before it.
    kube.merge_patch(pods_path(namespace, second), {"metadata": {"annotations": {"shoal.dev/busy": "true"}}})
    wait_until(
        lambda: pool(kube, namespace, "quiet").get("status", {}).get("claimedReplicas") == 1, 30, "busy seen"
    )
    after = running_operator.metrics()
    assert sample(after, events) - sample(before, events) >= 11  # every event reached the operator
    # The busy pod: one reconcile that also grows the pool, plus the events of what it created.
    # Re-listing on each report would add ten more.
    assert sample(after, reconciles) - sample(before, reconciles) <= 5


def limit_is(kube: Kube, ns: str, name: str, reason: str) -> dict[str, Any]:
    c = condition(pool(kube, ns, name), "ScalingLimited")
    return c if c.get("reason") == reason else {}


@pytest.mark.parametrize("server_side", [False, True])
def test_a_pool_without_replicas_runs_within_its_bounds_and_says_when_a_bound_decides(
    kube: Kube, namespace: str, running_operator: OperatorProcess, server_side: bool
) -> None:
    manifest = pool_manifest("bounded", 1, minReplicas=2, maxReplicas=4)
    del manifest["spec"]["replicas"]  # as a GitOps repository holds it when a scaler owns the size
    flags = ["--server-side"] if server_side else []
    kubectl("apply", *flags, "-n", namespace, "-f", "-", stdin=json.dumps(manifest))  # accepted
    wait_until(lambda: pool_settled(kube, namespace, "bounded", 2), 60, "2 pods: minReplicas")
    limited = wait_until(
        lambda: condition(pool(kube, namespace, "bounded"), "ScalingLimited"), 30, "condition"
    )
    assert (limited["status"], limited["reason"]) == ("True", "BelowMinReplicas")
    assert limited["message"] == "spec.replicas 1 is below minReplicas 2: running 2"

    kubectl("scale", "cpool/bounded", "-n", namespace, "--replicas=9")
    wait_until(lambda: pool_settled(kube, namespace, "bounded", 4), 60, "4 pods: maxReplicas")
    over = wait_until(
        lambda: limit_is(kube, namespace, "bounded", "AboveMaxReplicas"), 30, "AboveMaxReplicas"
    )
    assert over["message"] == "spec.replicas 9 is above maxReplicas 4: running 4"
    assert len(live_pods(kube, namespace, SEL.format("bounded"))) == 4  # never more than the bound

    kubectl("scale", "cpool/bounded", "-n", namespace, "--replicas=3")
    within = wait_until(lambda: limit_is(kube, namespace, "bounded", "WithinBounds"), 30, "within bounds")
    assert within["status"] == "False"
    kubectl("apply", *flags, "-n", namespace, "-f", "-", stdin=json.dumps(manifest))  # Git re-applied
    assert pool(kube, namespace, "bounded")["spec"]["replicas"] == 3
    wait_until(lambda: pool_settled(kube, namespace, "bounded", 3), 60, "3 pods kept")
