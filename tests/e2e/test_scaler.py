"""WorkerScaler end to end: metrics-server and Prometheus as they really answer, targets scaled via /scale."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, pods_path
from testbed import cluster as testbed
from tests.e2e.conftest import Exporter, OperatorProcess, pool_manifest, scaler_manifest
from tests.e2e.util import (
    apply,
    condition,
    create_deployment,
    decisions,
    deployment,
    events_where,
    kubectl,
    live_pods,
    pod_cpu,
    scaler,
    wait_until,
)

POOL = {"apiVersion": "shoal.dev/v1alpha1", "kind": "ContainerPool"}
CPU_50 = [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 50}}]


def pool_replicas(kube: Kube, ns: str, name: str) -> int:
    return int(kube.get(custom_path("containerpools", ns, name))["spec"]["replicas"])


def deployment_at(kube: Kube, ns: str, name: str, n: int) -> bool:
    d = deployment(kube, ns, name)
    return bool(d["spec"]["replicas"] == n and d.get("status", {}).get("readyReplicas") == n)


def set_cpu(kube: Kube, ns: str, selector: str, usage: str) -> list[str]:
    names = []
    for p in live_pods(kube, ns, selector):
        kube.merge_patch(
            pods_path(ns, p["metadata"]["name"]),
            {"metadata": {"annotations": {"kwok.x-k8s.io/usage-cpu": usage}}},
        )
        names.append(p["metadata"]["name"])
    return names


def wait_decision(
    kube: Kube, ns: str, name: str, match: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30
) -> dict[str, Any]:
    """The scaler patches /scale before it writes status, so a resized target can be seen first."""

    def found() -> dict[str, Any]:
        return next((d for d in decisions(kube, ns, name) if match(d)), {})

    return wait_until(found, timeout, what)


def test_cpu_load_scales_a_pool_up_through_the_metrics_api_and_down_after_cooldown(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("cpu", 2, resources={"cpu": "1", "memory": "64Mi"}), namespace)
    wait_until(lambda: len(live_pods(kube, namespace, "shoal.dev/pool=cpu")) == 2, 60, "2 pool pods")
    set_cpu(kube, namespace, "shoal.dev/pool=cpu", "900m")
    apply(
        scaler_manifest(
            "cpu",
            {**POOL, "name": "cpu"},
            CPU_50,
            maxReplicas=6,
            behavior={"scaleDown": {"cooldownSeconds": 10, "stabilizationWindowSeconds": 0}},
        ),
        namespace,
    )
    wait_until(lambda: pool_replicas(kube, namespace, "cpu") == 4, 120, "pool scaled 2 -> 4 by 90 % CPU")
    up = wait_decision(
        kube, namespace, "cpu", lambda d: d["toReplicas"] == 4, "the 2 -> 4 decision in status"
    )
    assert up["reason"] == "ScaleUp" and up["fromReplicas"] == 2 and "cpu=90%" in up["message"]

    set_cpu(kube, namespace, "shoal.dev/pool=cpu", "50m")
    wait_until(lambda: pool_replicas(kube, namespace, "cpu") == 1, 120, "pool scaled down to minReplicas")
    down = wait_decision(
        kube, namespace, "cpu", lambda d: d["toReplicas"] == 1, "the scale-down decision in status"
    )
    gap = _ts(down["time"]) - _ts(up["time"])
    assert gap >= 10, f"scaled down {gap}s after the scale-up, inside the 10 s cooldown"
    events_where(
        kube,
        namespace,
        lambda e: (
            e["reason"] == "Scaled" and e["involvedObject"]["name"] == "cpu" and " -> 1:" in e["message"]
        ),
        "a Scaled event for the scale-down",
    )
    scaled = events_where(
        kube, namespace, lambda e: e["reason"] == "Scaled" and e["involvedObject"]["name"] == "cpu", "Scaled"
    )
    assert len(scaled) >= 2, scaled


def _ts(text: str) -> float:
    from shoal.times import parse_time

    t = parse_time(text)
    assert t is not None
    return t.timestamp()


def test_prometheus_query_scales_a_deployment_by_target_per_replica(
    kube: Kube, namespace: str, exporter: Exporter, running_operator: OperatorProcess
) -> None:
    exporter.set(45)
    create_deployment(kube, namespace, "workers", 1)
    metric = [{"type": "Prometheus", "prometheus": {"query": exporter.query, "targetPerReplica": 10}}]
    apply(
        scaler_manifest(
            "workers",
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "workers"},
            metric,
            behavior={"scaleDown": {"cooldownSeconds": 4, "stabilizationWindowSeconds": 0}},
        ),
        namespace,
    )
    wait_until(
        lambda: deployment_at(kube, namespace, "workers", 5), 90, "Deployment at ceil(45/10) = 5 ready"
    )
    st = scaler(kube, namespace, "workers")["status"]
    assert st["currentMetrics"][0]["value"] == "45" and st["currentMetrics"][0]["target"] == "10/replica"
    assert condition(scaler(kube, namespace, "workers"), "ScalingActive")["status"] == "True"
    exporter.set(15)
    wait_until(lambda: deployment_at(kube, namespace, "workers", 2), 90, "Deployment at ceil(15/10) = 2")
    out = kubectl("get", "wscale", "-n", namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "TARGET", "MIN", "MAX", "CURRENT", "DESIRED", "ACTIVE", "AGE"]


def test_prometheus_outage_holds_then_falls_back_then_resumes(
    kube: Kube, namespace: str, exporter: Exporter, running_operator: OperatorProcess
) -> None:
    exporter.set(30)
    create_deployment(kube, namespace, "batch", 1)
    metric = [{"type": "Prometheus", "prometheus": {"query": exporter.query, "targetPerReplica": 10}}]
    apply(
        scaler_manifest(
            "batch",
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "batch"},
            metric,
            fallback={"policy": "Replicas", "replicas": 6, "failureThreshold": 3},
            behavior={"scaleDown": {"cooldownSeconds": 3, "stabilizationWindowSeconds": 0}},
        ),
        namespace,
    )
    wait_until(lambda: deployment_at(kube, namespace, "batch", 3), 90, "Deployment at 3")
    testbed.stop("prometheus")
    try:

        def inactive() -> dict[str, Any]:
            c = condition(scaler(kube, namespace, "batch"), "ScalingActive")
            return c if c.get("status") == "False" else {}

        held = wait_until(inactive, 30, "ScalingActive=False while Prometheus is down")
        assert held["reason"] == "MetricsUnavailable" and "Prometheus unreachable" in held["message"]
        wait_until(lambda: deployment(kube, namespace, "batch")["spec"]["replicas"] == 6, 30, "fallback to 6")
        wait_decision(
            kube,
            namespace,
            "batch",
            lambda d: d["reason"] == "FallbackReplicas",
            "FallbackReplicas in status",
        )
        history = decisions(kube, namespace, "batch")
        reasons = [(d["reason"], d["fromReplicas"], d["toReplicas"]) for d in history]
        assert ("MetricsUnavailable", 3, 3) in reasons, reasons  # held before the threshold
        assert ("FallbackReplicas", 3, 6) in reasons, reasons
        assert reasons.index(("MetricsUnavailable", 3, 3)) < reasons.index(("FallbackReplicas", 3, 6))
    finally:
        testbed.start("prometheus")
    wait_until(
        lambda: condition(scaler(kube, namespace, "batch"), "ScalingActive").get("status") == "True",
        60,
        "ScalingActive=True once Prometheus is back",
    )
    wait_until(lambda: deployment_at(kube, namespace, "batch", 3), 60, "scaling resumed: back to 30/10 = 3")


def test_emergency_spike_scales_in_one_step_within_one_poll_interval(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("spike", 2, resources={"cpu": "1", "memory": "64Mi"}), namespace)
    wait_until(lambda: len(live_pods(kube, namespace, "shoal.dev/pool=spike")) == 2, 60, "2 pods")
    # Ordinary scale-ups are held back (5-minute window, 1 pod per minute): only the emergency path can jump.
    behavior = {
        "scaleUp": {
            "stabilizationWindowSeconds": 300,
            "cooldownSeconds": 300,
            "maxPods": 1,
            "periodSeconds": 60,
        }
    }
    apply(
        scaler_manifest("spike", {**POOL, "name": "spike"}, CPU_50, minReplicas=2, behavior=behavior),
        namespace,
    )
    wait_until(
        lambda: condition(scaler(kube, namespace, "spike"), "ScalingActive").get("status") == "True",
        90,
        "scaler reading pod metrics",
    )
    originals = set(set_cpu(kube, namespace, "shoal.dev/pool=spike", "990m"))
    reaction = reaction_to_served_usage(
        kube,
        namespace,
        "shoal.dev/pool=spike",
        originals,
        Decimal("0.95"),
        lambda: pool_replicas(kube, namespace, "spike") != 2,
    )
    assert pool_replicas(kube, namespace, "spike") == 4  # ceil(2 * 0.99 / 0.5), in one step
    last = wait_decision(
        kube, namespace, "spike", lambda d: d["toReplicas"] != 2, "the spike decision in status"
    )
    assert (last["reason"], last["fromReplicas"], last["toReplicas"]) == ("EmergencyScaleUp", 2, 4)
    assert reaction <= 2 + 1.0, f"took {reaction:.2f}s after the metrics API showed the spike (poll is 2 s)"
    print(f"emergency reaction after the metrics API showed >95%: {reaction:.2f}s")


def reaction_to_served_usage(
    kube: Kube, ns: str, selector: str, pods: set[str], level: Decimal, moved: Callable[[], bool]
) -> float:
    """Seconds from the metrics API first serving every one of `pods` at `level` CPU or more to
    `moved()`. One loop watches both, every 50 ms."""
    seen = scaled = None
    deadline = time.monotonic() + 120
    while scaled is None and time.monotonic() < deadline:
        now = time.monotonic()
        usage = pod_cpu(kube, ns, selector)
        if seen is None and all(usage.get(n, Decimal(0)) >= level for n in pods):
            seen = now
        if moved():
            scaled = now
        time.sleep(0.05)
    assert scaled is not None, "no scale within 120 s of the step"
    # The step must have been served before the target moved: a scale with no step seen would be a
    # reaction to something else, and would read as a reaction time of 0.
    assert seen is not None, "the target was resized before the metrics API served the step"
    assert scaled >= seen
    return scaled - seen


def test_a_resource_metric_is_read_when_its_next_sample_is_served_not_a_poll_later(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    """A minute's poll interval, a CPU step just after a read: the scaler reads again when
    metrics-server serves its next scrape (every 10 s here), so the step moves the target within
    seconds of being served, not at the next poll up to a minute later."""
    create_deployment(kube, namespace, "web", 1)
    wait_until(lambda: deployment_at(kube, namespace, "web", 1), 60, "1 ready pod")
    [pod] = set_cpu(kube, namespace, "app=web", "10m")
    wait_until(lambda: pod_cpu(kube, namespace, "app=web").get(pod, 1) < Decimal("0.05"), 60, "10m served")
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    apply(scaler_manifest("web", target, CPU_50, pollIntervalSeconds=60), namespace)
    wait_until(
        lambda: condition(scaler(kube, namespace, "web"), "ScalingActive").get("status") == "True",
        60,
        "the first read",
    )
    set_cpu(kube, namespace, "app=web", "100m")  # 100 % of the request: 2 replicas at a 50 % target
    reaction = reaction_to_served_usage(
        kube,
        namespace,
        "app=web",
        {pod},
        Decimal("0.09"),
        lambda: deployment(kube, namespace, "web")["spec"]["replicas"] > 1,
    )
    assert reaction <= 5.0, f"moved {reaction:.2f}s after the step was served (the poll interval is 60 s)"
    print(f"reaction after metrics-server served the step: {reaction:.2f}s")


def test_paused_scaler_leaves_the_target_alone(
    kube: Kube, namespace: str, exporter: Exporter, running_operator: OperatorProcess
) -> None:
    exporter.set(50)
    create_deployment(kube, namespace, "manual", 1)
    metric = [{"type": "Prometheus", "prometheus": {"query": exporter.query, "targetPerReplica": 10}}]
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "manual"}
    apply(scaler_manifest("manual", target, metric, paused=True), namespace)
    wait_until(
        lambda: condition(scaler(kube, namespace, "manual"), "ScalingActive").get("reason") == "Paused",
        30,
        "Paused condition",
    )
    kubectl("scale", "deploy/manual", "-n", namespace, "--replicas=3")
    # The scaler has seen the manual size (it reports it) and left it: 50/10 would have made it 5.
    wait_until(
        lambda: scaler(kube, namespace, "manual")["status"].get("currentReplicas") == 3, 30, "scaler saw 3"
    )
    assert deployment(kube, namespace, "manual")["spec"]["replicas"] == 3
    events = kube.list_items(f"/api/v1/namespaces/{namespace}/events")
    assert not any(e["reason"] == "Scaled" for e in events)
    kube.merge_patch(custom_path("workerscalers", namespace, "manual"), {"spec": {"paused": False}})
    wait_until(
        lambda: deployment(kube, namespace, "manual")["spec"]["replicas"] == 5, 30, "unpaused: scaled to 5"
    )


def test_cross_namespace_and_conflicting_targets_are_refused_with_a_condition(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    create_deployment(kube, namespace, "mine", 1)
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "coredns", "namespace": "kube-system"}
    apply(scaler_manifest("elsewhere", other, CPU_50), namespace)
    cond = wait_until(
        lambda: (c := condition(scaler(kube, namespace, "elsewhere"), "AbleToScale")) and c,
        30,
        "AbleToScale condition",
    )
    assert (cond["status"], cond["reason"]) == ("False", "CrossNamespaceRefused")
    assert "kube-system" in cond["message"]

    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mine"}
    apply(scaler_manifest("first", target, CPU_50), namespace)
    wait_until(
        lambda: condition(scaler(kube, namespace, "first"), "AbleToScale"), 30, "first scaler evaluated"
    )
    apply(scaler_manifest("second", target, CPU_50), namespace)
    cond = wait_until(
        lambda: (c := condition(scaler(kube, namespace, "second"), "AbleToScale")) and c,
        30,
        "second scaler's condition",
    )
    assert (cond["status"], cond["reason"]) == ("False", "ConflictingScaler") and "first" in cond["message"]
    assert condition(scaler(kube, namespace, "first"), "AbleToScale").get("reason") != "ConflictingScaler"
