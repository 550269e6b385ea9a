"""Pools plan from the watch cache: passes that run while their own creates are still on the way, and
an operator killed between a burst of creates and their watch events, create no pod twice."""

from __future__ import annotations

import json
import time
from functools import partial

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path
from tests.e2e.conftest import OperatorProcess, pool_manifest
from tests.e2e.util import PodHistory, apply, assert_no_duplicates_or_orphans, converged, kubectl, wait_until

SEL = "shoal.dev/pool={}"


def test_passes_during_a_burst_of_creates_create_each_pod_once(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    """Each annotation is a change the pool acts on (a pass), made while its 40 creates are in flight:
    planning from a cache that does not show them yet, a pass without expectations creates them again."""
    apply(pool_manifest("burst", 0), namespace)
    history = PodHistory(kube, namespace, SEL.format("burst"))
    kubectl("scale", "cpool/burst", "-n", namespace, "--replicas=40")
    path = custom_path("containerpools", namespace, "burst")
    for i in range(30):
        kube.merge_patch(path, {"metadata": {"annotations": {"e2e/poke": str(i)}}})
    wait_until(partial(converged, kube, namespace, "burst", 40), 60, "40 pods ready")
    history.stop.set()
    assert len(history.created) == 40, f"{len(history.created)} pods created for 40"
    assert history.most_alive == 40
    assert_no_duplicates_or_orphans(kube, namespace, "burst", 40)
    metrics = running_operator.metrics()
    print(
        json.dumps(
            {"created": len(history.created), "held": _counter(metrics, "shoal_pool_passes_held_total")}
        )
    )


def test_sigkill_between_creates_and_their_events_creates_no_pod_twice(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    """Killed as the first pods of a burst appear (its other creates sent or about to be, their events not
    yet seen); the next operator primes its cache from a list and creates only what is missing."""
    apply(pool_manifest("killed", 0), namespace)
    history = PodHistory(kube, namespace, SEL.format("killed"))
    runs = []
    for target in (30, 60):
        before = len(history.created)
        kubectl("scale", "cpool/killed", "-n", namespace, f"--replicas={target}")
        wait_until(lambda b=before: len(history.created) > b, 30, "the burst's first pod")  # type: ignore[misc]
        running_operator.kill()
        at_kill = len(history.created)
        running_operator.start()
        started = time.monotonic()
        wait_until(partial(converged, kube, namespace, "killed", target), 60, f"converged to {target}")
        runs.append(
            {
                "target": target,
                "created_at_kill": at_kill,
                "converged_s": round(time.monotonic() - started, 2),
            }
        )
        assert len(history.created) == target, f"{len(history.created)} pods created for {target}"
    history.stop.set()
    assert history.most_alive == 60 and not history.gone
    assert_no_duplicates_or_orphans(kube, namespace, "killed", 60)
    print(json.dumps(runs))


def _counter(metrics: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(name))
