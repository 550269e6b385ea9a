"""Pods shared by several ContainerClaims (spec.claimsPerPod above 1), pure and through the claim path
against the in-memory API: claims join a pod with a free slot, LeastConnections spreads them, the
pool counts slots, grows for waiting claims a pod's worth at a time, never removes a pod a claim
holds, and a holder leaving gives back its slot only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shoal.api.claim import ContainerClaimSpec
from shoal.api.pool import ContainerPoolSpec
from shoal.builders.pod import template_hash
from shoal.claims.containerclaim import claim_request
from shoal.claims.holders import CONTAINER_CLAIM, Holder, claim_patch, leave_patch, stranded_holders
from shoal.claims.selection import ClaimRequest, claimable, least_connections, select_pod
from shoal.config import Settings
from shoal.pool.plan import plan
from shoal.pool.pods import PodView, pod_view
from shoal.reconcile.claimer import Claimer
from shoal.runtime.cache import ClaimIndex
from tests.unit.fakes import POOL, Api, raw_pod

T0 = datetime(2026, 12, 2, 9, tzinfo=UTC)
A, B, C = (f"containerclaim/{n}" for n in "abc")


def view(name: str, claimed_by: str | None = None, busy: bool = False, **kw: Any) -> PodView:
    pod = raw_pod(name, claimed_by=claimed_by)
    if busy:
        pod["metadata"]["annotations"]["shoal.dev/busy"] = "true"
    pod["metadata"]["labels"]["shoal.dev/template-hash"] = "h"
    return pod_view(pod) if not kw else PodView(**{**pod_view(pod).__dict__, **kw})


def shared_spec(slots: int = 4, **spec: Any) -> ContainerPoolSpec:
    base = {k: v for k, v in POOL.items() if k != "sessionAgent"}
    return ContainerPoolSpec.model_validate({**base, "claimsPerPod": slots, **spec})


def test_a_pod_lists_its_holders_and_a_busy_pod_takes_all_of_its_slots() -> None:
    assert view("p", f"{A},{B}").holders == (A, B) and view("p").holders == ()
    assert view("p", f"{A},{B}").slots_held(4) == 2
    assert view("p", busy=True).slots_held(4) == 4
    assert view("p", f"{A},{B},{C}").slots_held(2) == 2  # never more than it has


def test_claimed_pods_with_a_free_slot_have_room_and_least_connections_spreads() -> None:
    pods = [view("full", f"{A},{B}"), view("one", C), view("idle"), view("busy", busy=True)]
    room = claimable(pods, None, "h", T0, slots=2)
    assert [p.name for p in room] == ["one", "idle"]
    assert [p.name for p in claimable(pods, None, "h", T0)] == ["idle"]  # exclusive: idle ones only
    assert least_connections(room, ClaimRequest()).name == "idle"  # type: ignore[union-attr]
    assert select_pod("LeastConnections", [view("one", C)], ClaimRequest()).name == "one"  # type: ignore[union-attr]


def test_joining_a_shared_pod_appends_the_holder_and_keeps_what_it_runs() -> None:
    pod = view("p", A, claims=3)
    patch = claim_patch(pod, "7", Holder(CONTAINER_CLAIM, "b"), None, {}, T0, shared=True)
    meta = patch["metadata"]
    assert meta["resourceVersion"] == "7" and meta["labels"] == {"shoal.dev/state": "Claimed"}
    assert meta["annotations"] == {
        "shoal.dev/claimed-by": f"{A},{B}",
        "shoal.dev/claims": "4",
        "shoal.dev/last-claimed": "2026-12-02T09:00:00Z",
    }
    first = claim_patch(view("q"), "1", Holder(CONTAINER_CLAIM, "a"), None, {}, T0, shared=True)
    assert "shoal.dev/claim" not in first["metadata"]["labels"]  # no label can name all of them
    assert first["metadata"]["annotations"]["shoal.dev/claimed-by"] == A


def test_a_holder_leaving_a_shared_pod_gives_back_its_slot_only() -> None:
    pod = view("p", f"{A},{B}")
    partial = leave_patch(pod, [A], T0, resource_version="9")
    assert partial == {
        "metadata": {
            "resourceVersion": "9",
            "annotations": {"shoal.dev/claimed-by": B, "shoal.dev/last-released": "2026-12-02T09:00:00Z"},
        }
    }
    whole = leave_patch(pod, [A, B], T0)["metadata"]
    assert whole["annotations"]["shoal.dev/claimed-by"] is None
    assert whole["labels"]["shoal.dev/state"] == "Unclaimed"


def test_stranded_holders_are_found_one_by_one_on_a_shared_pod() -> None:
    def claim(name: str, **status: Any) -> dict[str, Any]:
        return {"metadata": {"name": name}, "status": status}

    claims = [claim("a", phase="Bound", podName="p1"), claim("c", phase="Expired", podName="p2")]
    out = stranded_holders({"p1": f"{A},{B}", "p2": f"{C},{A}"}, [], claims)
    assert out == {"p1": [B], "p2": [C, A]}  # b is gone; a holds p1, not p2


def test_the_pool_counts_slots_and_grows_a_pods_worth_at_a_time() -> None:
    def pods() -> list[PodView]:
        ready = T0 - timedelta(minutes=5)
        out = [view("p1", f"{A},{B}"), view("p2", C), view("p3"), view("p4")]
        return [PodView(**{**p.__dict__, "template_hash": "h", "ready_changed": ready}) for p in out]

    spec = shared_spec(slots=4, replicas=1)
    p = plan(spec, "pool-uid", pods(), "h", T0)
    c = p.counts
    assert (c.claimed, c.idle, c.claimed_slots, c.utilization) == (2, 0, 3, round(3 / 8, 4))
    # 3 held need 1 pod: the two idle pods go, never one a claim holds.
    assert sorted(d.pod for d in p.delete) == ["p3", "p4"] and p.desired == 1
    grown = plan(spec, "pool-uid", pods(), "h", T0, waiting=6)  # (3 + 6) / 4: 3 pods
    assert grown.desired == 3 and len(grown.delete) == 1 and grown.delete[0].pod in ("p3", "p4")
    warm = plan(shared_spec(slots=4, replicas=1, warm={"minIdle": 1}), "pool-uid", pods(), "h", T0)
    assert warm.desired == 2  # minIdle: a pod's worth of free slots on top of the held ones


def test_claims_share_a_pod_through_the_claim_path_until_its_slots_are_taken() -> None:
    api = Api()
    spec = shared_spec(2)
    api.pool = {**api.pool, "spec": spec.model_dump(mode="json", exclude_none=True)}
    for name in ("rr-b", "rr-c", "rr-d"):
        del api.pods[name]
    api.pods["rr-a"]["metadata"]["labels"]["shoal.dev/template-hash"] = template_hash(spec)  # made from it
    index = ClaimIndex()
    claimer = Claimer(api, Settings(), index)  # type: ignore[arg-type]
    req = claim_request(ContainerClaimSpec.model_validate({"poolRef": {"name": "rr"}}), "nvidia.com/gpu")
    got = [claimer.claim("ns", "rr", Holder(CONTAINER_CLAIM, n), req, {}, 0.0, T0) for n in "abc"]
    assert [g.pod for g in got] == ["rr-a", "rr-a", None] and got[2].reason == "NoIdlePod"
    assert api.pods["rr-a"]["metadata"]["annotations"]["shoal.dev/claimed-by"] == f"{A},{B}"
    assert index.waiters("ns", "rr") == [("ContainerClaim", "c")]
    assert claimer.release("ns", "rr-a", Holder(CONTAINER_CLAIM, "a"), None, T0)
    assert api.pods["rr-a"]["metadata"]["annotations"]["shoal.dev/claimed-by"] == B
    assert api.pods["rr-a"]["metadata"]["labels"]["shoal.dev/state"] == "Claimed"
    again = claimer.claim("ns", "rr", Holder(CONTAINER_CLAIM, "c"), req, {}, 0.0, T0)
    assert again.pod == "rr-a" and index.waiters("ns", "rr") == []
