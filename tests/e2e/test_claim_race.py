"""No claimed pod is ever deleted: claims through the production claim path (reconcile.claimer.Claimer,
a resourceVersion-guarded patch) race a pool that is scaled down and up and has its template changed
(recycling every idle pod) over and over. A watch (PodHistory) records each pod as it was when its deletion began;
one that was claimed at that moment is a failure. The pool's deletes carry the pod's uid and
resourceVersion, so a claim that lands between the pool's list and its delete makes the delete fail
with 409 instead of taking the pod from under its claimant."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

from shoal.api.session import TrainingSessionSpec
from shoal.builders.session import signature
from shoal.claims.holders import SESSION, Holder
from shoal.config import Settings
from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, pods_path
from shoal.reconcile.claimer import Claimer
from tests.e2e.conftest import OperatorProcess, pool_manifest
from tests.e2e.util import PodHistory, apply, is_idle, sample, wait_until

CLAIMS = 1000
SELECTOR = "shoal.dev/pool=race"


def claimed_at_deletion(history: PodHistory) -> list[str]:
    """Pods that were claimed (or busy) when their deletion began."""
    with history.lock:
        seen = dict(history.at_deletion)
    return [
        uid
        for uid, ann in seen.items()
        if ann.get("shoal.dev/claimed-by") or ann.get("shoal.dev/busy", "").lower() == "true"
    ]


def test_a_thousand_claims_racing_scale_downs_and_recycles_lose_no_claimed_pod(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("race", 20, sessionAgent={}), namespace)  # pods a session can train on

    def idle() -> int:
        pods = kube.list_items(pods_path(namespace), SELECTOR)
        return sum(1 for p in pods if is_idle(p))

    wait_until(lambda: idle() == 20, 90, "20 idle pods")
    deletions = PodHistory(kube, namespace, SELECTOR)
    before = running_operator.metrics()
    spec = TrainingSessionSpec.model_validate(
        {
            "game": "CartPole-v1",
            "algorithm": "PPO",
            "totalTimesteps": 10,
            "poolRef": {"name": "race"},
        }
    )
    claimer = Claimer(kube, Settings())  # no watch index: a fresh list of the pool for every claim
    claims, lost = 0, 0
    lock = threading.Lock()
    done = threading.Event()
    rng = random.Random(11)

    def claim_and_release(worker: int) -> None:
        nonlocal claims, lost
        n = 0
        while not done.is_set():
            n += 1
            session = f"w{worker}-{n}"
            out = claimer.claim_session(namespace, session, spec, None, time.monotonic(), datetime.now(UTC))
            if out.pod is None:
                with lock:
                    lost += 1
                continue
            with lock:
                claims += 1
                if claims >= CLAIMS:
                    done.set()
            time.sleep(rng.uniform(0, 0.05))  # held for a moment, as a short job would
            claimer.release(namespace, out.pod, Holder(SESSION, session), signature(spec), datetime.now(UTC))

    def churn() -> None:
        i = 0
        while not done.is_set():
            i += 1
            patch: dict[str, Any] = {"spec": {"replicas": 3 if i % 2 else 20}}
            if i % 3 == 0:  # a template change: every idle pod is recycled
                patch["spec"]["template"] = {"metadata": {"annotations": {"race/round": str(i)}}}
            kube.merge_patch(custom_path("containerpools", namespace, "race"), patch)
            done.wait(rng.uniform(0.3, 1.2))  # random phase against the claims

    workers = [threading.Thread(target=claim_and_release, args=(w,), daemon=True) for w in range(4)]
    churner = threading.Thread(target=churn, daemon=True)
    for t in [*workers, churner]:
        t.start()
    finished = done.wait(300)
    done.set()
    for t in [*workers, churner]:
        t.join(30)
    deletions.stop.set()
    after = running_operator.metrics()
    skipped = sum(
        sample(after, f'shoal_pool_pod_changes_total{{action="delete-skipped",reason="{r}"}}')
        - sample(before, f'shoal_pool_pod_changes_total{{action="delete-skipped",reason="{r}"}}')
        for r in ("ScaleDown", "TemplateChanged")
    )
    deleted = len(deletions.at_deletion)
    print(json.dumps({"claims": claims, "no_idle_pod": lost, "deletions": deleted, "skipped_409": skipped}))
    assert finished and claims >= CLAIMS, (claims, lost)
    assert deleted >= 100  # the pool really was scaled down and recycled meanwhile
    assert claimed_at_deletion(deletions) == [], claimed_at_deletion(deletions)
