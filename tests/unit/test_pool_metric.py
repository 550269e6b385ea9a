"""A WorkerScaler's Pool metric: a ContainerPool target's own load from its status (claimed pods plus
the claims waiting for one), read from the operator's pool cache or the API, and the replicas the
engine asks for on it."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.api.metrics import MetricSpec
from shoal.api.scaler import WorkerScalerSpec
from shoal.config import PrometheusAccess
from shoal.k8s.client import ApiError
from shoal.scaling.engine import config, decide
from shoal.scaling.types import History, Observation
from shoal.sources import default_sources
from shoal.sources.base import SourceContext
from shoal.sources.pool import PoolSource, pool_reading

METRIC = MetricSpec.model_validate({"type": "Pool", "pool": {"targetUtilization": 0.5}})


def pool(claimed: int | None, waiting: int = 0) -> dict[str, Any]:
    status = {} if claimed is None else {"claimedReplicas": claimed, "waitingClaims": waiting}
    return {"metadata": {"name": "fn", "namespace": "ns", "generation": 1}, "status": status}


class Kube:
    """The one read a Pool metric may make: a GET of its pool when the cache does not hold it."""

    def __init__(self, obj: dict[str, Any] | None = None, error: ApiError | None = None) -> None:
        self.obj, self.error, self.gets = obj, error, []  # type: ignore[var-annotated]

    def get_if_exists(self, path: str) -> dict[str, Any] | None:
        self.gets.append(path)
        if self.error:
            raise self.error
        return self.obj


def ctx(kube: Kube, current: int = 4) -> SourceContext:
    return SourceContext(kube, "ns", "shoal.dev/pool=fn", current, "fn")  # type: ignore[arg-type]


def scaler(min_replicas: int = 1) -> WorkerScalerSpec:
    return WorkerScalerSpec.model_validate(
        {
            "targetRef": {"apiVersion": "shoal.dev/v1alpha1", "kind": "ContainerPool", "name": "fn"},
            "minReplicas": min_replicas,
            "maxReplicas": 20,
            "metrics": [METRIC.model_dump(exclude_none=True)],
        }
    )


def test_claimed_and_waiting_are_the_value_and_the_target_is_per_replica() -> None:
    r = pool_reading(pool(3, waiting=2), 0.5)
    assert (r.kind, r.value, r.target_per_replica, r.error) == ("Pool", 5.0, 0.5, None)
    assert pool_reading(pool(None), 0.5).error == "the pool has not reported its pods yet"
    # A shared pool counts slots: 6 held and 2 waiting at 4 claims a pod are 2 pods' worth.
    shared = pool(3, waiting=2)
    shared["spec"] = {"claimsPerPod": 4}
    shared["status"]["claimedSlots"] = 6
    assert pool_reading(shared, 0.5).value == 2.0
    assert pool_reading(None, 0.5).error == "the target pool is not found"


@pytest.mark.parametrize(
    ("current", "claimed", "waiting", "want", "reason"),
    [
        (4, 2, 0, 4, "WithinTolerance"),  # 2 busy at 0.5 each: 4
        (4, 4, 3, 14, "ScaleUp"),  # every pod claimed and 3 waiting: 7 / 0.5
        (0, 0, 1, 2, "ScaleUp"),  # a claim waiting wakes a pool at zero
        (6, 0, 0, 0, "ScaleDown"),  # nothing busy: minReplicas decides
    ],
)
def test_the_engine_sizes_the_pool_for_its_claims_at_the_target_share(
    current: int, claimed: int, waiting: int, want: int, reason: str
) -> None:
    cfg = config(scaler(min_replicas=0))
    reading = PoolSource(lambda ns, name: pool(claimed, waiting)).read(ctx(Kube(), current), METRIC)
    d, _ = decide(cfg, Observation(current, (reading,)), History(), 1000.0)
    assert (d.proposals[0].replicas, d.reason) == (want, reason) or (
        reason == "ScaleDown" and d.reason in ("ScaleDown", "StabilizationWindow")
    )


def test_the_cache_first_then_one_get_and_an_api_error_is_missing_data() -> None:
    cached = PoolSource(lambda ns, name: pool(1))
    kube = Kube(pool(9))
    assert cached.read(ctx(kube), METRIC).value == 1.0 and kube.gets == []
    uncached = PoolSource(lambda ns, name: None)
    assert uncached.read(ctx(kube), METRIC).value == 9.0
    assert kube.gets == ["/apis/shoal.dev/v1alpha1/namespaces/ns/containerpools/fn"]
    failing = uncached.read(ctx(Kube(error=ApiError(503, "ServiceUnavailable", "etcd is away"))), METRIC)
    assert failing.error is not None and "etcd is away" in failing.error
    assert "Pool" in default_sources(PrometheusAccess("http://prometheus:9090"))
