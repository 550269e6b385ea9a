"""One node must take the whole session: the scheduler's rules, without a pod."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shoal.sessions.placement import fitting_node, fitting_nodes, node_free, pod_requests

READY = [{"type": "Ready", "status": "True"}]


def node(
    name: str, gpus: int = 0, cpu: str = "8", labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    alloc = {"cpu": cpu, "memory": "32Gi", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {"conditions": READY, "allocatable": alloc},
    }


def pod(
    on: str, req: dict[str, str], phase: str = "Running", init: dict[str, str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": on, "containers": [{"resources": {"requests": req}}]}
    if init:
        spec["initContainers"] = [{"resources": {"requests": init}}]
    return {"spec": spec, "status": {"phase": phase}}


GPU4 = {"nvidia.com/gpu": Decimal(4), "cpu": Decimal(2)}


def test_four_gpus_need_one_node_with_four_not_four_nodes_with_one() -> None:
    free = node_free([node(f"g{i}", gpus=1) for i in range(4)], [])
    name, why = fitting_node(free, GPU4)
    assert name is None and why == "no single node fits the session (closest: g0, nvidia.com/gpu 3 short)"
    free = node_free([*(node(f"g{i}", gpus=1) for i in range(4)), node("big", gpus=8)], [])
    assert fitting_node(free, GPU4) == ("big", "")


def test_what_the_nodes_pods_request_is_taken_and_ended_pods_are_not() -> None:
    nodes = [node("a", gpus=4)]
    assert fitting_node(node_free(nodes, [pod("a", {"nvidia.com/gpu": "1"})]), GPU4)[0] is None
    assert fitting_node(node_free(nodes, [pod("a", {"nvidia.com/gpu": "1"}, "Succeeded")]), GPU4)[0] == "a"


def test_init_containers_count_as_the_scheduler_counts_them() -> None:
    assert pod_requests(pod("a", {"cpu": "1"}, init={"cpu": "6"})) == {
        "cpu": Decimal(6)
    }  # the larger of the two
    assert pod_requests(pod("a", {"cpu": "1"}, init={"cpu": "500m"})) == {"cpu": Decimal(1)}
    free = node_free([node("a", cpu="8")], [pod("a", {"cpu": "1"}, init={"cpu": "7"})])
    assert fitting_node(free, {"cpu": Decimal(2)})[0] is None


def test_node_selector_taints_and_tolerations() -> None:
    taint = [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}]
    nodes = [node("plain", gpus=4), node("ml", gpus=4, labels={"pool": "ml"}, taints=taint)]
    free = node_free(nodes, [])
    assert fitting_node(free, GPU4, {"pool": "ml"}) == (
        None,
        "no Ready node matches the nodeSelector and tolerations",
    )
    ok = [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
    assert fitting_node(free, GPU4, {"pool": "ml"}, ok) == ("ml", "")
    assert fitting_node(free, GPU4, {"pool": "ml"}, [{"operator": "Exists"}]) == ("ml", "")
    wrong = [{"key": "dedicated", "operator": "Equal", "value": "web"}]
    assert fitting_node(free, GPU4, {"pool": "ml"}, wrong)[0] is None
    prefer = [node("soft", gpus=4, taints=[{"key": "x", "effect": "PreferNoSchedule"}])]
    assert fitting_node(node_free(prefer, []), GPU4)[0] == "soft"  # a preference does not keep it off


def test_not_ready_and_cordoned_nodes_take_nothing() -> None:
    down = node("down", gpus=8)
    down["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert fitting_node(node_free([down, node("cordoned", gpus=8, unschedulable=True)], []), GPU4)[0] is None


class FakeKube:
    """What Capacity reads, counted per path."""

    def __init__(self, nodes: list[dict[str, Any]], sessions: list[dict[str, Any]]) -> None:
        self.data = {"/api/v1/nodes": nodes, "/api/v1/pods": []}
        self.sessions = sessions
        self.quotas: list[dict[str, Any]] = []
        self.calls: dict[str, int] = {}

    def list_items(self, path: str, selector: str | None = None) -> list[dict[str, Any]]:
        self.calls[path] = self.calls.get(path, 0) + 1
        if path.endswith("/trainingsessions"):
            return self.sessions
        if path.endswith("/resourcequotas"):
            return self.quotas
        return list(self.data.get(path, []))


def session(
    name: str, gpus: int, cpu: str = "1", priority: int = 0, workers: int = 1
) -> tuple[dict[str, Any], Any]:
    from shoal.api.session import TrainingSessionSpec

    body = {
        "workers": workers,
        "game": "CartPole-v1",
        "algorithm": "PPO",
        "image": "x",
        "totalTimesteps": 10,
        "resources": {"gpu": gpus, "cpu": cpu},
        "priority": priority,
    }
    obj = {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2026-12-01T00:00:00Z"},
        "spec": body,
    }
    return obj, TrainingSessionSpec.model_validate(body)


def test_admission_needs_one_node_and_shares_one_snapshot_across_sessions() -> None:
    from shoal.config import Settings
    from shoal.reconcile.capacity import Capacity

    clock = [0.0]
    kube = FakeKube([*(node(f"g{i}", gpus=1) for i in range(4)), node("big", gpus=6)], [])
    cap = Capacity(kube, Settings.from_env(), clock=lambda: clock[0])  # type: ignore[arg-type]
    first = cap.verdict(*session("a", 4))
    assert first.admit  # on big
    second = cap.verdict(*session("b", 4))  # big has 2 left after a; the 1-GPU nodes cannot add up
    assert (second.admit, second.reason) == (False, "NoNodeFits"), second
    assert "closest: big, nvidia.com/gpu 2 short" in second.message
    assert cap.verdict(*session("c", 1)).admit  # one of the small nodes
    assert kube.calls["/api/v1/nodes"] == kube.calls["/api/v1/pods"] == 1  # three verdicts, one snapshot
    clock[0] = 2.5
    cap.verdict(*session("d", 1))
    assert kube.calls["/api/v1/nodes"] == 2  # the snapshot expired: read again


def quota(cpu: str, used: str) -> dict[str, Any]:
    return {
        "spec": {"hard": {"requests.cpu": cpu}},
        "status": {"hard": {"requests.cpu": cpu}, "used": {"requests.cpu": used}},
    }


def test_one_namespace_listing_serves_every_pending_session_and_admissions_stay_debited_until_listed() -> (
    None
):
    from shoal.config import Settings
    from shoal.reconcile.capacity import SETTLE_SECONDS, Capacity

    clock = [0.0]
    kube = FakeKube([node("n", gpus=0)], [session(n, 0, cpu="2")[0] for n in "abc"])
    kube.quotas = [quota("4", "0")]
    cap = Capacity(kube, Settings.from_env(), clock=lambda: clock[0])  # type: ignore[arg-type]
    assert cap.verdict(*session("a", 0, cpu="2")).admit
    assert cap.verdict(*session("b", 0, cpu="2")).admit
    third = cap.verdict(*session("c", 0, cpu="2"))
    assert (third.admit, third.reason) == (False, "InsufficientCapacity"), third
    sessions_path = "/apis/shoal.dev/v1alpha1/namespaces/ns/trainingsessions"
    assert kube.calls[sessions_path] == kube.calls["/api/v1/namespaces/ns/resourcequotas"] == 1
    # New lists that do not show a and b yet (their pods on the way, the quota's usage stale): still debited.
    clock[0] = 2.5
    assert not cap.verdict(*session("c", 0, cpu="2")).admit
    assert kube.calls[sessions_path] == 2
    # The lists show a holding its pod and the quota counting it; b's admission came to nothing.
    a, b, c = (session(n, 0, cpu="2")[0] for n in "abc")
    kube.sessions = [{**a, "status": {"phase": "Running", "podName": "a-1"}}, b, c]
    kube.quotas = [quota("4", "2")]
    clock[0] = 2.5 + SETTLE_SECONDS + 1
    # 4 - 2 used: a is not counted twice; b's debit is dropped and b, older than c, goes first again.
    assert not cap.verdict(*session("c", 0, cpu="2")).admit
    assert cap.verdict(*session("b", 0, cpu="2")).admit
    assert set(cap.debits) == {("ns", "b")}


def test_a_victim_asked_to_pause_is_not_chosen_again_while_the_listing_is_stale() -> None:
    from shoal.config import Settings
    from shoal.reconcile.capacity import Capacity

    kube = FakeKube([node("n", gpus=0)], [])
    kube.quotas = [quota("4", "4")]
    low = [session(n, 0, cpu="2")[0] for n in ("low-1", "low-2")]
    kube.sessions = [
        {**o, "status": {"phase": "Running", "podName": f"{o['metadata']['name']}-p"}} for o in low
    ]
    cap = Capacity(kube, Settings.from_env(), clock=lambda: 0.0)  # type: ignore[arg-type]
    first = cap.verdict(*session("vip-1", 0, cpu="2", priority=10))
    assert first.reason == "Preempting" and len(first.preempt) == 1, first
    second = cap.verdict(*session("vip-1", 0, cpu="2", priority=10))  # its next pass, same stale lists
    assert (second.reason, second.preempt) == ("WaitingForPreemption", ()), second


def test_a_gang_fits_only_with_a_node_for_every_worker_counting_what_the_others_took() -> None:
    free = node_free([node("a", gpus=4), node("b", gpus=4), node("c", gpus=2)], [])
    assert fitting_nodes(free, GPU4, 2) == (["a", "b"], "")
    nodes, why = fitting_nodes(free, GPU4, 3)  # c has two GPUs: the third worker fits nowhere
    assert nodes is None and why.startswith("worker 2 of 3: no single node fits")
    two_per_node = {"nvidia.com/gpu": Decimal(2)}
    assert fitting_nodes(free, two_per_node, 5) == (["a", "a", "b", "b", "c"], "")
    assert fitting_nodes(free, two_per_node, 6)[0] is None
    assert free["a"][1]["nvidia.com/gpu"] == 4  # what it was asked about, untouched
    assert fitting_nodes(free, GPU4, 1) == (["a"], "") and fitting_node(free, GPU4) == ("a", "")


def test_a_gang_is_admitted_whole_or_not_at_all_and_preempts_as_one() -> None:
    from shoal.config import Settings
    from shoal.reconcile.capacity import Capacity

    clock = [0.0]
    kube = FakeKube([node(f"g{i}", gpus=2) for i in range(3)], [])
    cap = Capacity(kube, Settings.from_env(), clock=lambda: clock[0])  # type: ignore[arg-type]
    four = cap.verdict(*session("four", 2, workers=4))  # four workers of 2 GPUs: three nodes of 2
    assert (four.admit, four.reason) == (False, "InsufficientCapacity"), four
    assert "nvidia.com/gpu needs 8 (free 6)" in four.message  # weighed as one: all its GPUs together
    three = cap.verdict(*session("three", 2, workers=3))
    assert three.admit  # one worker a node
    assert [sorted(d.nodes) for d in cap.debits.values()] == [["g0", "g1", "g2"]]
    # The gang holds all three nodes now: a single pod waits, and a higher-priority one of two workers
    # pauses the whole gang (the only session holding what it needs), not one of its workers.
    kube.sessions = [
        {**session("three", 2, workers=3)[0], "status": {"phase": "Running", "podName": "three-1"}}
    ]
    kube.data["/api/v1/pods"] = [pod(f"g{i}", {"nvidia.com/gpu": "2", "cpu": "1"}) for i in range(3)]
    clock[0] = 2.5  # the next listings show it and its workers
    alone = cap.verdict(*session("one", 1))
    assert (alone.admit, alone.reason) == (False, "InsufficientCapacity")
    urgent = cap.verdict(*session("urgent", 2, priority=10, workers=2))
    assert (urgent.admit, urgent.preempt) == (False, ("three",)), urgent
