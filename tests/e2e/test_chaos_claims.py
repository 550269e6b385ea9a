"""Faults around claims: concurrent claims on one warm pod, the operator SIGKILLed around claims,
status writes failed or lost by a fault proxy, a claim no session holds any more.

The quick variants run in `make test`; the `chaos` ones (20 seeded kills) in `make test-chaos`.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from shoal.k8s.client import Kube
from shoal.k8s.paths import pods_path
from testbed.faultproxy import Fault, FaultProxy
from tests.e2e.conftest import OperatorProcess, pool_manifest, session_manifest
from tests.e2e.util import (
    SEL,
    apply,
    converged,
    is_idle,
    live_pods,
    phase_is,
    status,
    wait_until,
)


def test_concurrent_claims_never_share_a_warm_pod(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    """Competing writers: many sessions claim from one pool at once; optimistic locking (409) decides.
    maxReplicas holds the pool at 6 (it would otherwise grow for the two that wait)."""
    apply(pool_manifest("shared", 6, maxReplicas=6, sessionAgent={}), namespace)
    wait_until(lambda: converged(kube, namespace, "shared", 6), 60, "6 pods")
    for i in range(8):
        apply(session_manifest(f"claim-{i}", poolRef={"name": "shared"}), namespace)

    def judged() -> list[dict[str, Any]]:
        states = [status(kube, namespace, f"claim-{i}") for i in range(8)]
        done = all(st.get("phase") == "Running" or st.get("reason") == "NoIdlePod" for st in states)
        return states if done and sum(st.get("phase") == "Running" for st in states) == 6 else []

    wait_until(judged, 60, "6 sessions bound, 2 waiting for an idle pod")
    bound = [status(kube, namespace, f"claim-{i}").get("podName") for i in range(8)]
    bound = [b for b in bound if b]
    assert len(bound) == len(set(bound)) == 6, bound
    waiting = [
        status(kube, namespace, f"claim-{i}")
        for i in range(8)
        if not phase_is(kube, namespace, f"claim-{i}", "Running")
    ]
    assert len(waiting) == 2 and all(w.get("reason") == "NoIdlePod" for w in waiting), waiting
    claimed_by = [
        p["metadata"]["annotations"].get("shoal.dev/claimed-by")
        for p in live_pods(kube, namespace, SEL.format("shared"))
    ]
    assert sorted(c for c in claimed_by if c) == sorted(
        f"claim-{i}" for i in range(8) if phase_is(kube, namespace, f"claim-{i}", "Running")
    )


def kill_during_claims(kube: Kube, ns: str, op: OperatorProcess, sessions: int, seed: int) -> dict[str, Any]:
    """Sessions claim warm pods while the operator is SIGKILLed around each claim; then count claims:
    every session holds one pod, no pod was claimed twice (a re-claim after a lost status write is an
    adoption, which does not count), no pod is Claimed without its session holding it."""
    rng = random.Random(seed)
    apply(pool_manifest("claims", sessions + 2, sessionAgent={}), ns)
    wait_until(lambda: converged(kube, ns, "claims", sessions + 2), 60, "the pool")
    for i in range(sessions):
        apply(session_manifest(f"s-{i}", poolRef={"name": "claims"}), ns)
        time.sleep(rng.uniform(0.0, 0.3))  # the fault's timing: before, during or after the claim
        op.kill()
        op.start()

    def bound() -> list[str]:
        names = [status(kube, ns, f"s-{i}").get("podName") for i in range(sessions)]
        return [str(n) for n in names] if all(names) else []

    held = wait_until(bound, 60, "every session bound")
    pods = {p["metadata"]["name"]: p for p in live_pods(kube, ns, SEL.format("claims"))}
    claimed = sorted(
        n for n, p in pods.items() if p["metadata"]["labels"].get("shoal.dev/state") == "Claimed"
    )
    claims = sum(
        int(p["metadata"].get("annotations", {}).get("shoal.dev/claims", "0")) for p in pods.values()
    )
    assert len(set(held)) == sessions, held  # no pod shared
    assert claimed == sorted(held), (claimed, held)  # none stranded
    assert claims == sessions, claims  # none claimed twice
    return {"sessions": sessions, "kills": sessions, "claims": claims}


def test_sigkills_around_claims_leave_no_second_claim_and_no_stranded_pod(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    print(json.dumps(kill_during_claims(kube, namespace, running_operator, sessions=4, seed=3)))


@pytest.mark.chaos
def test_twenty_sigkills_around_claims(kube: Kube, namespace: str, running_operator: OperatorProcess) -> None:
    print(json.dumps(kill_during_claims(kube, namespace, running_operator, sessions=20, seed=2027)))


def test_claims_survive_failed_and_lost_status_writes_and_kills(
    kube: Kube, namespace: str, proxied_operator: tuple[OperatorProcess, FaultProxy]
) -> None:
    """Between a claim and its record: the session's status write refused (500), or made with its
    answer lost; a claim's own pod patch made with its answer lost; and a SIGKILL at random moments.
    Counted: every session holds one pod, no pod claimed twice, none stranded."""
    op, proxy = proxied_operator
    status_write = rf"/namespaces/{namespace}/trainingsessions/[^/]+/status$"
    # Each fault fires at least once (a warm start writes its session's status once or twice, and
    # six starts at these odds alone left one untried now and then), then at random.
    refused = proxy.add(Fault("status refused", "PATCH", status_write, probability=0.3, at_least=1))
    lost = proxy.add(
        Fault("status answer lost", "PATCH", status_write, probability=0.3, after=True, at_least=1)
    )
    claim_lost = proxy.add(
        Fault(
            "claim answer lost",
            "PATCH",
            rf"/namespaces/{namespace}/pods/",
            probability=0.2,
            after=True,
            at_least=1,
        )
    )
    op.start()
    print(json.dumps(kill_during_claims(kube, namespace, op, sessions=6, seed=11)))
    print(json.dumps(dict(proxy.injected)))
    for fault in (refused, lost, claim_lost):
        assert proxy.injected[fault.name] > 0, (fault.name, proxy.injected)  # each fault did happen


def test_a_claim_no_session_holds_goes_back_to_the_pool(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    """A claim left by a session that is gone (deleted while the operator was down, say)."""
    apply(pool_manifest("leaky", 1), namespace)
    wait_until(lambda: converged(kube, namespace, "leaky", 1), 60, "the pool")
    name = live_pods(kube, namespace, SEL.format("leaky"))[0]["metadata"]["name"]
    kube.merge_patch(
        pods_path(namespace, name),
        {
            "metadata": {
                "labels": {"shoal.dev/state": "Claimed", "shoal.dev/session": "ghost"},
                "annotations": {"shoal.dev/claimed-by": "ghost", "shoal.dev/session-config": "{}"},
            }
        },
    )

    def released() -> dict[str, Any]:
        p = kube.get(pods_path(namespace, name))
        return p if is_idle(p) else {}

    pod = wait_until(released, 30, "the pod back Idle")
    ann = pod["metadata"].get("annotations") or {}
    assert "shoal.dev/claimed-by" not in ann and "shoal.dev/session-config" not in ann
    assert "shoal.dev/session" not in pod["metadata"]["labels"]
    events = [
        e for e in kube.list_items(f"/api/v1/namespaces/{namespace}/events") if e["reason"] == "Released"
    ]
    assert len(events) == 1 and name in events[0]["message"], events
    assert len(live_pods(kube, namespace, SEL.format("leaky"))) == 1  # released, not replaced
