"""A paused warm session resumes from its checkpoint on the pod that holds it, and fails visibly
(CheckpointUnreachable) when that pod is gone and its emptyDir with it, instead of training again
from step 0 on another pod. Pods run the real agent with the bandit double (testbed/kubelet.py)."""

from __future__ import annotations

from typing import Any

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, pods_path
from testbed.kubelet import LocalKubelet
from tests.e2e.conftest import OperatorProcess, session_manifest, warm_pool_manifest
from tests.e2e.util import apply, checkpoint_steps, is_idle, live_pods, phase_is, training, wait_until

POOL = "shoal.dev/pool=warm"


def run_state(kube: Kube, ns: str, state: str) -> None:
    kube.merge_patch(custom_path("trainingsessions", ns, "resumable"), {"spec": {"runState": state}})


def test_a_warm_session_resumes_on_the_pod_with_its_checkpoint_and_fails_visibly_without_it(
    kube: Kube, namespace: str, running_operator: OperatorProcess, local_kubelet: LocalKubelet
) -> None:
    manifest = warm_pool_manifest("warm", 2, resources={"cpu": "1", "memory": "1Gi"})
    apply(manifest, namespace)  # sessionAgent {}: checkpoints in each pod's emptyDir

    def idle() -> list[str]:
        names = [p["metadata"]["name"] for p in live_pods(kube, namespace, POOL) if is_idle(p)]
        return names if len(names) == 2 else []

    wait_until(idle, 60, "2 idle pods")
    apply(session_manifest("resumable", poolRef={"name": "warm"}), namespace)
    first = wait_until(lambda: training(kube, namespace, "resumable"), 60, "training on a warm pod")
    holder = first["podName"]

    def paused() -> dict[str, Any]:
        st = phase_is(kube, namespace, "resumable", "Paused")
        pod = kube.get(pods_path(namespace, holder))
        return st if st and is_idle(pod) else {}

    run_state(kube, namespace, "Paused")
    st = wait_until(paused, 60, "paused, its pod back in the pool")
    steps = checkpoint_steps(st["lastCheckpoint"])

    # Resumed while its pod is idle: the pool's other pod cannot read that checkpoint, this one can.
    run_state(kube, namespace, "Running")
    again = wait_until(lambda: training(kube, namespace, "resumable", steps), 60, "training resumed")
    assert again["podName"] == holder, (again["podName"], holder)  # only its own pod could have served
    run_state(kube, namespace, "Paused")
    st = wait_until(paused, 60, "paused again")

    # Its pod deleted (an eviction, a node lost): the checkpoint went with the emptyDir.
    kube.delete(pods_path(namespace, holder))
    wait_until(lambda: holder not in idle(), 60, "the pool's replacement pod idle")
    run_state(kube, namespace, "Running")
    failed = wait_until(lambda: phase_is(kube, namespace, "resumable", "Failed"), 60, "failed visibly")
    assert failed["reason"] == "CheckpointUnreachable", failed
    assert st["lastCheckpoint"] in failed["message"] and "checkpointClaimName" in failed["message"]
    assert int((failed.get("metrics") or {}).get("timesteps") or 0) >= steps  # never reported a fresh 0
    # The pod it tried is back in the pool, clean, for the next session.
    wait_until(lambda: len(idle()) == 2, 60, "both pods idle again")
