"""The claim path's watch index: what it keeps, and how concurrent claims avoid choosing the same pod."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from shoal.runtime.cache import CachedPod, ClaimIndex
from tests.unit.fakes import raw_pod


def index_of(*names: str) -> ClaimIndex:
    """An index holding idle, ready pods of pool `warm` in namespace `ns`."""
    index = ClaimIndex()
    for name in names:
        index.pod_event(None, raw_pod(name))
    return index


def first_unclaimed(pods: Sequence[CachedPod]) -> str | None:
    names = sorted(p.view.name for p in pods if not p.view.claimed)
    return names[0] if names else None


def test_watch_events_add_update_and_remove_pods_per_pool() -> None:
    index = ClaimIndex()
    index.pod_event(None, raw_pod("a"))
    index.pod_event("ADDED", raw_pod("b"))
    index.pod_event("ADDED", raw_pod("x", pool="other"))
    index.pod_event("MODIFIED", raw_pod("a", rv="7", claimed_by="s1"))
    index.pod_event("ADDED", {"metadata": {"name": "unlabelled", "namespace": "ns", "labels": {}}})
    pods = {p.view.name: p for p in index.pods("ns", "warm")}
    assert set(pods) == {"a", "b"}
    assert pods["a"].resource_version == "7" and pods["a"].view.claimed_by == "s1"
    index.pod_event("DELETED", raw_pod("a", rv="8"))
    index.pod_event("MODIFIED", raw_pod("b", rv="9", deletionTimestamp="2026-01-01T00:01:00Z"))
    assert index.pods("ns", "warm") == [] and index.size() == 1  # only the other pool's pod is left


def test_pools_are_kept_until_deleted() -> None:
    index = ClaimIndex()
    pool = {"metadata": {"name": "warm", "namespace": "ns", "uid": "u1"}, "spec": {"replicas": 3}}
    index.pool_event("ADDED", pool)
    cached = index.pool("ns", "warm")
    assert cached is not None and cached.uid == "u1" and cached.spec["replicas"] == 3
    index.pool_event("DELETED", pool)
    assert index.pool("ns", "warm") is None


def test_a_reserved_pod_is_not_offered_to_a_concurrent_claim() -> None:
    index = index_of("a", "b")
    first = index.pick("ns", "warm", first_unclaimed)
    second = index.pick("ns", "warm", first_unclaimed)
    assert first is not None and second is not None
    assert (first.view.name, second.view.name) == ("a", "b")
    assert index.pick("ns", "warm", first_unclaimed) is None  # both are being claimed


def test_release_with_the_claimed_pod_keeps_it_out_and_a_failed_claim_puts_it_back() -> None:
    index = index_of("a", "b")
    a = index.pick("ns", "warm", first_unclaimed)
    b = index.pick("ns", "warm", first_unclaimed)
    assert a is not None and b is not None
    index.release("ns", "a", raw_pod("a", rv="2", claimed_by="s1"))  # claimed: now marked so
    index.release("ns", "b")  # the claim failed: b is free again
    again = index.pick("ns", "warm", first_unclaimed)
    assert again is not None and again.view.name == "b"
    assert index.pick("ns", "warm", first_unclaimed, exclude={"b"}) is None


def test_concurrent_pickers_never_get_the_same_pod() -> None:
    index = index_of(*(f"p{i:02d}" for i in range(50)))
    got: list[str] = []
    lock = threading.Lock()

    def claimer() -> None:
        while (p := index.pick("ns", "warm", first_unclaimed)) is not None:
            with lock:
                got.append(p.view.name)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [f"p{i:02d}" for i in range(50)]


def test_a_progress_report_alone_does_not_concern_the_pool_but_a_claim_does() -> None:
    index = ClaimIndex()
    assert index.pod_event("ADDED", raw_pod("a")) is True  # new to the pool
    report = raw_pod("a", rv="2")
    report["metadata"]["annotations"]["shoal.dev/progress"] = '{"timesteps": 100}'
    assert index.pod_event("MODIFIED", report) is False  # only progress and resourceVersion moved
    # The claim path records its own write first; the watch event that follows still counts.
    claimed = raw_pod("a", rv="3", claimed_by="s1")
    index.release("ns", "a", claimed)
    assert index.pods("ns", "warm")[0].view.claimed
    assert index.pod_event("MODIFIED", claimed) is True
    assert index.pod_event("MODIFIED", raw_pod("a", rv="4", claimed_by="s1")) is False
    assert index.pod_event("DELETED", raw_pod("a", rv="5", claimed_by="s1")) is True
    assert index.pods("ns", "warm") == []


def test_claims_no_live_session_holds_or_will_adopt_are_stranded() -> None:
    from shoal.claims.holders import stranded

    def session(name: str, run: str = "Running", **st: object) -> dict[str, object]:
        return {"metadata": {"name": name}, "spec": {"runState": run}, "status": st}

    claims = {"p1": "gone", "p2": "mine", "p3": "other", "p4": "adopting", "p5": "paused", "p6": "done"}
    sessions = [
        session("mine", phase="Running", podName="p2"),
        session("other", phase="Running", podName="p9"),  # went on with another pod
        session("adopting", phase="Paused"),  # resuming: its claim of p4 landed, its status not yet
        session("paused", run="Paused", phase="Paused"),
        session("done", phase="Succeeded", podName="p6"),
    ]
    assert stranded(claims, sessions) == ["p1", "p3", "p5", "p6"]


def test_a_stranded_claim_is_given_back_with_the_signature_of_the_job_it_was_handed() -> None:
    """The session is gone (no finalizer kept it), so Affinity's memory comes from the pod's config."""
    import json

    from shoal.claims.holders import held_signature

    def pod(config: str | None, signature: str | None = None) -> dict[str, Any]:
        ann = {} if config is None else {"shoal.dev/session-config": config}
        return {
            "metadata": {"annotations": {**ann, **({"shoal.dev/signature": signature} if signature else {})}}
        }

    config = json.dumps({"game": "Acrobot-v1", "algorithm": "DQN"})
    assert held_signature(pod(config)) == '{"algorithm":"DQN","game":"Acrobot-v1"}'
    assert held_signature(pod(None, '{"repo":"web"}')) == '{"repo":"web"}'  # a ContainerClaim's
    assert held_signature(pod(None)) is None
    assert held_signature(pod("{not json")) is None
    assert held_signature(pod('["a"]')) is None
    assert held_signature(pod('{"game": "Acrobot-v1"}')) is None


def test_adopting_a_claim_keeps_the_agents_progress_and_config() -> None:
    """A session that lost the record of its claim adopts its pod again: the agent may have trained
    and reported meanwhile (seen in B3: a finished session's final report wiped, the session Running
    for ever), so the adoption rewrites labels only. It still carries the view's resourceVersion: a
    view older than a release and another holder's claim must fail (409, and the claimer reads the pod
    again) rather than take the pod back from that holder."""
    from datetime import UTC, datetime

    from shoal.claims.holders import SESSION, Holder, claim_patch
    from shoal.pool.pods import PodView

    now = datetime(2026, 12, 1, tzinfo=UTC)
    s1 = Holder(SESSION, "s1")
    handed = {"shoal.dev/session-config": "{}"}
    fresh = claim_patch(PodView("p-1", "u1", now, claims=2), "41", s1, '{"game":"CartPole-v1"}', handed, now)
    assert fresh["metadata"]["resourceVersion"] == "41"
    ann = fresh["metadata"]["annotations"]
    assert (
        ann["shoal.dev/claims"] == "3"
        and ann["shoal.dev/progress"] is None
        and "shoal.dev/session-config" in ann
        and ann["shoal.dev/signature"] == '{"game":"CartPole-v1"}'
    )
    adopted = claim_patch(PodView("p-1", "u1", now, claimed_by="s1", claims=3), "57", s1, None, handed, now)
    assert adopted == {
        "metadata": {
            "resourceVersion": "57",
            "labels": {"shoal.dev/state": "Claimed", "shoal.dev/session": "s1"},
        }
    }
