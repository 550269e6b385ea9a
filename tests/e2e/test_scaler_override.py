"""A WorkerScaler's manual override end to end: a person's size with a reason, applied through the
target's scale subresource, recorded in the scaler's decisions and Events, and ended by itself at its
expiry, when the metrics decide again (the pure rules: tests/unit/test_scaler_override.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path
from shoal.times import format_time, parse_time
from tests.e2e.conftest import Exporter, OperatorProcess, scaler_manifest
from tests.e2e.util import (
    apply,
    condition,
    create_deployment,
    decisions,
    deployment,
    events_where,
    scaler,
    wait_until,
)

POLL = 10  # polls at 0, 10, 20, 30 s: an override ending at 24 s ends then, not 6 s later at a poll


def replicas(kube: Kube, ns: str, name: str) -> int:
    return int(deployment(kube, ns, name)["spec"]["replicas"])


def test_an_override_sizes_the_target_with_its_reason_and_ends_at_its_expiry(
    kube: Kube, namespace: str, exporter: Exporter, running_operator: OperatorProcess
) -> None:
    exporter.set(50)  # 50 / 10 per replica: the metric alone asks for 5
    create_deployment(kube, namespace, "web", 1)
    metric = [{"type": "Prometheus", "prometheus": {"query": exporter.query, "targetPerReplica": 10}}]
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    # Whole seconds: the API server keeps RFC 3339 times to the second.
    ends = datetime.fromtimestamp(int(time.time()) + 24, tz=UTC)
    override = {"replicas": 8, "reason": "launch day", "expiresAt": format_time(ends)}
    # The override's own step starts the usual cooldown; none here, so the hand-back shows at once.
    behavior = {"scaleDown": {"cooldownSeconds": 0, "stabilizationWindowSeconds": 0}}
    manifest = scaler_manifest(
        "web", target, metric, pollIntervalSeconds=POLL, override=override, behavior=behavior
    )
    apply(manifest, namespace)

    wait_until(lambda: replicas(kube, namespace, "web") == 8, 30, "the override's 8 replicas")
    wait_until(lambda: decisions(kube, namespace, "web"), 30, "a decision recorded")
    first = decisions(kube, namespace, "web")[0]
    assert (first["reason"], first["fromReplicas"], first["toReplicas"]) == ("Override", 1, 8)
    assert first["message"].endswith(": launch day") and format_time(ends) in first["message"]
    active = condition(scaler(kube, namespace, "web"), "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "Override")
    # Read and shown while overridden (once Prometheus has scraped the exporter), not followed.
    wait_until(
        lambda: (
            [m.get("proposal") for m in scaler(kube, namespace, "web")["status"]["currentMetrics"]] == [5]
        ),
        20,
        "the metric's proposal of 5 in status",
    )
    assert replicas(kube, namespace, "web") == 8
    started = events_where(kube, namespace, lambda e: e["reason"] == "OverrideStarted", "OverrideStarted")
    assert len(started) == 1 and "launch day" in started[0]["message"]

    # At its expiry, not at the next poll, the metric's 5 takes over.
    wait_until(lambda: replicas(kube, namespace, "web") == 5, 30, "back to the metric's 5")
    ended = events_where(kube, namespace, lambda e: e["reason"] == "OverrideEnded", "OverrideEnded")
    assert len(ended) == 1 and "the override expired" in ended[0]["message"]

    def handed_back_decision() -> dict[str, Any]:
        latest = decisions(kube, namespace, "web")[-1]
        return {} if latest["reason"] == "Override" else latest

    last = wait_until(handed_back_decision, 30, "a decision of the metrics")
    assert (last["fromReplicas"], last["toReplicas"]) == (8, 5)
    handed_back = parse_time(last["time"])
    assert handed_back is not None and 0 <= (handed_back - ends).total_seconds() <= 3, (last, ends)
    scaled = [e for e in kube.list_items(f"/api/v1/namespaces/{namespace}/events") if e["reason"] == "Scaled"]
    assert sorted(e["message"].split(":")[0] for e in scaled) == [
        "Deployment/web 1 -> 8",
        "Deployment/web 8 -> 5",
    ]
    # The spec still holds the expired override: nothing more happens for it.
    kube.merge_patch(custom_path("workerscalers", namespace, "web"), {"spec": {"pollIntervalSeconds": 2}})
    wait_until(lambda: scaler(kube, namespace, "web")["status"].get("observedGeneration") == 2, 30, "gen 2")
    assert replicas(kube, namespace, "web") == 5
    assert (
        len(
            [
                e
                for e in kube.list_items(f"/api/v1/namespaces/{namespace}/events")
                if "Override" in e["reason"]
            ]
        )
        == 2
    )
