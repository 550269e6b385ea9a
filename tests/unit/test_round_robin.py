"""RoundRobin on the data production supplies: the real claim path (reconcile.claimer.Claimer) against
an in-memory API that applies its merge patches, pods built by the pool's own builder. The cursor is
never handed in: it comes from the pods' last-claimed times, so a new operator process goes on where
the last one stopped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shoal.api.pool import ContainerPoolSpec
from shoal.api.session import TrainingSessionSpec
from shoal.builders.pod import build_pod, template_hash
from shoal.builders.session import signature
from shoal.config import Settings
from shoal.k8s.client import ApiError
from shoal.pool.claims import SESSION, Holder
from shoal.reconcile.claimer import Claimer
from tests.unit.podfactory import apply_merge_patch

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
POOL = {
    "replicas": 4,
    "selection": "RoundRobin",
    "template": {"spec": {"containers": [{"name": "w", "image": "w:1"}]}},
    "resources": {"cpu": "2", "memory": "2Gi"},
    "sessionAgent": {},
}


class Api:
    """Pods and one pool, with merge patches and resourceVersion conflicts as the API server has them."""

    def __init__(self) -> None:
        spec = ContainerPoolSpec.model_validate(POOL)
        self.pool = {"metadata": {"name": "rr", "namespace": "ns", "uid": "pool-uid"}, "spec": POOL}
        self.pods: dict[str, dict[str, Any]] = {}
        for i, letter in enumerate("dcba"):  # created in reverse: name order is not creation order
            pod = build_pod("rr", "pool-uid", spec, template_hash(spec), name=f"rr-{letter}")
            pod["metadata"].update(
                namespace="ns",
                uid=f"uid-{letter}",
                resourceVersion="1",
                creationTimestamp=(T0 - timedelta(minutes=10 - i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            pod["metadata"]["labels"]["shoal.dev/state"] = "Idle"
            pod["metadata"]["ownerReferences"][0]["uid"] = "pool-uid"
            ready = (T0 - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
            pod["status"] = {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready}],
            }
            pod["spec"]["nodeName"] = "node-1"
            self.pods[pod["metadata"]["name"]] = pod

    def get_if_exists(self, path: str) -> dict[str, Any] | None:
        if path.endswith("/containerpools/rr"):
            return self.pool
        return self.pods.get(path.rsplit("/", 1)[1]) if "/pods/" in path else None

    def list_items(self, path: str, selector: str | None = None) -> list[dict[str, Any]]:
        return [p for p in self.pods.values() if p["metadata"]["labels"].get("shoal.dev/pool") == "rr"]

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        pod = self.pods[path.rsplit("/", 1)[1]]
        meta = patch.get("metadata") or {}
        if "resourceVersion" in meta and meta["resourceVersion"] != pod["metadata"]["resourceVersion"]:
            raise ApiError(409, "conflict", "Conflict")
        body = {**patch, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
        apply_merge_patch(pod, body)
        pod["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1)
        return pod

    def merge_patch_if_exists(self, path: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        return self.merge_patch(path, patch)


SPEC = TrainingSessionSpec.model_validate(
    {"game": "CartPole-v1", "algorithm": "PPO", "totalTimesteps": 10, "poolRef": {"name": "rr"}}
)


def claim_and_release(claimer: Claimer, session: str, when: datetime) -> str:
    out = claimer.claim_session("ns", session, SPEC, None, 0.0, when)
    assert out.pod is not None, out
    assert claimer.release(
        "ns", out.pod, Holder(SESSION, session), signature(SPEC), when + timedelta(seconds=5)
    )
    return out.pod


def test_round_robin_rotates_through_the_pool_by_name_and_goes_on_after_a_restart() -> None:
    api = Api()
    first = Claimer(api, Settings())  # type: ignore[arg-type]
    picked = [claim_and_release(first, f"s{i}", T0 + timedelta(minutes=i)) for i in range(6)]
    assert picked == ["rr-a", "rr-b", "rr-c", "rr-d", "rr-a", "rr-b"]
    # A new process: nothing in memory, the cursor read back from the pods.
    restarted = Claimer(api, Settings())  # type: ignore[arg-type]
    assert claim_and_release(restarted, "s6", T0 + timedelta(minutes=6)) == "rr-c"


def test_round_robin_skips_a_claimed_pod_and_wraps() -> None:
    api = Api()
    claimer = Claimer(api, Settings())  # type: ignore[arg-type]
    held = claimer.claim_session("ns", "long", SPEC, None, 0.0, T0)
    assert held.pod == "rr-a"
    picked = [claim_and_release(claimer, f"s{i}", T0 + timedelta(minutes=1 + i)) for i in range(4)]
    assert picked == ["rr-b", "rr-c", "rr-d", "rr-b"]  # rr-a is held throughout


def test_a_gpu_session_is_not_handed_a_cpu_only_pod_and_says_why() -> None:
    api = Api()
    gpu_spec = SPEC.model_copy(update={"resources": SPEC.resources.model_copy(update={"gpu": 1})})
    out = Claimer(api, Settings()).claim_session("ns", "gpu-job", gpu_spec, None, 0.0, T0)  # type: ignore[arg-type]
    assert (out.pod, out.reason) == (None, "ResourcesUnfit")
    assert (
        out.message
        and "spec.resources asks for nvidia.com/gpu 1; its pods have nvidia.com/gpu none" in out.message
    )
    assert not any(p["metadata"]["annotations"].get("shoal.dev/claimed-by") for p in api.pods.values())
