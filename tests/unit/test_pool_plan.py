from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shoal.api.pool import ContainerPoolSpec
from shoal.pool.plan import desired_replicas, plan, size_limit
from shoal.pool.pods import PodView
from tests.unit.podfactory import HASH, POOL_UID, T0, pod


def spec(**kw: Any) -> ContainerPoolSpec:
    return ContainerPoolSpec.model_validate(
        {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}, **kw}
    )


def run(s: ContainerPoolSpec, pods: list[PodView], now: Any = T0) -> Any:
    return plan(s, POOL_UID, pods, HASH, now)


def test_scale_up_from_zero_creates_the_difference() -> None:
    p = run(spec(replicas=5), [])
    assert (p.desired, p.create, p.delete) == (5, 5, [])
    assert p.counts.replicas == 5


def test_warm_pool_grows_so_min_idle_pods_stay_idle() -> None:
    pods = [pod("Claimed") for _ in range(3)] + [pod("Idle") for _ in range(2)]
    p = run(spec(replicas=5, warm={"minIdle": 2}), pods)
    assert p.desired == 5 and p.create == 0
    pods.append(pod("Claimed", busy=True, claimed_by=None))
    p = run(spec(replicas=5, warm={"minIdle": 2}), pods)
    assert p.desired == 6 and p.create == 0  # 4 claimed + 2 idle already there
    pods[3] = pod("Claimed")
    pods[4] = pod("Claimed")
    p = run(spec(replicas=5, warm={"minIdle": 2}), pods)
    assert p.desired == 8 and p.create == 2


def test_busy_annotation_counts_as_claimed() -> None:
    busy = pod("Idle", busy=True)
    p = run(spec(replicas=1, warm={"minIdle": 1}), [busy])
    assert p.counts.claimed == 1 and p.create == 1
    assert p.relabel == {busy.name: "Claimed"}


def test_max_replicas_caps_warm_growth() -> None:
    pods = [pod("Claimed") for _ in range(4)]
    p = run(spec(replicas=2, maxReplicas=5, warm={"minIdle": 3}), pods)
    assert p.desired == 5 and p.create == 1


def test_scale_down_never_deletes_claimed_or_busy_pods() -> None:
    claimed = [pod("Claimed") for _ in range(3)]
    busy = [pod("Idle", busy=True) for _ in range(2)]
    idle = [pod("Idle", age=100 + i) for i in range(4)]
    p = run(spec(replicas=1), claimed + busy + idle)
    deleted = {d.pod for d in p.delete}
    assert deleted == {x.name for x in idle}
    assert all(d.reason == "ScaleDown" for d in p.delete)
    assert p.desired == 5  # the 5 claimed ones stay; the pool cannot shrink below them


def test_scale_down_removes_unstarted_pods_before_idle_ones_then_oldest_idle() -> None:
    idle_old, idle_new = pod("Idle", age=500), pod("Idle", age=50)
    pending = pod("Pending", age=5)
    p = run(spec(replicas=1), [idle_old, idle_new, pending])
    assert [d.pod for d in p.delete] == [pending.name, idle_old.name]


def test_pods_deleted_by_someone_else_are_replaced() -> None:
    pods = [pod("Idle"), pod("Idle"), pod("Idle", deleting=True)]
    p = run(spec(replicas=3), pods)
    assert p.create == 1


def test_max_age_recycles_idle_pods_with_a_surge_budget_and_spares_claimed_ones() -> None:
    old = [pod("Idle", age=4000) for _ in range(8)]
    claimed_old = pod("Claimed", age=4000)
    p = run(spec(replicas=9, recycle={"maxAgeSeconds": 3600}), [*old, claimed_old])
    recycled = [d for d in p.delete if d.reason == "MaxAge"]
    assert len(recycled) == 3  # ceil(9 * 0.25)
    assert claimed_old.name not in {d.pod for d in p.delete}
    assert p.create == 3  # replacements for the recycled pods
    assert p.requeue_after is not None and p.requeue_after <= 5


def test_requeue_when_the_next_pod_reaches_max_age() -> None:
    p = run(spec(replicas=1, recycle={"maxAgeSeconds": 100}), [pod("Idle", age=70)])
    assert p.delete == [] and p.requeue_after is not None and abs(p.requeue_after - 30) < 1e-6


def test_max_claims_recycles_an_idle_pod() -> None:
    worn = pod("Idle", claims=5)
    p = run(spec(replicas=2, recycle={"maxClaims": 5}), [worn, pod("Idle")])
    assert [(d.pod, d.reason) for d in p.delete] == [(worn.name, "MaxClaims")]
    assert p.create == 1


def test_failed_pods_are_replaced_or_kept_as_configured() -> None:
    failed = pod("Failed")
    crash = pod("Warming", crashlooping=True)
    p = run(spec(replicas=3), [failed, crash, pod("Idle")])
    assert {d.pod for d in p.delete} == {failed.name, crash.name} and p.create == 2
    p = run(spec(replicas=3, recycle={"onUnhealthy": "Keep"}), [failed, pod("Idle")])
    assert p.delete == [] and p.create == 2 and p.relabel.get(failed.name) is None  # already labelled
    assert p.counts.failed == 1


