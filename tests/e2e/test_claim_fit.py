"""A warm session gets only a pod that can run it, whatever the pool's selection strategy: one that
asks for a GPU, more memory than the pods have, or another image is refused at once with the reason
in its Admitted condition, claims nothing and does not make the pool grow; fixed, it binds."""

from __future__ import annotations

from functools import partial
from typing import Any

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path
from tests.e2e.conftest import OperatorProcess, pool_manifest, session_manifest
from tests.e2e.util import apply, condition, is_idle, live_pods, reason_is, status, wait_until


def test_a_warm_session_its_pool_cannot_serve_says_why_and_claims_nothing(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    resources = {"cpu": "4", "memory": "8Gi"}
    apply(
        pool_manifest("cpus", 2, selection="LeastRecentlyUsed", resources=resources, sessionAgent={}),
        namespace,
    )

    def idle() -> list[dict[str, Any]]:
        pods = live_pods(kube, namespace, "shoal.dev/pool=cpus")
        return [p for p in pods if is_idle(p)]

    wait_until(lambda: len(idle()) == 2, 60, "2 idle CPU-only pods")
    refused: dict[str, tuple[dict[str, Any], str, str]] = {
        "needs-gpu": (
            {"resources": {"cpu": "1", "gpu": 1}},
            "ResourcesUnfit",
            "nvidia.com/gpu 1; its pods have",
        ),
        "needs-memory": (
            {"resources": {"memory": "16Gi"}},
            "ResourcesUnfit",
            "memory 16Gi; its pods have memory 8Gi",
        ),
        "other-image": ({"image": "registry.example/other:2"}, "ImageMismatch", "registry.example/worker:1"),
    }
    for name, (spec, _, _) in refused.items():
        apply(session_manifest(name, poolRef={"name": "cpus"}, **spec), namespace)
    for name, (_, reason, fragment) in refused.items():
        st = wait_until(partial(reason_is, kube, namespace, name, reason), 60, f"{name}: {reason}")
        assert st["phase"] == "Pending" and not st.get("podName"), st
        admitted = condition({"status": st}, "Admitted")
        assert (admitted["status"], admitted["reason"]) == ("False", reason), admitted
        assert fragment in admitted["message"], admitted
    assert len(idle()) == 2  # both pods still idle: nothing was claimed
    assert len(live_pods(kube, namespace, "shoal.dev/pool=cpus")) == 2  # and the pool did not grow for them

    # The image dropped: the pool's own is used, and the session binds.
    kube.merge_patch(custom_path("trainingsessions", namespace, "other-image"), {"spec": {"image": None}})
    bound = wait_until(lambda: status(kube, namespace, "other-image").get("podName"), 30, "other-image bound")
    assert bound in {p["metadata"]["name"] for p in live_pods(kube, namespace, "shoal.dev/pool=cpus")}
