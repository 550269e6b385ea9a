from __future__ import annotations

from datetime import timedelta

from shoal.pool.selection import ClaimRequest, claimable, select_pod
from tests.unit.podfactory import HASH, T0, pod


def test_least_recently_used_prefers_never_used_then_oldest_release() -> None:
    a = pod(last_released=T0 - timedelta(seconds=10))
    b = pod(last_released=T0 - timedelta(seconds=100))
    c = pod()
    assert select_pod("LeastRecentlyUsed", [a, b, c], ClaimRequest()) == c
    assert select_pod("LeastRecentlyUsed", [a, b], ClaimRequest()) == b


def test_round_robin_cycles_by_name() -> None:
    pods = [pod(name="x-a"), pod(name="x-b"), pod(name="x-c")]
    assert select_pod("RoundRobin", pods, ClaimRequest(cursor="x-a")).name == "x-b"  # type: ignore[union-attr]
    assert select_pod("RoundRobin", pods, ClaimRequest(cursor="x-c")).name == "x-a"  # type: ignore[union-attr]
    assert select_pod("RoundRobin", pods, ClaimRequest()).name == "x-a"  # type: ignore[union-attr]


def test_least_loaded_picks_lowest_load() -> None:
    busy, calm = pod(load=0.9), pod(load=0.1)
    assert select_pod("LeastLoaded", [busy, calm], ClaimRequest()) == calm


def test_resource_aware_picks_the_tightest_fit_and_none_when_nothing_fits() -> None:
    small = pod(requests=(("cpu", "1"), ("memory", "1Gi")))
    big = pod(requests=(("cpu", "8"), ("memory", "32Gi")))
    assert select_pod("ResourceAware", [big, small], ClaimRequest(requests={"cpu": "500m"})) == small
    assert select_pod("ResourceAware", [big, small], ClaimRequest(requests={"cpu": "2"})) == big
    assert select_pod("ResourceAware", [big, small], ClaimRequest(requests={"cpu": "16"})) is None


def test_affinity_prefers_the_same_signature_else_lru() -> None:
    warm = pod(last_signature="job-a", last_released=T0)
    other = pod(last_signature="job-b", last_released=T0 - timedelta(seconds=50))
    assert select_pod("Affinity", [warm, other], ClaimRequest(signature="job-a")) == warm
    assert select_pod("Affinity", [warm, other], ClaimRequest(signature="job-z")) == other


def test_only_idle_pods_not_due_for_recycling_are_claimable() -> None:
    from shoal.api.pool import Recycle

    ok = pod("Idle")
    pods = [ok, pod("Claimed"), pod("Warming"), pod("Idle", age=5000), pod("Idle", template_hash="old")]
    assert claimable(pods, Recycle(maxAgeSeconds=3600), HASH, T0) == [ok]


def test_no_strategy_hands_a_gpu_claim_a_pod_without_the_gpu() -> None:
    from shoal.pool.selection import STRATEGIES, unfit_reason

    cpu_only = pod(requests=(("cpu", "8"), ("memory", "32Gi")))
    gpu = pod(requests=(("cpu", "1"), ("memory", "4Gi"), ("nvidia.com/gpu", "1")))
    claim = ClaimRequest(signature="job", requests={"cpu": "1", "nvidia.com/gpu": "1"})
    for strategy in STRATEGIES:
        assert select_pod(strategy, [cpu_only], claim) is None, strategy
        # the CPU-only pod has more CPU, but not the device
        assert select_pod(strategy, [cpu_only, gpu], claim) == gpu, strategy
    assert (
        unfit_reason([cpu_only], claim)
        == "1 idle pod(s), none with the nvidia.com/gpu 1 the session asks for"
    )
    assert unfit_reason([cpu_only, gpu], claim) is None and unfit_reason([], claim) is None
    two = ClaimRequest(requests={"nvidia.com/gpu": "2"})
    assert select_pod("LeastRecentlyUsed", [gpu], two) is None  # one GPU is not two