def test_pod_not_ready_past_deadline_is_replaced() -> None:
    stuck = pod("Warming", age=400)
    fresh = pod("Warming", age=10)
    p = run(spec(replicas=2, recycle={"unhealthyAfterSeconds": 300}), [stuck, fresh])
    assert [(d.pod, d.reason) for d in p.delete] == [(stuck.name, "NotReadyTimeout")]
    assert p.requeue_after is not None and abs(p.requeue_after - 290) < 1e-6


def test_orphans_are_adopted_when_current_else_removed_and_foreign_pods_ignored() -> None:
    current = pod("Idle", controller_uid=None)
    stale = pod("Idle", controller_uid=None, template_hash="old")
    foreign = pod("Idle", controller_uid="someone-else")
    p = run(spec(replicas=2), [current, stale, foreign])
    assert p.adopt == [current.name]
    assert [(d.pod, d.reason) for d in p.delete] == [(stale.name, "Orphan")]
    assert p.create == 1  # foreign pod does not count


def test_template_change_rolls_idle_pods() -> None:
    pods = [pod("Idle", template_hash="old", age=10 + i) for i in range(4)]
    p = run(spec(replicas=4), pods)
    assert len([d for d in p.delete if d.reason == "TemplateChanged"]) == 1
    assert p.create == 1


def test_state_labels_fold_starting_and_ready_pods_into_one_value() -> None:
    older = pod("Idle", state_label="Idle")  # labelled by an operator before the fold: once
    starting = pod("Pending", state_label="Unclaimed")
    warming = pod("Warming", state_label="Unclaimed")
    ready = pod("Idle", state_label="Unclaimed")  # turned ready: no write
    busy = pod("Idle", state_label="Unclaimed", busy=True)  # a runner took a job by itself
    p = run(spec(replicas=5), [older, starting, warming, ready, busy])
    assert p.relabel == {older.name: "Unclaimed", busy.name: "Claimed"}


def test_counts_and_utilization() -> None:
    pods = [pod("Claimed"), pod("Idle"), pod("Idle"), pod("Warming")]
    c = run(spec(replicas=4), pods).counts
    assert (c.replicas, c.ready, c.idle, c.claimed, c.warming) == (4, 3, 2, 1, 1)
    assert c.utilization == 0.25


@given(
    replicas=st.integers(0, 50),
    min_r=st.integers(0, 50),
    max_r=st.one_of(st.none(), st.integers(0, 80)),
    min_idle=st.integers(0, 20),
    claimed=st.integers(0, 100),
)
def test_desired_is_always_within_bounds(
    replicas: int, min_r: int, max_r: int | None, min_idle: int, claimed: int
) -> None:
    s = spec(replicas=replicas, minReplicas=min_r, warm={"minIdle": min_idle})
    s.maxReplicas = max_r  # set after validation: the CEL-like checks would refuse some combinations
    d = desired_replicas(s, claimed)
    if max_r is not None:
        assert d <= max_r
        assert d >= min(max_r, max(min_r, replicas, claimed + min_idle))
    else:
        assert d == max(min_r, replicas, claimed + min_idle)


@given(n_idle=st.integers(0, 20), n_claimed=st.integers(0, 20), replicas=st.integers(0, 30))
def test_plan_never_deletes_claimed_pods(n_idle: int, n_claimed: int, replicas: int) -> None:
    pods = [pod("Idle", age=10 + i) for i in range(n_idle)] + [pod("Claimed") for _ in range(n_claimed)]
    p = run(spec(replicas=replicas), pods, now=T0 + timedelta(seconds=1))
    claimed_names = {x.name for x in pods if x.claimed}
    assert not claimed_names & {d.pod for d in p.delete}
    assert p.counts.replicas == max(replicas, n_claimed)


def test_a_size_outside_the_bounds_is_clamped_and_the_limit_says_why() -> None:
    gitops = spec(minReplicas=2)  # replicas left out: its default, 1, is below the bound
    assert desired_replicas(gitops, claimed=0) == 2
    assert size_limit(gitops, claimed=0) == (
        "BelowMinReplicas",
        "spec.replicas 1 is below minReplicas 2: running 2",
    )
    over = spec(replicas=9, maxReplicas=4)
    assert desired_replicas(over, claimed=0) == 4
    assert size_limit(over, claimed=0) == (
        "AboveMaxReplicas",
        "spec.replicas 9 is above maxReplicas 4: running 4",
    )
    busy = spec(replicas=2, maxReplicas=4, warm={"minIdle": 2})
    assert size_limit(busy, claimed=3) == (
        "AboveMaxReplicas",
        "3 claimed + warm.minIdle 2 is above maxReplicas 4: running 4",
    )
    assert size_limit(spec(replicas=3, minReplicas=2, maxReplicas=4), claimed=1) is None


def test_times_parsed_from_annotations_are_always_timezone_aware() -> None:
    from datetime import UTC, datetime

    from shoal.times import parse_time

    assert parse_time("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    naive = parse_time("2026-01-01T00:00:00")  # no offset, as an agent might write it
    assert naive is not None and naive.tzinfo is not None and naive == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_time("yesterday") is None and parse_time("") is None
    assert naive < datetime.now(UTC)  # comparable with aware times: no TypeError on a claim
