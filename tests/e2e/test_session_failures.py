"""TrainingSession end to end when things go wrong: a trainer that crashes (restarts with backoff
from its checkpoint, then fails), a deletion, a session no node can take or that is bigger than any
one node. The local kubelet runs each pod's real agent with the bandit double as its trainer, as in
test_session."""

from __future__ import annotations

import pytest

from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, pods_path
from shoal.sessions.steps import PodState
from testbed.kubelet import LocalKubelet
from tests.e2e.conftest import OperatorProcess, session_manifest
from tests.e2e.util import (
    apply,
    checkpoint_steps,
    events_where,
    get_pod,
    kill_trainer,
    phase_is,
    reason_is,
    session,
    status,
    wait_until,
)


def test_a_crashed_trainer_restarts_with_backoff_from_its_checkpoint_then_fails(
    kube: Kube, namespace: str, running_operator: OperatorProcess, local_kubelet: LocalKubelet
) -> None:
    apply(
        session_manifest(
            "flaky",
            checkpointEverySec=1,
            restartPolicy={"backoffLimit": 1, "initialBackoffSeconds": 1, "maxBackoffSeconds": 5},
        ),
        namespace,
    )
    first = wait_until(lambda: phase_is(kube, namespace, "flaky", "Running"), 60, "Running")["podName"]
    wait_until(lambda: status(kube, namespace, "flaky").get("lastCheckpoint"), 60, "a checkpoint recorded")
    kill_trainer(local_kubelet, first)
    second = wait_until(
        lambda: (s := phase_is(kube, namespace, "flaky", "Running")) and s["podName"] != first and s,
        60,
        "restarted",
    )
    assert second["restarts"] == 1 and second["attempts"] == 2
    crashed = local_kubelet.pod(first)
    assert crashed is not None and crashed.proc is not None and crashed.proc.poll() is not None
    pod = kube.get(pods_path(namespace, second["podName"]))
    resume = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}["SHOAL_RESUME_FROM"]
    steps = checkpoint_steps(resume)
    restarting = [
        e["message"]
        for e in events_where(
            kube,
            namespace,
            lambda e: e["reason"] == "Restarting" and e["involvedObject"].get("name") == "flaky",
            "a Restarting event",
        )
    ]
    assert restarting == [f"pod {first} failed; restart 1/1 in 1s from {resume}"], restarting
    # The second pod's own reports (the status may still show the first pod's later, unsaved steps).
    wait_until(
        lambda: (
            int(PodState.of(get_pod(kube, namespace, second["podName"]) or {}).progress.get("timesteps") or 0)
            >= steps
        ),
        60,
        "the second pod training from the checkpoint",
    )
    kill_trainer(local_kubelet, second["podName"])
    failed = wait_until(
        lambda: phase_is(kube, namespace, "flaky", "Failed"), 60, "Failed after the backoff limit"
    )
    assert failed["reason"] == "BackoffLimitExceeded" and failed["attempts"] == 2


def test_deleting_a_session_waits_on_no_finalizer_and_an_earlier_versions_finalizer_comes_off(
    kube: Kube,
    namespace: str,
    running_operator: OperatorProcess,
    local_kubelet: LocalKubelet,
) -> None:
    old = session_manifest("upgraded")
    old["metadata"]["finalizers"] = ["shoal.dev/session-cleanup"]  # what an earlier Shoal put on
    apply(old, namespace)
    apply(session_manifest("doomed"), namespace)
    st = wait_until(lambda: phase_is(kube, namespace, "doomed", "Running"), 60, "Running")
    assert not session(kube, namespace, "doomed")["metadata"].get("finalizers")
    wait_until(
        lambda: not session(kube, namespace, "upgraded")["metadata"].get("finalizers"),
        30,
        "the earlier version's finalizer taken off",
    )
    running_operator.stop()  # nothing waits on the operator: the delete finishes without it
    try:
        kube.delete(custom_path("trainingsessions", namespace, "doomed"))
        with pytest.raises(ApiError) as gone:
            session(kube, namespace, "doomed")
        assert gone.value.not_found  # at once: no finalizer held it
        # Its pod goes by its owner reference (the cluster's garbage collector), not by the operator.
        wait_until(lambda: get_pod(kube, namespace, st["podName"]) is None, 60, "its pod removed")
    finally:
        running_operator.start()


def test_a_session_no_node_can_take_says_so_and_fails_after_its_start_timeout(
    kube: Kube, namespace: str, running_operator: OperatorProcess, local_kubelet: LocalKubelet
) -> None:
    apply(
        session_manifest(
            "nowhere",
            # Affinity is the scheduler's to judge (admission judges nodeSelector and taints itself).
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "shoal.dev/e2e", "operator": "In", "values": ["none"]}
                                ]
                            }
                        ]
                    }
                }
            },
            tolerations=[{"key": "example.com/dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            startTimeoutSeconds=10,
            restartPolicy={"backoffLimit": 0, "initialBackoffSeconds": 1, "maxBackoffSeconds": 1},
        ),
        namespace,
    )
    # The real scheduler's answer, in status while it lasts.
    waiting = wait_until(lambda: reason_is(kube, namespace, "nowhere", "Unschedulable"), 30, "Unschedulable")
    assert (
        waiting["phase"] == "Starting" and "didn't match Pod's node affinity/selector" in waiting["message"]
    ), waiting["message"]
    pod = kube.get(pods_path(namespace, waiting["podName"]))
    assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert {"key": "example.com/dedicated", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"][
        "tolerations"
    ]
    failed = wait_until(lambda: phase_is(kube, namespace, "nowhere", "Failed"), 60, "Failed after 10 s")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert f"pod {waiting['podName']} did not start within 10s: " in failed["message"], failed["message"]


def test_a_session_bigger_than_any_one_node_waits_with_the_reason_though_the_sum_would_fit(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    # The test bed has two nodes of 8 GPUs each: 12 fit the cluster's sum, never one pod.
    apply(session_manifest("wide", resources={"cpu": "1", "memory": "1Gi", "gpu": 12}), namespace)
    waiting = wait_until(lambda: reason_is(kube, namespace, "wide", "NoNodeFits"), 30, "NoNodeFits")
    assert waiting["phase"] == "Pending" and not waiting.get("podName")
    assert "no single node fits the session (closest: kwok-gpu-" in waiting["message"], waiting["message"]
    assert "nvidia.com/gpu" in waiting["message"]
    assert [p for p in kube.list_items(pods_path(namespace))] == []  # no pod that could never run
    apply(session_manifest("picky", nodeSelector={"shoal.dev/e2e": "no-such-node"}), namespace)
    picky = wait_until(lambda: reason_is(kube, namespace, "picky", "NoNodeFits"), 30, "NoNodeFits")
    assert picky["message"] == "no Ready node matches the nodeSelector and tolerations"
