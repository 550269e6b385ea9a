"""TrainingSession end to end. The test bed's local kubelet runs each session pod's real agent as a
local process with the pod's credentials (testbed/kubelet.py); its trainer is the bandit double
(tests/doubles/bandit.py), which keeps the trainer protocol. tests/e2e/test_agent_pod.py runs the
real SB3 trainer the same way."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, kind_path, pods_path
from shoal.vocab import ANN_PROGRESS
from testbed.kubelet import LocalKubelet
from tests.doubles.bandit import best_arm_mean
from tests.e2e.conftest import OperatorProcess, session_manifest, warm_pool_manifest
from tests.e2e.util import (
    apply,
    checkpoint_steps,
    condition,
    events_where,
    get_pod,
    is_idle,
    live_pods,
    phase_is,
    reason_is,
    session,
    status,
    trainers,
    training,
    wait_until,
)


def test_gpu_session_gets_a_gpu_pod_service_and_pvc_and_phases_follow_the_pod(
    kube: Kube,
    namespace: str,
    running_operator: OperatorProcess,
    local_kubelet: LocalKubelet,
) -> None:
    apply(
        session_manifest(
            "gpu",
            videoRecording=True,
            resources={"cpu": "2", "memory": "4Gi", "gpu": 1, "gpuMemory": "8Gi", "disk": "10Gi"},
            totalTimesteps=16000,  # about 10 s at the bandit's pace: long enough to see it Running
            vecEnvs=8,
        ),
        namespace,
    )
    st = wait_until(lambda: phase_is(kube, namespace, "gpu", "Running"), 60, "session Running")
    assert condition(session(kube, namespace, "gpu"), "Running")["status"] == "True"
    pod = kube.get(pods_path(namespace, st["podName"]))
    res = pod["spec"]["containers"][0]["resources"]
    assert res["requests"]["nvidia.com/gpu"] == "1" and res["limits"]["nvidia.com/gpu"] == "1"
    assert res["requests"]["ephemeral-storage"] == "10Gi"
    assert pod["spec"]["nodeName"].startswith("kwok-gpu-")
    assert kube.get_if_exists(kind_path("NetworkPolicy", namespace, "gpu-endpoints")) is None  # not asked for
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

    # The agent's trainer runs to totalTimesteps and exits 0: the pod Succeeds, and so does the session.
    done = wait_until(lambda: phase_is(kube, namespace, "gpu", "Succeeded"), 120, "session Succeeded")
    assert done["progress"] == "100%" and done.get("endTime")
    assert done["metrics"]["timesteps"] >= 16000 and isinstance(done["metrics"]["meanReward"], float)
    assert checkpoint_steps(done["lastCheckpoint"]) == done["metrics"]["timesteps"]  # saved at the end
    wait_until(  # kept for its logs; its phase follows the agent's own exit
        lambda: kube.get(pods_path(namespace, st["podName"]))["status"]["phase"] == "Succeeded",
        30,
        "the pod Succeeded",
    )
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
    # The test bed has no GPU and its trainer double reports the CPU; this operator has no GPU-memory
    # resource. Both are said in a condition and one Warning Event each, however many status writes.
    final = session(kube, namespace, "gpu")
    gpu, mem = condition(final, "GpuInUse"), condition(final, "GpuMemoryEnforced")
    assert (gpu["status"], gpu["reason"]) == ("False", "TrainingOnCpu"), gpu
    assert (mem["status"], mem["reason"]) == ("False", "NoGpuMemoryResource"), mem
    assert "nvidia.com/gpumem" not in json.dumps(res)  # not requested as anything: flagged instead
    # Only these two: a slow start on a loaded machine may add a Warning of its own ("Starting").
    warnings = [
        e["reason"]
        for e in kube.list_items(f"/api/v1/namespaces/{namespace}/events")
        if e["involvedObject"].get("name") == "gpu"
        and e["type"] == "Warning"
        and e["reason"] in ("NoGpuMemoryResource", "TrainingOnCpu")
    ]
    assert sorted(warnings) == ["NoGpuMemoryResource", "TrainingOnCpu"], warnings


def test_pause_checkpoints_releases_the_pod_and_resume_starts_from_the_checkpoint(
    kube: Kube,
    namespace: str,
    running_operator: OperatorProcess,
    local_kubelet: LocalKubelet,
) -> None:
    apply(session_manifest("pausable"), namespace)
    first = wait_until(lambda: phase_is(kube, namespace, "pausable", "Running"), 60, "Running")["podName"]
    before = wait_until(lambda: training(kube, namespace, "pausable"), 60, "the agent's first reports")
    kube.merge_patch(custom_path("trainingsessions", namespace, "pausable"), {"spec": {"runState": "Paused"}})
    paused = wait_until(lambda: phase_is(kube, namespace, "pausable", "Paused"), 60, "Paused on the ack")
    assert "checkpoint acknowledged" in paused["message"]
    steps = checkpoint_steps(paused["lastCheckpoint"])  # the trainer's own save, on the pause
    assert steps >= before["metrics"]["timesteps"] and paused["metrics"]["timesteps"] == steps
    assert paused["progress"] == f"{steps * 100 // 100000}%"
    wait_until(lambda: get_pod(kube, namespace, first) is None, 30, "paused pod gone")
    agent = local_kubelet.pod(first)
    assert agent is not None
    verbs = [
        json.loads(x)["verb"] for x in (agent.mounts["/shoal"] / "commands.jsonl").read_text().splitlines()
    ]
    assert verbs == ["pause"]

    kube.merge_patch(
        custom_path("trainingsessions", namespace, "pausable"), {"spec": {"runState": "Running"}}
    )
    resumed = wait_until(lambda: phase_is(kube, namespace, "pausable", "Running"), 60, "Running again")
    assert resumed["podName"] != first
    pod = kube.get(pods_path(namespace, resumed["podName"]))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["SHOAL_RESUME_FROM"] == paused["lastCheckpoint"]
    assert pod["metadata"]["annotations"]["shoal.dev/resume-from"] == paused["lastCheckpoint"]
    # The new pod's trainer loaded that checkpoint: its first report continues from it, not from 0.
    later = wait_until(lambda: training(kube, namespace, "pausable", steps), 60, "training resumed")
    assert later["podName"] == resumed["podName"]
    second = local_kubelet.pod(resumed["podName"])
    assert second is not None and f"at {steps} timesteps" in second.output()


def test_sessions_queue_on_capacity_and_a_higher_priority_one_preempts(
    kube: Kube,
    namespace: str,
    running_operator: OperatorProcess,
    local_kubelet: LocalKubelet,
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

    kube.merge_patch(custom_path("trainingsessions", namespace, "a-first"), {"spec": {"runState": "Stopped"}})
    wait_until(lambda: phase_is(kube, namespace, "a-first", "Stopped"), 60, "first stopped")
    wait_until(lambda: phase_is(kube, namespace, "c-third", "Running"), 60, "queued session started")

    apply(session_manifest("vip", priority=100, resources={"cpu": "2", "memory": "1Gi"}), namespace)
    victim = wait_until(
        lambda: next(
            (n for n in ("b-second", "c-third") if status(kube, namespace, n).get("preemptedBy") == "vip"), ""
        ),
        90,  # a fresh CI machine under the whole suite once took over 30 s here
        "a low-priority session chosen to pause",
    )
    pre = wait_until(lambda: reason_is(kube, namespace, victim, "Preempted"), 60, "preempted")
    assert pre["phase"] == "Pending" and checkpoint_steps(pre["lastCheckpoint"]) > 0  # its agent's save
    wait_until(lambda: phase_is(kube, namespace, "vip", "Running"), 60, "high-priority session running")


def test_a_warm_pod_trains_the_session_that_claims_it_and_returns_to_the_pool_clean(
    kube: Kube, namespace: str, running_operator: OperatorProcess, local_kubelet: LocalKubelet
) -> None:
    from tests.e2e.util import kube_as

    manifest = warm_pool_manifest("warm", 2, resources={"cpu": "2", "memory": "2Gi"})
    apply(manifest, namespace)

    def idle() -> list[str]:
        pods = live_pods(kube, namespace, "shoal.dev/pool=warm")
        names = [p["metadata"]["name"] for p in pods if is_idle(p)]
        return names if len(names) == 2 else []

    warm = wait_until(idle, 60, "2 idle pods")

    def waiting(name: str) -> bool:
        agent = local_kubelet.pod(name)
        return agent is not None and "waiting for a session to claim" in agent.output()

    for name in warm:  # each pod's agent runs, with no config, waiting to be claimed
        wait_until(partial(waiting, name), 60, f"the agent of {name} waiting")
        pod = kube.get(pods_path(namespace, name))
        account = kube.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")
        assert pod["spec"]["serviceAccountName"] == name
        assert [o["uid"] for o in account["metadata"]["ownerReferences"]] == [pod["metadata"]["uid"]]
    before = {p["metadata"]["name"] for p in kube.list_items(pods_path(namespace))}
    standby = {
        name: wait_until(partial(trainers, local_kubelet, name), 30, "a trainer in standby") for name in warm
    }

    # Its env reaches the trainer with the claim: the double seeds its arms from SHOAL_GAME.
    env = [{"name": "SHOAL_GAME", "value": "bandit-from-env"}]
    checkpoint = {"ackDeadlineSeconds": 600}
    apply(session_manifest("quick", poolRef={"name": "warm"}, checkpoint=checkpoint, env=env), namespace)
    st = wait_until(lambda: phase_is(kube, namespace, "quick", "Running"), 30, "bound to a warm pod")
    assert st["podName"] in warm and st["claimedFromPool"] == "warm"
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
    claimed = events_where(
        kube, namespace, lambda e: e["reason"] == "Running", "the bind's Event (its phase change)"
    )
    assert len(claimed) == 1 and "bound to warm pod" in claimed[0]["message"]

    # The agent in the warm pod heard the claim, trains with the session's config and reports.
    trained = wait_until(lambda: training(kube, namespace, "quick"), 60, "the warm pod's agent training")
    assert trained["podName"] == st["podName"]
    # The one in standby since before the claim forked the session's trainer: no new interpreter.
    assert trainers(local_kubelet, st["podName"]) == standby[st["podName"]]
    assert len(psutil.Process(standby[st["podName"]][0]).children()) == 1
    progress = json.loads(
        kube.get(pods_path(namespace, st["podName"]))["metadata"]["annotations"][ANN_PROGRESS]
    )
    assert progress["bestArmMean"] == best_arm_mean("bandit-from-env") != best_arm_mean("CartPole-v1")
    assert {p["metadata"]["name"] for p in kube.list_items(pods_path(namespace))} == before  # no new pod
    svc = kube.get(f"/api/v1/namespaces/{namespace}/services/quick")
    assert svc["spec"]["selector"] == {"shoal.dev/session": "quick"}
    assert svc["spec"]["clusterIP"] == "None"  # headless: no address allocated per session
    agent = local_kubelet.pod(st["podName"])
    assert agent is not None
    as_agent = kube_as(str(agent.kubeconfig))
    assert as_agent.get(pods_path(namespace, st["podName"]))["metadata"]["name"] == st["podName"]
    sibling = next(n for n in warm if n != st["podName"])
    try:
        as_agent.get(pods_path(namespace, sibling))
        raise AssertionError("a warm pod's agent read its sibling")
    except ApiError as exc:
        assert exc.status == 403

    # Stopped: the agent acknowledges at once (not after the 600 s deadline) and the pod goes back.
    kube.merge_patch(custom_path("trainingsessions", namespace, "quick"), {"spec": {"runState": "Stopped"}})
    stopped = wait_until(lambda: phase_is(kube, namespace, "quick", "Stopped"), 60, "Stopped on the ack")
    assert "checkpoint acknowledged" in stopped["message"]
    checkpoint_steps(stopped["lastCheckpoint"])
    assert Path(stopped["lastCheckpoint"]).parent == agent.mounts["/checkpoints"] / "quick"  # its own folder

    def back() -> dict[str, Any]:
        p = kube.get(pods_path(namespace, st["podName"]))
        return p if is_idle(p) else {}

    returned = wait_until(back, 30, "pod back in the pool")
    left = set(returned["metadata"].get("annotations") or {}) & {
        "shoal.dev/claimed-by",
        "shoal.dev/session-config",
        "shoal.dev/command",
        "shoal.dev/command-id",
        "shoal.dev/progress",
    }
    assert not left and "shoal.dev/session" not in returned["metadata"]["labels"], left
    assert agent.proc is not None and agent.proc.poll() is None  # waiting for the next claim
    wait_until(lambda: "released by its session" in agent.output(), 30, "the agent saw the release")

    # Deleted while it trains: no finalizer, so the session is gone at once and its pool gives the
    # claim back (woken by the deletion), remembering the job it ran for Affinity.
    apply(session_manifest("deleted", game="Acrobot-v1", poolRef={"name": "warm"}), namespace)
    again = wait_until(lambda: phase_is(kube, namespace, "deleted", "Running"), 30, "bound again")
    wait_until(lambda: training(kube, namespace, "deleted"), 60, "training again")
    kube.delete(custom_path("trainingsessions", namespace, "deleted"))

    def released() -> dict[str, Any]:
        p = kube.get(pods_path(namespace, again["podName"]))
        return p if is_idle(p) else {}

    freed = wait_until(released, 30, "the deleted session's pod back in the pool")
    assert (
        freed["metadata"]["annotations"]["shoal.dev/last-signature"]
        == '{"algorithm":"PPO","game":"Acrobot-v1"}'
    )
    assert "shoal.dev/claimed-by" not in freed["metadata"]["annotations"]


def test_a_checkpoint_on_demand_is_answered_in_status_and_an_immediate_stop_takes_none(
    kube: Kube, namespace: str, running_operator: OperatorProcess, local_kubelet: LocalKubelet
) -> None:
    path = custom_path("trainingsessions", namespace, "ondemand")
    apply(session_manifest("ondemand", checkpoint={"ackDeadlineSeconds": 600}), namespace)
    pod_name = wait_until(lambda: phase_is(kube, namespace, "ondemand", "Running"), 60, "Running")["podName"]
    wait_until(lambda: training(kube, namespace, "ondemand"), 60, "training")
    kube.merge_patch(path, {"spec": {"checkpointRequest": 1}})

    def answered() -> dict[str, Any]:
        st = status(kube, namespace, "ondemand")
        return st if st.get("checkpointRequestServed") == 1 else {}

    served = wait_until(answered, 60, "the request answered")
    assert served["phase"] == "Running" and served.get("command") is None
    assert checkpoint_steps(served["lastCheckpoint"]) > 0 and served["lastCheckpointTime"]
    events_where(
        kube,
        namespace,
        lambda e: e["reason"] == "Checkpointed" and served["lastCheckpoint"] in e["message"],
        "a Checkpointed event naming the checkpoint",
    )
    agent = local_kubelet.pod(pod_name)
    assert agent is not None and agent.proc is not None and agent.proc.poll() is None  # still training

    def verbs() -> list[str]:
        assert agent is not None
        log = (agent.mounts["/shoal"] / "commands.jsonl").read_text().splitlines()
        return [json.loads(line)["verb"] for line in log]

    assert verbs() == ["checkpoint"]

    def saved() -> list[str]:
        assert agent is not None
        return sorted(str(p) for p in agent.mounts["/checkpoints"].rglob("*") if p.is_file())

    before = saved()
    kube.merge_patch(path, {"spec": {"runState": "Stopped", "stopMode": "Immediate"}})
    stopped = wait_until(lambda: phase_is(kube, namespace, "ondemand", "Stopped"), 30, "Stopped at once")
    assert "without a checkpoint" in stopped["message"], stopped["message"]
    assert stopped["lastCheckpoint"] == served["lastCheckpoint"]
    wait_until(lambda: get_pod(kube, namespace, pod_name) is None, 30, "the pod deleted")
    wait_until(lambda: agent.proc is not None and agent.proc.poll() is not None, 30, "the agent gone")
    # The deletion's SIGTERM met the kill command: the trainer was killed, not told to checkpoint and
    # exit, so the checkpoint status names is still the newest on the volume.
    assert verbs() == ["checkpoint", "kill"]
    assert saved() == before


def test_a_spec_edit_under_a_running_pod_restarts_it_from_a_checkpoint_with_the_new_spec(
    kube: Kube, namespace: str, running_operator: OperatorProcess, local_kubelet: LocalKubelet
) -> None:
    apply(session_manifest("edited", learningRate=0.05), namespace)
    first = wait_until(lambda: phase_is(kube, namespace, "edited", "Running"), 60, "Running")["podName"]
    wait_until(lambda: training(kube, namespace, "edited"), 60, "training")
    kube.merge_patch(custom_path("trainingsessions", namespace, "edited"), {"spec": {"learningRate": 0.2}})
    st = wait_until(
        lambda: (s := phase_is(kube, namespace, "edited", "Running")) and s["podName"] != first and s,
        60,
        "a new pod with the new spec",
    )
    assert st["attempts"] == 2 and st.get("restarts", 0) == 0  # not counted as a failure
    config = kube.get(f"/api/v1/namespaces/{namespace}/configmaps/edited-config")
    assert json.loads(config["data"]["config.json"])["learningRate"] == 0.2
    pod = kube.get(pods_path(namespace, st["podName"]))
    resume = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}["SHOAL_RESUME_FROM"]
    steps = checkpoint_steps(resume)  # the old pod's checkpoint, taken for the edit
    changed = events_where(
        kube, namespace, lambda e: e["reason"] == "SpecChanged", "a SpecChanged event naming the checkpoint"
    )
    assert resume in changed[0]["message"]
    first_agent = local_kubelet.pod(first)
    assert first_agent is not None
    log = (first_agent.mounts["/shoal"] / "commands.jsonl").read_text().splitlines()
    assert [json.loads(x)["verb"] for x in log] == ["pause"]
    wait_until(lambda: training(kube, namespace, "edited", steps), 60, "training on from the checkpoint")
