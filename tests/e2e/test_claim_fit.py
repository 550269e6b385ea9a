"""A claim gets only a pod with the devices it asks for, whatever the pool's selection strategy: a
GPU session and a pool of CPU-only pods on the test bed."""

from __future__ import annotations

from typing import Any

from shoal.k8s.client import Kube
from tests.e2e.conftest import OperatorProcess, pool_manifest
from tests.e2e.test_session import reason_is, session_manifest
from tests.e2e.util import apply, is_idle, live_pods, wait_until


def test_a_gpu_session_waits_rather_than_take_a_cpu_only_warm_pod(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(
        pool_manifest("cpus", 2, selection="LeastRecentlyUsed", resources={"cpu": "4", "memory": "8Gi"}),
        namespace,
    )

    def idle() -> list[dict[str, Any]]:
        pods = live_pods(kube, namespace, "shoal.dev/pool=cpus")
        return [p for p in pods if is_idle(p)]

    wait_until(lambda: len(idle()) == 2, 60, "2 idle CPU-only pods")
    resources = {"cpu": "1", "memory": "1Gi", "gpu": 1}
    apply(session_manifest("needs-gpu", poolRef={"name": "cpus"}, resources=resources), namespace)
    st = wait_until(lambda: reason_is(kube, namespace, "needs-gpu", "NoFittingPod"), 60, "NoFittingPod")
    assert st["phase"] == "Pending" and not st.get("podName"), st
    assert "2 idle pod(s), none with the nvidia.com/gpu 1" in st["message"], st
    assert len(idle()) == 2  # both pods still idle: nothing was claimed
