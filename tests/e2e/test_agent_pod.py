"""The in-pod agent as a real local process for a KWOK pod, with that pod's own credentials
(testbed/localpod.py plays the kubelet): real training reaches status, commands arrive through the
agent's watch on its pod, a bad config fails the session, and the agent can touch nothing else."""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, pods_path
from testbed.localpod import LocalPod
from tests.e2e.conftest import OperatorProcess, session_manifest
from tests.e2e.util import apply, events_where, kube_as, phase_is, sample, status, wait_until


@pytest.fixture
def local_pods() -> Iterator[list[LocalPod]]:
    pods: list[LocalPod] = []
    yield pods
    for pod in pods:
        pod.stop()


RECONCILES = 'shoal_reconcile_duration_seconds_count{kind="TrainingSession"}'


def agent_metrics(pod: LocalPod) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{pod.ports['metrics']}/metrics", timeout=5) as r:
        return str(r.read().decode())


def test_a_session_trains_for_real_and_pauses_on_the_agents_acknowledgement(
    kube: Kube, namespace: str, running_operator: OperatorProcess, local_pods: list[LocalPod]
) -> None:
    apply(
        session_manifest("cartpole", totalTimesteps=10**7, checkpoint={"ackDeadlineSeconds": 900}), namespace
    )
    pod_name = wait_until(lambda: phase_is(kube, namespace, "cartpole", "Running"), 60, "Running")["podName"]
    agent = LocalPod(kube, namespace, pod_name).start()  # the real agent and its SB3 trainer
    local_pods.append(agent)

    def trained() -> dict[str, Any]:
        m = status(kube, namespace, "cartpole").get("metrics") or {}
        return m if m.get("fps") and m.get("meanReward") is not None else {}

    metrics = wait_until(trained, 180, f"training metrics in status (agent: {agent.output()[-2000:]})")
    assert metrics["timesteps"] > 0 and metrics["episodes"] > 0 and metrics["device"] == "cpu"
    assert status(kube, namespace, "cartpole")["progress"].endswith("%")

    # A running session costs the operator one reconcile per progress report, not two.
    reports0 = sample(agent_metrics(agent), "shoal_agent_reports_total")
    rec0 = sample(running_operator.metrics(), RECONCILES)
    wait_until(
        lambda: sample(agent_metrics(agent), "shoal_agent_reports_total") >= reports0 + 3, 60, "three reports"
    )
    seen = wait_until(
        lambda: (
            (m := status(kube, namespace, "cartpole").get("metrics") or {})["timesteps"]
            > metrics["timesteps"]
            and m
        ),
        30,
        "the reports in status",
    )
    reports = sample(agent_metrics(agent), "shoal_agent_reports_total") - reports0
    reconciles = sample(running_operator.metrics(), RECONCILES) - rec0
    assert 1 <= reconciles <= reports + 1, (reconciles, reports)  # +1: a report in flight at the start

    # A pause is a command on the pod; the agent hears it through its watch, the trainer checkpoints
    # and acknowledges, and the session is Paused long before the 900 s deadline.
    asked = time.monotonic()
    kube.merge_patch(custom_path("trainingsessions", namespace, "cartpole"), {"spec": {"runState": "Paused"}})
    paused = wait_until(lambda: phase_is(kube, namespace, "cartpole", "Paused"), 120, "Paused on the ack")
    assert time.monotonic() - asked < 120
    assert "checkpoint acknowledged" in paused["message"]
    assert re.search(r"/ckpt-\d{12}$", paused["lastCheckpoint"])
    assert paused["metrics"]["timesteps"] >= seen["timesteps"]
    assert agent.proc is not None and agent.proc.wait(60) == 0
    log = (agent.mounts["/shoal"] / "commands.jsonl").read_text().splitlines()
    assert [json.loads(line)["verb"] for line in log] == ["pause"]  # what the trainer was signalled


def test_an_unknown_game_fails_the_session_with_the_reason_and_no_restart(
    kube: Kube, namespace: str, running_operator: OperatorProcess, local_pods: list[LocalPod]
) -> None:
    apply(session_manifest("typo", game="CartPol-v1"), namespace)
    pod_name = wait_until(lambda: phase_is(kube, namespace, "typo", "Running"), 60, "Running")["podName"]
    local_pods.append(LocalPod(kube, namespace, pod_name).start())
    failed = wait_until(lambda: phase_is(kube, namespace, "typo", "Failed"), 120, "Failed")
    assert failed["reason"] == "InvalidGame"
    assert failed["message"].startswith("spec.game:") and "CartPole-v1" in failed["message"]
    assert failed["attempts"] == 1 and failed.get("restarts", 0) == 0
    events_where(
        kube,
        namespace,
        lambda e: (
            e["involvedObject"]["name"] == "typo" and e["type"] == "Warning" and "spec.game" in e["message"]
        ),
        "a Warning event naming spec.game",
    )


def test_the_agents_credentials_reach_its_own_pod_and_nothing_else(
    kube: Kube, namespace: str, running_operator: OperatorProcess, local_pods: list[LocalPod]
) -> None:
    apply(session_manifest("narrow"), namespace)
    pod_name = wait_until(lambda: phase_is(kube, namespace, "narrow", "Running"), 60, "Running")["podName"]
    neighbour = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "neighbour"},
        "spec": {"containers": [{"name": "c", "image": "registry.example/x:1"}]},
    }
    kube.create(pods_path(namespace), neighbour)
    agent = LocalPod(
        kube, namespace, pod_name, command=[sys.executable, "-m", "tests.doubles.bandit"]
    ).start()
    local_pods.append(agent)
    as_agent = kube_as(str(agent.kubeconfig))
    assert as_agent.get(pods_path(namespace, pod_name))["metadata"]["name"] == pod_name
    as_agent.merge_patch(pods_path(namespace, pod_name), {"metadata": {"annotations": {"probe": "own"}}})
    refused = []
    for attempt in (
        lambda: as_agent.get(pods_path(namespace, "neighbour")),
        lambda: as_agent.merge_patch(pods_path(namespace, "neighbour"), {"metadata": {"labels": {"x": "y"}}}),
        lambda: as_agent.list_items(pods_path(namespace)),
        lambda: as_agent.request(
            "GET",
            pods_path(namespace),
            query={"watch": "1", "fieldSelector": "metadata.name=neighbour"},
            timeout=5,
        ),
        lambda: as_agent.get(f"/api/v1/namespaces/{namespace}/configmaps/narrow-config"),
        lambda: as_agent.delete(pods_path(namespace, pod_name)),
    ):
        try:
            attempt()
        except ApiError as exc:
            refused.append(exc.status)
    assert refused == [403] * 6
    # The real agent in that pod heard a command through its watch and reported through its patch.
    wait_until(
        lambda: (status(kube, namespace, "narrow").get("metrics") or {}).get("timesteps"), 60, "a report"
    )
