"""Claimed pool pods' load states (Invok's Healthy / Overloaded / Idle), pure: from the pod's own
shoal.dev/load or its CPU in use over its request, labelled only where the label is wrong, counted in
the pool's status; a claim's own write labels its pod Healthy and a release takes the label off."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shoal.api.pool import ContainerPoolSpec
from shoal.claims.holders import SESSION, Holder, claim_patch, release_patch
from shoal.pool import record
from shoal.pool.plan import plan
from shoal.pool.pods import load_state, pod_load
from tests.unit.podfactory import HASH, POOL_UID, T0, pod

CPU = (("cpu", "1"),)


def spec(**kw: Any) -> ContainerPoolSpec:
    template = {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    return ContainerPoolSpec.model_validate({"template": template, "replicas": 4, **kw})


def test_a_pods_load_is_its_own_report_else_its_cpu_over_its_request() -> None:
    assert pod_load(pod(load=0.3, requests=CPU), Decimal("0.95")) == 0.3  # what it says of itself wins
    assert pod_load(pod(requests=CPU), Decimal("0.95")) == 0.95
    assert pod_load(pod(requests=CPU), None) is None
    assert pod_load(pod(), Decimal("0.25")) == 0.25  # no request: the CPU in use itself
    assert load_state(pod("Claimed"), 0.95) == "Overloaded"
    assert load_state(pod("Claimed"), 0.89) == load_state(pod("Claimed"), None) == "Healthy"
    assert load_state(pod("Idle"), 0.99) is None  # no claim, no load state


def test_the_pool_labels_claimed_pods_by_live_load_and_only_where_the_label_is_wrong() -> None:
    hot = pod("Claimed", name="hot", requests=CPU, load_label="Healthy")
    cool = pod("Claimed", name="cool", requests=CPU, load_label="Healthy")
    says = pod("Claimed", name="says", load=0.97)  # its workload reports it, no usage read
    freed = pod("Idle", name="freed", requests=CPU, load_label="Overloaded")  # released without it
    usage = {"hot": {"cpu": Decimal("0.95")}, "cool": {"cpu": Decimal("0.1")}}
    p = plan(spec(), POOL_UID, [hot, cool, says, freed], HASH, T0, usage=usage)
    assert p.load_labels == {"hot": "Overloaded", "says": "Overloaded", "freed": None}
    assert (p.counts.claimed, p.counts.overloaded) == (3, 2)
    status = record.compose({"metadata": {"name": "w"}}, p, [], T0)
    assert status["overloadedReplicas"] == 2
    # Without usage (a selection that does not rank by it) only the pods' own reports count.
    quiet = plan(spec(), POOL_UID, [hot, cool, says, freed], HASH, T0)
    assert quiet.load_labels == {"says": "Overloaded", "freed": None} and quiet.counts.overloaded == 1


def test_a_claim_labels_its_pod_healthy_in_its_own_write_and_a_release_takes_it_off() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    labels = claim_patch(pod("Idle"), "1", Holder(SESSION, "s"), None, {}, now)["metadata"]["labels"]
    assert labels["shoal.dev/load-state"] == "Healthy"
    adopt = claim_patch(pod("Claimed", claimed_by="s"), "2", Holder(SESSION, "s"), None, {}, now)
    assert "shoal.dev/load-state" not in adopt["metadata"]["labels"]  # the pool's label stands
    assert release_patch(now)["metadata"]["labels"]["shoal.dev/load-state"] is None
