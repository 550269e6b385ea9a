"""A replica that loses the lease stops exporting what it said of the workloads: with two replicas
scraped, a stale copy of a pool's or a queued session's gauges would double sums and hold alerts."""

from __future__ import annotations

from typing import cast

from prometheus_client import REGISTRY

from shoal import telemetry
from shoal.config import Settings
from shoal.k8s.client import Kube
from shoal.runtime.operator import OperatorRuntime


def series(name: str) -> list[dict[str, str]]:
    return [dict(s.labels) for m in REGISTRY.collect() for s in m.samples if s.name == name]


def test_losing_the_lease_clears_the_workload_gauges_and_keeps_the_operators_own_series() -> None:
    telemetry.POOL_PODS.labels("ns", "web", "Idle").set(3)
    telemetry.POOL_DESIRED.labels("ns", "web").set(3)
    telemetry.POOL_WAITING.labels("ns", "web").set(2)
    telemetry.POOL_OVERLOADED.labels("ns", "web").set(1)
    telemetry.SCALER_AT_MAX.labels("ns", "fn").set(1)
    telemetry.SESSION_QUEUED_SINCE.labels("ml", "big").set(1.0)
    telemetry.API_REQUESTS.labels("GET", "200").inc()
    runtime = OperatorRuntime(Settings(workers=1, leader_election=False), cast(Kube, None))
    assert series("shoal_pool_pods") and series("shoal_session_queued_since_timestamp_seconds")

    runtime._on_leadership(False)

    for name in (
        "shoal_pool_pods",
        "shoal_pool_desired_replicas",
        "shoal_pool_waiting_claims",
        "shoal_pool_overloaded_pods",
        "shoal_scaler_at_max",
        "shoal_scaler_replicas",
        "shoal_session_queued_since_timestamp_seconds",
    ):
        assert series(name) == [], name
    assert {"method": "GET", "code": "200"} in series("shoal_api_requests_total")
    assert [s.value for m in REGISTRY.collect() for s in m.samples if s.name == "shoal_leader"] == [0]
