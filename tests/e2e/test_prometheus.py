"""What an empty Prometheus result means, against the test bed's real Prometheus: held by default, zero
when the metric says so and its health guard finds the exporter up, held when the guard finds it down."""

from __future__ import annotations

from typing import Any

from testbed import cluster as testbed
from testbed.localpod import free_port
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


def test_an_empty_result_holds_by_default_and_is_zero_only_while_the_guard_finds_the_exporter_up(
    kube: Any, namespace: str, exporter: Exporter, running_operator: OperatorProcess
) -> None:
    # The exporter is scraped but emits no series for this test: sum(...) is an empty vector.
    dead = free_port()  # a scrape target with nothing listening: Prometheus records up == 0
    dead_target = testbed.PROM_TARGETS / f"{exporter.id}-dead.json"
    dead_target.write_text(f'[{{"targets": ["127.0.0.1:{dead}"]}}]')
    try:
        base = {"query": exporter.query, "targetPerReplica": 10}
        cases = {
            "held": base,  # whenEmpty defaults to Fail
            "drained": base
            | {"whenEmpty": "Zero", "healthQuery": f'up{{instance="127.0.0.1:{exporter.port}"}}'},
            "guarded": base | {"whenEmpty": "Zero", "healthQuery": f'up{{instance="127.0.0.1:{dead}"}}'},
        }
        for name, prom in cases.items():
            create_deployment(kube, namespace, name, 3)
            apply(
                scaler_manifest(
                    name,
                    {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    [{"type": "Prometheus", "prometheus": prom}],
                    behavior={"scaleDown": {"cooldownSeconds": 0, "stabilizationWindowSeconds": 0}},
                ),
                namespace,
            )
        # Zero, with the exporter up: an empty queue, scaled to minReplicas.
        wait_until(
            lambda: deployment(kube, namespace, "drained")["spec"]["replicas"] == 1, 90, "drained to 1"
        )

        def held(name: str) -> dict[str, Any]:
            c = condition(scaler(kube, namespace, name), "ScalingActive")
            return c if c.get("status") == "False" else {}

        default = wait_until(lambda: held("held"), 60, "the default holding")
        assert default["reason"] == "MetricsUnavailable" and "no series" in default["message"], default

        # The guard's target is down (up == 0 once scraped): the empty result is not read as 0.
        def guard_down() -> dict[str, Any]:
            c = held("guarded")
            return c if "source is down (0)" in c.get("message", "") else {}

        down = wait_until(guard_down, 60, "the guard finding its target down")
        assert down["reason"] == "MetricsUnavailable", down

        def scaled(e: dict[str, Any]) -> bool:
            return bool(e["reason"] == "Scaled" and e["involvedObject"]["kind"] == "WorkerScaler")

        # Events are posted after the state they describe: the drained one's says the recorder has run.
        events_where(
            kube, namespace, lambda e: scaled(e) and e["involvedObject"]["name"] == "drained", "Scaled"
        )
        every = kube.list_items(f"/api/v1/namespaces/{namespace}/events")
        for name in ("held", "guarded"):
            assert deployment(kube, namespace, name)["spec"]["replicas"] == 3, name
            assert all(d["toReplicas"] == 3 for d in decisions(kube, namespace, name)), name
            assert [e for e in every if scaled(e) and e["involvedObject"]["name"] == name] == [], name
        assert [(d["fromReplicas"], d["toReplicas"]) for d in decisions(kube, namespace, "drained")][-1] == (
            3,
            1,
        )
    finally:
        dead_target.unlink(missing_ok=True)


def test_a_target_at_zero_is_activated_by_a_prometheus_metric_and_returns_to_zero(
    kube: Any, namespace: str, exporter: Exporter, running_operator: OperatorProcess
) -> None:
    exporter.set(3)
    create_deployment(kube, namespace, "idle", 0)
    prom = {"query": exporter.query, "targetPerReplica": 10, "activationValue": 5}
    apply(
        scaler_manifest(
            "idle",
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "idle"},
            [{"type": "Prometheus", "prometheus": prom}],
            minReplicas=0,
            behavior={"scaleDown": {"cooldownSeconds": 0, "stabilizationWindowSeconds": 0}},
        ),
        namespace,
    )

    def read(value: str) -> bool:
        metrics = scaler(kube, namespace, "idle").get("status", {}).get("currentMetrics") or []
        return bool(metrics and metrics[0].get("value") == value)

    wait_until(lambda: read("3"), 60, "the scaler reading 3, below the activation value")
    assert deployment(kube, namespace, "idle")["spec"]["replicas"] == 0
    exporter.set(8)  # above 5: active, and 8 / 10 per replica is one replica
    wait_until(lambda: deployment(kube, namespace, "idle")["spec"]["replicas"] == 1, 60, "activated to 1")
    exporter.set(2)
    wait_until(lambda: deployment(kube, namespace, "idle")["spec"]["replicas"] == 0, 60, "back to 0")
    moves = [
        (d["fromReplicas"], d["toReplicas"])
        for d in decisions(kube, namespace, "idle")
        if d["fromReplicas"] != d["toReplicas"]
    ]
    assert moves == [(0, 1), (1, 0)], moves


def test_a_promql_syntax_error_is_shown_with_prometheus_own_message_and_the_size_held(
    kube: Any, namespace: str, running_operator: OperatorProcess
) -> None:
    create_deployment(kube, namespace, "typo", 2)
    apply(
        scaler_manifest(
            "typo",
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "typo"},
            [{"type": "Prometheus", "prometheus": {"query": "sum(rate(jobs[1m])", "targetPerReplica": 5}}],
        ),
        namespace,
    )

    def refused() -> dict[str, Any]:
        c = condition(scaler(kube, namespace, "typo"), "ScalingActive")
        return c if c.get("status") == "False" else {}

    c = wait_until(refused, 60, "the syntax error in the condition")
    # Prometheus' own words (a 400 with its parser's message), not a generic failure.
    assert c["reason"] == "MetricsUnavailable" and "Prometheus answered 400" in c["message"], c
    assert "parse error" in c["message"] and "unclosed left parenthesis" in c["message"], c
    assert deployment(kube, namespace, "typo")["spec"]["replicas"] == 2
