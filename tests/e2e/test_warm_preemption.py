"""Warm sessions go through admission at their pool: at maxReplicas a higher-priority session pauses
a lower one (checkpoint first) and takes its pod; the paused one waits for that pod, which holds its
checkpoint, and resumes from it when the pod comes back. Real agents with the bandit double."""

from __future__ import annotations

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path
from testbed.kubelet import LocalKubelet
from tests.e2e.conftest import OperatorProcess, session_manifest, warm_pool_manifest
from tests.e2e.util import (
    apply,
    checkpoint_steps,
    events_where,
    is_idle,
    live_pods,
    phase_is,
    reason_is,
    status,
    training,
    wait_until,
)


def test_a_high_priority_warm_session_preempts_a_running_one_at_a_full_pool(
    kube: Kube, namespace: str, running_operator: OperatorProcess, local_kubelet: LocalKubelet
) -> None:
    manifest = warm_pool_manifest("one", 1, maxReplicas=1, resources={"cpu": "1", "memory": "1Gi"})
    apply(manifest, namespace)
    wait_until(
        lambda: [p for p in live_pods(kube, namespace, "shoal.dev/pool=one") if is_idle(p)], 60, "idle pod"
    )
    apply(session_manifest("low", poolRef={"name": "one"}), namespace)
    low = wait_until(lambda: training(kube, namespace, "low"), 60, "low training")
    pod = low["podName"]

    apply(session_manifest("vip", poolRef={"name": "one"}, priority=100), namespace)
    pre = wait_until(lambda: reason_is(kube, namespace, "low", "Preempted"), 60, "low preempted")
    assert pre["phase"] == "Pending" and "paused for vip" in pre["message"], pre
    steps = checkpoint_steps(pre["lastCheckpoint"])  # checkpointed on the way out
    vip = wait_until(lambda: training(kube, namespace, "vip"), 60, "vip training on the pod")
    assert vip["podName"] == pod
    events_where(
        kube, namespace, lambda e: e["reason"] == "Preempting" and "low" in e["message"], "Preempting"
    )

    # The pool is full, vip outranks it: low waits, saying so, and holds no pod.
    def waiting() -> dict[str, str]:
        st = status(kube, namespace, "low")
        return st if "waiting: the pool is at maxReplicas" in st.get("message", "") else {}

    waits = wait_until(waiting, 30, "low waiting its turn")
    assert waits["phase"] == "Pending" and not waits.get("podName"), waits

    kube.merge_patch(custom_path("trainingsessions", namespace, "vip"), {"spec": {"runState": "Stopped"}})
    wait_until(lambda: phase_is(kube, namespace, "vip", "Stopped"), 60, "vip stopped")
    back = wait_until(lambda: training(kube, namespace, "low", steps), 60, "low resumed from its checkpoint")
    assert back["podName"] == pod
