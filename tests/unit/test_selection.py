from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from shoal.claims.selection import ClaimRequest, claimable, select_pod
from shoal.pool.pods import pod_view
from tests.unit.fakes import raw_pod
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
    warm = pod(last_signature='{"job":"a"}', last_released=T0)
    other = pod(last_signature='{"job":"b"}', last_released=T0 - timedelta(seconds=50))
    assert select_pod("Affinity", [warm, other], ClaimRequest(signature='{"job":"a"}')) == warm
    assert select_pod("Affinity", [warm, other], ClaimRequest(signature='{"job":"z"}')) == other
    legacy = pod(last_signature="CartPole-v1/PPO", last_released=T0)  # written by an earlier version
    assert (
        select_pod(
            "Affinity", [other, legacy], ClaimRequest(signature='{"algorithm":"PPO","game":"CartPole-v1"}')
        )
        == legacy
    )


def test_only_idle_pods_not_due_for_recycling_are_claimable() -> None:
    from shoal.api.pool import Recycle

    ok = pod("Idle")
    pods = [ok, pod("Claimed"), pod("Warming"), pod("Idle", age=5000), pod("Idle", template_hash="old")]
    assert claimable(pods, Recycle(maxAgeSeconds=3600), HASH, T0) == [ok]


def test_no_strategy_hands_a_gpu_claim_a_pod_without_the_gpu() -> None:
    from shoal.claims.selection import STRATEGIES, unfit_reason

    cpu_only = pod(requests=(("cpu", "8"), ("memory", "32Gi")))
    gpu = pod(requests=(("cpu", "1"), ("memory", "4Gi"), ("nvidia.com/gpu", "1")))
    claim = ClaimRequest(signature="job", requests={"cpu": "1", "nvidia.com/gpu": "1"})
    for strategy in STRATEGIES:
        assert select_pod(strategy, [cpu_only], claim) is None, strategy
        # the CPU-only pod has more CPU, but not the device
        assert select_pod(strategy, [cpu_only, gpu], claim) == gpu, strategy
    assert (
        unfit_reason("LeastRecentlyUsed", [cpu_only], claim)
        == "1 idle pod(s), none with the nvidia.com/gpu 1 asked for"
    )
    assert (
        unfit_reason("Affinity", [cpu_only, gpu], claim) is None
        and unfit_reason("Affinity", [], claim) is None
    )
    two = ClaimRequest(requests={"nvidia.com/gpu": "2"})
    assert select_pod("LeastRecentlyUsed", [gpu], two) is None  # one GPU is not two


def test_least_loaded_ranks_by_the_pods_own_report_else_live_cpu_over_its_request() -> None:
    from decimal import Decimal

    cpu = (("cpu", "1"),)
    hot, cool, fresh = (
        pod(name="hot", requests=cpu),
        pod(name="cool", requests=cpu),
        pod(name="fresh", requests=cpu),
    )
    usage = {"hot": {"cpu": Decimal("0.9")}, "cool": {"cpu": Decimal("0.3")}}
    req = ClaimRequest(usage=usage)
    assert select_pod("LeastLoaded", [hot, cool], req) == cool
    assert select_pod("LeastLoaded", [hot, cool, fresh], req) == fresh  # no sample yet: new, unloaded
    reported = pod(name="reported", requests=cpu, load=0.95)  # its own report wins over metrics
    assert (
        select_pod(
            "LeastLoaded", [reported, hot], ClaimRequest(usage={"reported": {"cpu": Decimal(0)}, **usage})
        )
        == hot
    )


def test_resource_aware_weighs_free_headroom_not_requests() -> None:
    from decimal import Decimal

    from shoal.claims.selection import unfit_reason

    two = (("cpu", "2"), ("memory", "4Gi"))
    busy, quiet = pod(name="busy", requests=two), pod(name="quiet", requests=two)
    usage = {"busy": {"cpu": Decimal("1.8")}, "quiet": {"cpu": Decimal("0.5")}}
    claim = ClaimRequest(requests={"cpu": "1"}, usage=usage)
    assert select_pod("ResourceAware", [busy, quiet], claim) == quiet  # busy has 0.2 CPU free
    too_big = ClaimRequest(requests={"cpu": "1600m"}, usage=usage)
    assert select_pod("ResourceAware", [busy, quiet], too_big) is None
    assert unfit_reason("ResourceAware", [busy, quiet], too_big) == (
        "2 idle pod(s), none with cpu 1600m free (requests minus live usage)"
    )
    assert unfit_reason("LeastRecentlyUsed", [busy, quiet], too_big) is None  # others do not weigh CPU


