"""TrainingSession end to end. KWOK pods run no processes, so the test plays the in-pod agent:
it answers commands by writing the progress annotation the real agent writes (tests/unit/test_agent.py
runs the real agent and trainer)."""

from __future__ import annotations

import json
from typing import Any

from shoal.k8s.client import ApiError, Kube, custom_path, pods_path
from tests.e2e.conftest import OperatorProcess, pool_manifest
from tests.e2e.util import apply, condition, events_where, live_pods, wait_until


def session_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "TrainingSession",
        "metadata": {"name": name},
        "spec": {
            "game": "CartPole-v1",
            "algorithm": "PPO",
            "totalTimesteps": 100000,
            "image": "registry.example/trainer:1",
            "resources": {"cpu": "1", "memory": "1Gi"},
            "restartPolicy": {"initialBackoffSeconds": 1, "maxBackoffSeconds": 2},
            **spec,
        },
    }


def session(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return kube.get(custom_path("trainingsessions", ns, name))


def status(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return dict(session(kube, ns, name).get("status") or {})


def reason_is(kube: Kube, ns: str, name: str, reason: str) -> dict[str, Any]:
    st = status(kube, ns, name)
    return st if st.get("reason") == reason else {}


def phase_is(kube: Kube, ns: str, name: str, phase: str) -> dict[str, Any]:
    st = status(kube, ns, name)
    return st if st.get("phase") == phase else {}


def get_pod(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    try:
        return kube.get(pods_path(ns, name))
    except ApiError as exc:
        if exc.not_found:
            return None
        raise


def agent_acks(kube: Kube, ns: str, pod: str, timesteps: int) -> dict[str, str]:
    """Wait for a command on the pod, then answer it as shoal-agent would after checkpointing."""

    def command() -> dict[str, str]:
        p = get_pod(kube, ns, pod)
        ann = (p or {}).get("metadata", {}).get("annotations") or {}
        return ann if "shoal.dev/command-id" in ann else {}

    ann = wait_until(command, 30, f"a command on {pod}")
    cid = int(ann["shoal.dev/command-id"])
    progress = {
        "timesteps": timesteps,
        "episodes": timesteps // 100,
        "meanReward": 180.5,
        "loss": 0.01,
        "lastCheckpoint": {
            "path": f"/checkpoints/ckpt-{timesteps:012d}.npz",
            "timesteps": timesteps,
            "commandId": cid,
        },
        "ack": cid,
    }
    kube.merge_patch(
        pods_path(ns, pod), {"metadata": {"annotations": {"shoal.dev/progress": json.dumps(progress)}}}
    )
    return ann


def finish(kube: Kube, ns: str, pod: str) -> None:
    progress = {"timesteps": 100000, "episodes": 1000, "meanReward": 199.0, "done": True, "ack": 0}
    kube.merge_patch(
        pods_path(ns, pod), {"metadata": {"annotations": {"shoal.dev/progress": json.dumps(progress)}}}
    )
    kube.merge_patch(pods_path(ns, pod) + "/status", {"status": {"phase": "Succeeded"}})


def test_gpu_session_gets_a_gpu_pod_service_and_pvc_and_phases_follow_the_pod(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(
        session_manifest(
            "gpu", videoRecording=True, resources={"cpu": "2", "memory": "4Gi", "gpu": 1, "disk": "10Gi"}
        ),
        namespace,
    )
    st = wait_until(lambda: phase_is(kube, namespace, "gpu", "Running"), 60, "session Running")
    pod = kube.get(pods_path(namespace, st["podName"]))
    res = pod["spec"]["containers"][0]["resources"]
    assert res["requests"]["nvidia.com/gpu"] == "1" and res["limits"]["nvidia.com/gpu"] == "1"
    assert res["requests"]["ephemeral-storage"] == "10Gi"
    assert pod["spec"]["nodeName"].startswith("kwok-gpu-")
    svc = kube.get(f"/api/v1/namespaces/{namespace}/services/gpu")
    assert sorted(p["port"] for p in svc["spec"]["ports"]) == [6006, 8000]
    assert st["endpoints"] == {
        "tensorboard": f"http://gpu.{namespace}.svc:6006",
        "video": f"http://gpu.{namespace}.svc:8000/stream",
    }
    pvc = wait_until(
        lambda: (
            (c := kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/gpu-checkpoints"))
            .get("status", {})
            .get("phase")
            == "Bound"
            and c
        ),
        30,
        "checkpoint PVC bound",
    )
    assert pvc["metadata"]["ownerReferences"][0]["name"] == "gpu"
    assert any(
        v.get("persistentVolumeClaim", {}).get("claimName") == "gpu-checkpoints"
        for v in pod["spec"]["volumes"]
    )
    assert condition(session(kube, namespace, "gpu"), "Running")["status"] == "True"

    finish(kube, namespace, st["podName"])
    done = wait_until(lambda: phase_is(kube, namespace, "gpu", "Succeeded"), 30, "session Succeeded")
    assert done["progress"] == "100%" and done["metrics"]["meanReward"] == 199.0 and done.get("endTime")
    events = events_where(
        kube,
        namespace,
        lambda e: (
            e["involvedObject"].get("name") == "gpu"
            and e["involvedObject"].get("kind") == "TrainingSession"
            and e["reason"] == "Succeeded"
        ),
        "the Succeeded event",
    )
    reasons = {
        e["reason"]
        for e in kube.list_items(f"/api/v1/namespaces/{namespace}/events")
        if e["involvedObject"].get("name") == "gpu" and e["involvedObject"].get("kind") == "TrainingSession"
    }
    assert events and {"Starting", "Running", "Succeeded"} <= reasons, reasons


def test_pause_checkpoints_releases_the_pod_and_resume_starts_from_the_checkpoint(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(session_manifest("pausable"), namespace)
    first = wait_until(lambda: phase_is(kube, namespace, "pausable", "Running"), 60, "Running")["podName"]
    kube.merge_patch(custom_path("trainingsessions", namespace, "pausable"), {"spec": {"runState": "Paused"}})
    ann = agent_acks(kube, namespace, first, timesteps=42000)
    assert ann["shoal.dev/command"] == "pause"
    paused = wait_until(lambda: phase_is(kube, namespace, "pausable", "Paused"), 30, "Paused")
    assert paused["lastCheckpoint"] == "/checkpoints/ckpt-000000042000.npz"
    assert paused["metrics"]["timesteps"] == 42000 and paused["progress"] == "42%"
    wait_until(lambda: get_pod(kube, namespace, first) is None, 30, "paused pod gone")

    kube.merge_patch(
        custom_path("trainingsessions", namespace, "pausable"), {"spec": {"runState": "Running"}}
    )
    resumed = wait_until(lambda: phase_is(kube, namespace, "pausable", "Running"), 60, "Running again")
    assert resumed["podName"] != first
    pod = kube.get(pods_path(namespace, resumed["podName"]))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["SHOAL_RESUME_FROM"] == "/checkpoints/ckpt-000000042000.npz"
    assert pod["metadata"]["annotations"]["shoal.dev/resume-from"] == "/checkpoints/ckpt-000000042000.npz"


def test_sessions_queue_on_capacity_and_a_higher_priority_one_preempts(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    kube.create(
        f"/api/v1/namespaces/{namespace}/resourcequotas",
        {"metadata": {"name": "budget"}, "spec": {"hard": {"requests.cpu": "4"}}},
    )
    wait_until(
        lambda: (
            kube.get(f"/api/v1/namespaces/{namespace}/resourcequotas/budget").get("status", {}).get("hard")
        ),
        30,
        "quota status",
    )
    for name in ("a-first", "b-second", "c-third"):
        apply(session_manifest(name, resources={"cpu": "2", "memory": "1Gi"}), namespace)
    wait_until(
        lambda: (
            phase_is(kube, namespace, "a-first", "Running")
            and phase_is(kube, namespace, "b-second", "Running")
        ),
        60,
        "two sessions running",
    )
    queued = wait_until(
        lambda: reason_is(kube, namespace, "c-third", "InsufficientCapacity"), 30, "third queued"
    )
    assert queued["phase"] == "Pending" and "cpu needs 2" in queued["message"]

    finish(kube, namespace, status(kube, namespace, "a-first")["podName"])
    wait_until(lambda: phase_is(kube, namespace, "a-first", "Succeeded"), 30, "first finished")
    wait_until(lambda: phase_is(kube, namespace, "c-third", "Running"), 60, "queued session started")

    apply(session_manifest("vip", priority=100, resources={"cpu": "2", "memory": "1Gi"}), namespace)
    victim = wait_until(
        lambda: next(
            (n for n in ("b-second", "c-third") if status(kube, namespace, n).get("preemptedBy") == "vip"), ""
        ),
        30,
        "a low-priority session chosen to pause",
    )
    agent_acks(kube, namespace, status(kube, namespace, victim)["podName"], timesteps=1000)
    pre = wait_until(lambda: reason_is(kube, namespace, victim, "Preempted"), 30, "preempted")
    assert pre["phase"] == "Pending" and pre["lastCheckpoint"].endswith("ckpt-000000001000.npz")
    wait_until(lambda: phase_is(kube, namespace, "vip", "Running"), 60, "high-priority session running")


def test_pool_ref_binds_to_an_idle_warm_pod_without_creating_a_pod(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("warm", 2, resources={"cpu": "2", "memory": "2Gi"}), namespace)
    wait_until(
        lambda: (
            len(
                [
                    p
                    for p in live_pods(kube, namespace, "shoal.dev/pool=warm")
                    if p["metadata"]["labels"].get("shoal.dev/state") == "Idle"
                ]
            )
            == 2
        ),
        60,
        "2 idle pods",
    )
    before = {p["metadata"]["name"] for p in kube.list_items(pods_path(namespace))}
    apply(session_manifest("quick", poolRef={"name": "warm"}), namespace)
    st = wait_until(lambda: phase_is(kube, namespace, "quick", "Running"), 30, "bound to a warm pod")
    assert st["podName"] in before and st["claimedFromPool"] == "warm"
    pod = kube.get(pods_path(namespace, st["podName"]))
    assert pod["metadata"]["annotations"]["shoal.dev/claimed-by"] == "quick"
    assert json.loads(pod["metadata"]["annotations"]["shoal.dev/session-config"])["game"] == "CartPole-v1"
    wait_until(
        lambda: (
            kube.get(pods_path(namespace, st["podName"]))["metadata"]["labels"]["shoal.dev/state"]
            == "Claimed"
        ),
        30,
        "pod labelled Claimed",
    )
    assert {p["metadata"]["name"] for p in kube.list_items(pods_path(namespace))} == before  # no new pod
    claimed = events_where(kube, namespace, lambda e: e["reason"] == "Claimed", "a Claimed event")
    assert "bound to warm pod" in claimed[0]["message"]

    kube.merge_patch(custom_path("trainingsessions", namespace, "quick"), {"spec": {"runState": "Stopped"}})
    agent_acks(kube, namespace, st["podName"], timesteps=500)
    wait_until(lambda: phase_is(kube, namespace, "quick", "Stopped"), 30, "Stopped")
    wait_until(
        lambda: (
            (p := kube.get(pods_path(namespace, st["podName"])))["metadata"]["labels"]["shoal.dev/state"]
            == "Idle"
            and "shoal.dev/claimed-by" not in p["metadata"]["annotations"]
        ),
        30,
        "pod back in the pool",
    )


def test_failed_pods_restart_with_backoff_from_the_checkpoint_then_fail(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(
        session_manifest(
            "flaky", restartPolicy={"backoffLimit": 1, "initialBackoffSeconds": 1, "maxBackoffSeconds": 5}
        ),
        namespace,
    )
    first = wait_until(lambda: phase_is(kube, namespace, "flaky", "Running"), 60, "Running")["podName"]
    progress = {"timesteps": 7000, "lastCheckpoint": {"path": "/checkpoints/ckpt-000000007000.npz"}, "ack": 0}
    kube.merge_patch(
        pods_path(namespace, first),
        {"metadata": {"annotations": {"shoal.dev/progress": json.dumps(progress)}}},
    )
    wait_until(lambda: status(kube, namespace, "flaky").get("lastCheckpoint"), 30, "checkpoint recorded")
    kube.merge_patch(pods_path(namespace, first) + "/status", {"status": {"phase": "Failed"}})
    second = wait_until(
        lambda: (s := phase_is(kube, namespace, "flaky", "Running")) and s["podName"] != first and s,
        30,
        "restarted",
    )
    assert second["restarts"] == 1
    restarting = [
        e["message"]
        for e in events_where(
            kube,
            namespace,
            lambda e: e["reason"] == "Restarting" and e["involvedObject"].get("name") == "flaky",
            "a Restarting event",
        )
    ]
    assert restarting and "restart 1/1 in 1s from /checkpoints/ckpt-000000007000.npz" in restarting[0], (
        restarting
    )
    pod = kube.get(pods_path(namespace, second["podName"]))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["SHOAL_RESUME_FROM"] == "/checkpoints/ckpt-000000007000.npz"
    kube.merge_patch(pods_path(namespace, second["podName"]) + "/status", {"status": {"phase": "Failed"}})
    failed = wait_until(
        lambda: phase_is(kube, namespace, "flaky", "Failed"), 30, "Failed after the backoff limit"
    )
    assert failed["reason"] == "BackoffLimitExceeded"


def test_deleting_a_session_cleans_up_through_its_finalizer(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(session_manifest("doomed"), namespace)
    st = wait_until(lambda: phase_is(kube, namespace, "doomed", "Running"), 60, "Running")
    assert "shoal.dev/session-cleanup" in session(kube, namespace, "doomed")["metadata"]["finalizers"]
    kube.delete(custom_path("trainingsessions", namespace, "doomed"))

    def gone() -> bool:
        try:
            session(kube, namespace, "doomed")
        except ApiError as exc:
            return exc.not_found
        return False

    wait_until(gone, 30, "session deleted (finalizer removed)")
    wait_until(lambda: get_pod(kube, namespace, st["podName"]) is None, 60, "its pod removed")
