from __future__ import annotations

from decimal import Decimal
from typing import Any

from shoal.sessions.admission import SessionView, backoff_seconds, decide_admission

D = Decimal


def s(
    name: str, cpu: int, priority: int = 0, created: float = 0, gpu: int = 0, preempting: bool = False
) -> SessionView:
    req = {"cpu": D(cpu)}
    if gpu:
        req["nvidia.com/gpu"] = D(gpu)
    return SessionView(name, priority, created, req, preempting)


def test_admits_when_it_fits_and_waits_with_the_shortfall_otherwise() -> None:
    assert decide_admission(s("a", 2), [], [], {"cpu": D(4)}).admit
    v = decide_admission(s("a", 2, gpu=1), [], [], {"cpu": D(4), "nvidia.com/gpu": D(0)})
    assert not v.admit and v.reason == "InsufficientCapacity" and "nvidia.com/gpu needs 1" in v.message


def test_higher_priority_and_older_waiting_sessions_go_first() -> None:
    free = {"cpu": D(2)}
    old, new, vip = s("old", 2, created=1), s("new", 2, created=2), s("vip", 2, priority=5, created=3)
    assert not decide_admission(new, [old], [], free).admit
    assert decide_admission(old, [new], [], free).admit
    assert decide_admission(vip, [old, new], [], free).admit
    assert not decide_admission(old, [vip, new], [], free).admit


def test_small_sessions_backfill_behind_a_big_one() -> None:
    assert decide_admission(s("small", 1, created=2), [s("big", 8, created=1)], [], {"cpu": D(2)}).admit


def test_preempts_lowest_priority_newest_first_only_as_many_as_needed() -> None:
    running = [
        s("low-old", 2, priority=0, created=1),
        s("low-new", 2, priority=0, created=2),
        s("mid", 2, priority=3, created=0),
    ]
    v = decide_admission(s("vip", 2, priority=10), [], running, {"cpu": D(0)})
    assert not v.admit and v.preempt == ("low-new",)
    v = decide_admission(s("vip", 4, priority=10), [], running, {"cpu": D(0)})
    assert v.preempt == ("low-new", "low-old")


def test_never_preempts_equal_or_higher_priority() -> None:
    v = decide_admission(s("a", 2, priority=1), [], [s("b", 2, priority=1)], {"cpu": D(0)})
    assert not v.admit and v.preempt == () and v.reason == "InsufficientCapacity"


def test_sessions_already_pausing_count_as_capacity_on_its_way() -> None:
    v = decide_admission(
        s("vip", 2, priority=10), [], [s("low", 2, preempting=True), s("low2", 2)], {"cpu": D(0)}
    )
    assert v.reason == "WaitingForPreemption" and v.preempt == ()


def test_exponential_backoff_is_capped() -> None:
    assert [backoff_seconds(n, 10, 60) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


def test_quota_headroom_is_the_tightest_quota_less_what_is_used() -> None:
    from decimal import Decimal

    from shoal.reconcile.capacity import INF, quota_headroom

    quotas = [
        {"status": {"hard": {"requests.cpu": "8", "pods": "10"}, "used": {"requests.cpu": "3"}}},
        {"status": {"hard": {"requests.cpu": "4", "limits.cpu": "1"}, "used": {"requests.cpu": "500m"}}},
        {"spec": {"hard": {"requests.nvidia.com/gpu": "2"}}},  # no status yet: nothing used
    ]
    free = quota_headroom(quotas, ["cpu", "memory", "nvidia.com/gpu"])
    assert free == {"cpu": Decimal("3.5"), "memory": INF, "nvidia.com/gpu": Decimal(2)}


def test_node_headroom_counts_ready_schedulable_nodes_less_live_pods_as_the_scheduler_does() -> None:
    from decimal import Decimal

    from shoal.reconcile.capacity import node_headroom
    from shoal.sessions.placement import node_free

    ready: dict[str, Any] = {"conditions": [{"type": "Ready", "status": "True"}]}
    nodes: list[dict[str, Any]] = [
        {"metadata": {"name": "a"}, "status": {**ready, "allocatable": {"cpu": "4", "memory": "8Gi"}}},
        {"metadata": {"name": "b"}, "status": {**ready, "allocatable": {"cpu": "4"}}},
        {
            "metadata": {"name": "c"},
            "status": {**ready, "allocatable": {"cpu": "4"}},
            "spec": {"unschedulable": True},
        },
        {
            "metadata": {"name": "d"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}], "allocatable": {"cpu": "4"}},
        },
    ]

    def pod(node: str | None, cpu: str, phase: str = "Running", init: str | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"containers": [{"resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}
        if node:
            spec["nodeName"] = node
        if init:
            spec["initContainers"] = [{"resources": {"requests": {"cpu": init}}}]
        return {"spec": spec, "status": {"phase": phase}}

    pods = [
        pod("a", "1500m"),
        pod("b", "500m", init="3"),  # its init container needs more than its containers: 3 counts
        pod("a", "2", phase="Succeeded"),  # ended: holds nothing
        pod("c", "2"),  # on a node that is not counted
        pod(None, "1", phase="Pending"),  # not bound yet: it will take its share somewhere
    ]
    # cpu: 8 - 1.5 - 3 - 1 = 2.5; memory: 8Gi less the three live pods' 1Gi on counted nodes or none
    assert node_headroom(node_free(nodes, pods), pods) == {
        "cpu": Decimal("2.5"),
        "memory": Decimal(5 * 2**30),
    }