def test_affinity_scores_similar_signatures_then_success_then_speed() -> None:
    from shoal.pool.jobs import Job, signature_text

    web = signature_text({"repo": "web", "os": "linux"}) or ""
    web_mac = signature_text({"repo": "web", "os": "mac"}) or ""
    api = signature_text({"repo": "api", "os": "linux"}) or ""
    want = ClaimRequest(signature=signature_text({"repo": "web", "os": "linux", "node": "22"}))
    near = pod(name="near", history=(Job(web, None, 60),))  # 2 of 3 pairs shared
    far = pod(name="far", history=(Job(web_mac, True, 10),))  # 1 of 4
    assert select_pod("Affinity", [far, near], want) == near
    flaky = pod(name="flaky", history=(Job(web, False, 30), Job(web, True, 30)))
    steady = pod(name="steady", history=(Job(web, True, 90), Job(web, True, 90)))
    assert select_pod("Affinity", [flaky, steady], want) == steady  # same similarity: success decides
    slow = pod(name="slow", history=(Job(web, True, 300),))
    fast = pod(name="fast", history=(Job(web, True, 40), Job(api, False, 5)))
    assert select_pod("Affinity", [slow, fast], want) == fast  # same similarity and success: speed
    assert select_pod("Affinity", [pod(name="new")], ClaimRequest()) is not None


def test_a_release_adds_the_job_to_the_pods_bounded_history() -> None:
    import json

    from shoal.claims.holders import release_patch
    from shoal.pool.jobs import HISTORY, parse_history, with_job

    claimed = pod(name="h", last_claimed=T0, job_outcome=True)
    patch = release_patch(T0 + timedelta(seconds=42), '{"repo":"web"}', claimed)
    ann = patch["metadata"]["annotations"]
    assert json.loads(ann["shoal.dev/history"]) == [['{"repo":"web"}', True, 42.0]]  # the job's own word
    assert ann["shoal.dev/job-outcome"] is None  # cleared for the next job
    assert patch["metadata"]["labels"]["shoal.dev/state"] == "Unclaimed"  # back in the pool at once
    gone = release_patch(T0, '{"repo":"web"}', pod("Claimed", name="g", deleting=True))
    assert "shoal.dev/state" not in gone["metadata"]["labels"]  # the pool decides what it is
    overrun = release_patch(T0 + timedelta(seconds=5), '{"repo":"web"}', claimed, ok=False)
    assert json.loads(overrun["metadata"]["annotations"]["shoal.dev/history"])[-1][1] is False
    text = None
    for i in range(HISTORY + 3):
        text = with_job(parse_history(text), f'{{"n":"{i}"}}', None, T0, T0 + timedelta(seconds=i))
    jobs = parse_history(text)
    assert len(jobs) == HISTORY and jobs[-1].signature == f'{{"n":"{HISTORY + 2}"}}'
    from shoal.pool.jobs import Job

    assert parse_history("not json") == () and parse_history('{"a": 1}') == ()
    assert parse_history('[["a", "x", 1], 5, [1, 2, 3]]') == (Job("a", None, 1.0),)  # what can be read


def test_weighted_round_robin_serves_pods_in_proportion_to_their_weights() -> None:
    c = pod(name="w-c", requests=(("cpu", "500m"),))
    pods = {"w-a": pod(name="w-a", weight=4.0), "w-b": pod(name="w-b", weight=2.0), "w-c": c}
    order = []
    for _ in range(13):  # each claim served and given back: only the pods' claim counters move
        chosen = select_pod("WeightedRoundRobin", list(pods.values()), ClaimRequest())
        assert chosen is not None
        order.append(chosen.name)
        pods[chosen.name] = replace(chosen, claims=chosen.claims + 1)
    # w-c declares nothing: its CPU request, half a core, is its weight (4 : 2 : 0.5 is 8 : 4 : 1).
    assert order == [
        "w-a",
        "w-b",
        "w-c",
        "w-a",
        "w-a",
        "w-b",
        "w-a",
        "w-a",
        "w-b",
        "w-a",
        "w-a",
        "w-b",
        "w-a",
    ]
    assert [order.count(n) for n in ("w-a", "w-b", "w-c")] == [8, 4, 1]
    newcomer = pod(name="w-d", weight=4.0)
    assert select_pod("WeightedRoundRobin", [*pods.values(), newcomer], ClaimRequest()) == newcomer


def test_a_weight_the_workload_wrote_badly_is_no_weight() -> None:
    for text, want in (("2.5", 2.5), ("0", None), ("-1", None), ("inf", None), ("heavy", None)):
        raw = raw_pod("p")
        raw["metadata"]["annotations"]["shoal.dev/weight"] = text
        assert pod_view(raw).weight == want, text
