"""Claims and releases decided on a view older than the pod: seen in B3, where a pool's release of a
finished session's pod landed after the next session had claimed it, and a third session then claimed
the same pod while the second went on 'Running' on it. Every write that takes or gives back a pod is
guarded by the resourceVersion it was decided on, and a release checks who holds the pod."""

from __future__ import annotations

from datetime import timedelta

from shoal.builders.session import signature
from shoal.claims.holders import SESSION, Holder, release_patch
from shoal.config import Settings
from shoal.pool.pods import pod_view
from shoal.reconcile.claimer import Claimer
from shoal.runtime.cache import ClaimIndex
from tests.unit.fakes import SPEC, T0, Api


def one_pod_api() -> Api:
    api = Api()
    for name in ("rr-b", "rr-c", "rr-d"):
        del api.pods[name]
    return api


def holder_of(api: Api, pod: str) -> str | None:
    return (api.pods[pod]["metadata"].get("annotations") or {}).get("shoal.dev/claimed-by")


def test_a_late_release_leaves_the_next_holders_claim_alone() -> None:
    api = one_pod_api()
    claimer = Claimer(api, Settings())  # type: ignore[arg-type]
    first = claimer.claim_session("ns", "s1", SPEC, None, 0.0, T0)
    assert first.pod == "rr-a"
    assert claimer.release("ns", "rr-a", Holder(SESSION, "s1"), signature(SPEC), T0 + timedelta(seconds=5))
    second = claimer.claim_session("ns", "s2", SPEC, None, 0.0, T0 + timedelta(seconds=6))
    assert second.pod == "rr-a"
    # s1's release again (a retried pass): s2 keeps the pod, and nothing is written.
    version = api.pods["rr-a"]["metadata"]["resourceVersion"]
    assert not claimer.release(
        "ns", "rr-a", Holder(SESSION, "s1"), signature(SPEC), T0 + timedelta(seconds=7)
    )
    assert holder_of(api, "rr-a") == "s2"
    assert api.pods["rr-a"]["metadata"]["resourceVersion"] == version


def test_an_adoption_from_a_stale_view_does_not_take_the_pod_from_its_new_holder() -> None:
    """s1's index still shows the pod claimed for s1 (the watch is behind): s1 released it, s2 claimed
    it. s1's next claim must not 'adopt' it back: the guarded patch fails, the pod is read again, and
    s1 finds no idle pod."""
    api = one_pod_api()
    index = ClaimIndex()
    index.pool_event("ADDED", api.pool)
    claimer = Claimer(api, Settings(), index)  # type: ignore[arg-type]
    assert claimer.claim_session("ns", "s1", SPEC, None, 0.0, T0).pod == "rr-a"
    stale = {**api.pods["rr-a"], "metadata": {**api.pods["rr-a"]["metadata"]}}
    assert claimer.release("ns", "rr-a", Holder(SESSION, "s1"), None, T0 + timedelta(seconds=5))
    other = Claimer(api, Settings())  # type: ignore[arg-type]
    assert other.claim_session("ns", "s2", SPEC, None, 0.0, T0 + timedelta(seconds=6)).pod == "rr-a"
    index.pod_event("MODIFIED", stale)
    again = claimer.claim_session("ns", "s1", SPEC, None, 0.0, T0 + timedelta(seconds=7))
    assert again.pod is None and again.reason == "NoIdlePod"
    assert holder_of(api, "rr-a") == "s2"


def test_an_adoption_survives_the_agents_writes_since_the_view() -> None:
    """The pod is s1's, but its agent wrote progress since the index saw it: the 409 re-reads the pod and
    s1 adopts it (never a second pod)."""
    api = Api()
    index = ClaimIndex()
    index.pool_event("ADDED", api.pool)
    claimer = Claimer(api, Settings(), index)  # type: ignore[arg-type]
    pod = claimer.claim_session("ns", "s1", SPEC, None, 0.0, T0).pod
    assert pod is not None
    api.merge_patch(
        f"/api/v1/namespaces/ns/pods/{pod}", {"metadata": {"annotations": {"shoal.dev/progress": "{}"}}}
    )
    adopted = claimer.claim_session("ns", "s1", SPEC, None, 0.0, T0 + timedelta(seconds=1))
    assert adopted.pod == pod
    assert [p for p in api.pods if holder_of(api, p) == "s1"] == [pod]
    assert (api.pods[pod]["metadata"]["annotations"] or {}).get("shoal.dev/progress") == "{}"


def test_a_release_decided_on_a_read_carries_its_resource_version() -> None:
    api = one_pod_api()
    raw = api.pods["rr-a"]
    patch = release_patch(T0, None, pod_view(raw), resource_version="7")
    assert patch["metadata"]["resourceVersion"] == "7"
    assert "resourceVersion" not in release_patch(T0, None, pod_view(raw))["metadata"]


def test_a_claim_whose_answer_was_lost_is_the_claim_not_a_reason_to_take_a_second_pod() -> None:
    """The claim patch reached the API server but its answer did not (a 500 after the write, a dropped
    connection), and the index has not seen the pod's change yet: CI's fault-proxy chaos test caught a
    retry that chose another idle pod, so one session had claimed two. The pod is read afresh instead."""
    from shoal.k8s.client import ApiError

    api = Api()
    index = ClaimIndex()
    index.pool_event("ADDED", api.pool)
    for pod in api.pods.values():
        index.pod_event("ADDED", pod)
    applied = api.merge_patch

    def answer_lost(path: str, patch: dict[str, object]) -> dict[str, object]:
        applied(path, patch)
        raise ApiError(500, "Internal Server Error", "the answer was lost")

    api.merge_patch = answer_lost  # type: ignore[method-assign]
    claimer = Claimer(api, Settings(), index)  # type: ignore[arg-type]
    first = claimer.claim_session("ns", "s1", SPEC, None, 0.0, T0)
    api.merge_patch = applied  # type: ignore[method-assign]
    again = claimer.claim_session("ns", "s1", SPEC, None, 0.0, T0 + timedelta(seconds=1))
    held = [p for p in api.pods if holder_of(api, p) == "s1"]
    assert len(held) == 1 and first.pod == again.pod == held[0]
    claims = sum(int(api.pods[p]["metadata"]["annotations"].get("shoal.dev/claims", "0")) for p in held)
    assert claims == 1
