"""Faults: the operator SIGKILLed at random moments, the API server restarted, metric sources gone.

The quick variants run in `make test`; the `chaos` ones (20 seeded kills) in `make test-chaos`.
"""

from __future__ import annotations

import json
import random
import re
import time
from functools import partial
from typing import Any

import pytest
import yaml

from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, pods_path
from testbed import cluster as testbed
from testbed.kubelet import LocalKubelet
from tests.e2e.conftest import OperatorProcess, pool_manifest, scaler_manifest, session_manifest
from tests.e2e.util import (
    ROOT,
    SEL,
    PodHistory,
    apply,
    assert_no_duplicates_or_orphans,
    checkpoint_steps,
    condition,
    converged,
    kubectl,
    live_pods,
    phase_is,
    pool,
    status,
    wait_until,
)


def kill_during_scales(kube: Kube, ns: str, op: OperatorProcess, kills: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    apply(pool_manifest("chaos", 0), ns)
    targets = [50, 5]
    history = PodHistory(kube, ns, SEL.format("chaos"))
    log = []
    for i in range(kills):
        target = targets[i % 2]
        kubectl("scale", "cpool/chaos", "-n", ns, f"--replicas={target}")
        time.sleep(rng.uniform(0.0, 1.5))  # the fault's timing, not a synchronisation
        op.kill()
        at_kill = len(live_pods(kube, ns, SEL.format("chaos")))
        op.start()
        started = time.monotonic()
        wait_until(
            partial(converged, kube, ns, "chaos", target), 30, f"converged to {target} after kill {i + 1}"
        )
        assert_no_duplicates_or_orphans(kube, ns, "chaos", target)
        log.append(
            {
                "kill": i + 1,
                "target": target,
                "pods_at_kill": at_kill,
                "converged_s": round(time.monotonic() - started, 2),
            }
        )
    history.stop.set()
    # Seen as it happened: a duplicate the operator later removed would have pushed this past 50.
    assert history.most_alive <= max(targets), f"{history.most_alive} pods alive at once"
    return {"kills": kills, "survived": len(log), "most_alive": history.most_alive, "runs": log}


def test_sigkill_during_scales_converges_without_duplicates_or_orphans(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    report = kill_during_scales(kube, namespace, running_operator, kills=4, seed=7)
    print(json.dumps(report))


@pytest.mark.chaos
def test_twenty_seeded_sigkills_during_scales(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    report = kill_during_scales(kube, namespace, running_operator, kills=20, seed=2026)
    print(json.dumps(report))


def saved_last(kubelet: LocalKubelet, pod: str) -> str:
    """The checkpoint the pod's trainer saved last (its latest.json on the session's volume)."""
    agent = kubelet.pod(pod)
    assert agent is not None
    return str(json.loads((agent.mounts["/checkpoints"] / "latest.json").read_text())["path"])


def test_sigkill_during_a_session_pause_loses_no_checkpoint(
    kube: Kube, namespace: str, running_operator: OperatorProcess, local_kubelet: LocalKubelet
) -> None:
    apply(session_manifest("survivor"), namespace)
    pod = wait_until(lambda: phase_is(kube, namespace, "survivor", "Running"), 60, "Running")["podName"]
    kube.merge_patch(custom_path("trainingsessions", namespace, "survivor"), {"spec": {"runState": "Paused"}})
    wait_until(
        lambda: status(kube, namespace, "survivor").get("command") == "pause", 30, "pause command sent"
    )
    running_operator.kill()  # between the command and the acknowledgement
    # The local kubelet may start the agent only now: it then finds the command on its pod at once.
    agent = wait_until(lambda: local_kubelet.pod(pod), 30, "the agent started")
    assert agent is not None and agent.proc is not None
    assert agent.proc.wait(60) == 0  # it checkpointed and acknowledged
    running_operator.start()
    paused = wait_until(lambda: phase_is(kube, namespace, "survivor", "Paused"), 30, "Paused after restart")
    assert paused["lastCheckpoint"] == saved_last(local_kubelet, pod) and paused["commandId"] == 1
    kube.merge_patch(
        custom_path("trainingsessions", namespace, "survivor"), {"spec": {"runState": "Running"}}
    )
    resumed = wait_until(lambda: phase_is(kube, namespace, "survivor", "Running"), 60, "resumed")
    env = {
        e["name"]: e.get("value")
        for e in kube.get(pods_path(namespace, resumed["podName"]))["spec"]["containers"][0]["env"]
    }
    assert env["SHOAL_RESUME_FROM"] == paused["lastCheckpoint"]


def test_api_server_restart_operator_reconnects_and_deletes_complete(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("steady", 3), namespace)
    apply(session_manifest("ending"), namespace)
    wait_until(lambda: converged(kube, namespace, "steady", 3), 60, "3 pods")
    wait_until(lambda: phase_is(kube, namespace, "ending", "Running"), 60, "session Running")
    testbed.stop("kube-apiserver")
    try:
        time.sleep(3)  # the outage itself
    finally:
        testbed.start("kube-apiserver")
    kubectl("scale", "cpool/steady", "-n", namespace, "--replicas=6")
    wait_until(lambda: converged(kube, namespace, "steady", 6), 90, "scaled after the API server came back")
    assert_no_duplicates_or_orphans(kube, namespace, "steady", 6)
    kube.delete(custom_path("trainingsessions", namespace, "ending"))

    def gone() -> bool:
        try:
            kube.get(custom_path("trainingsessions", namespace, "ending"))
        except ApiError as exc:
            return exc.not_found
        return False

    wait_until(gone, 60, "session deleted")
    assert running_operator.healthy()
    controllers_caught_up(kube, namespace)


def controllers_caught_up(kube: Kube, namespace: str) -> None:
    """kube-controller-manager relists after an API server restart with a backoff: until it has, a
    new namespace gets no default service account, and the next test could not create its pods.
    Wait here, where the restart was, for a new one to get it (as the namespace fixture does)."""
    account = "/api/v1/namespaces/{}/serviceaccounts/default"
    probe = f"{namespace}-after"[:63]
    kube.create("/api/v1/namespaces", {"metadata": {"name": probe}})

    def served() -> bool:
        try:
            return bool(kube.get(account.format(probe)))
        except ApiError as exc:
            if exc.not_found:
                return False
            raise

    try:
        wait_until(served, 180, "kube-controller-manager caught up: a new namespace's default account")
    finally:
        kube.delete(f"/api/v1/namespaces/{probe}")


def test_metrics_server_outage_holds_then_recovers(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("cpu", 3, resources={"cpu": "1", "memory": "64Mi"}), namespace)
    wait_until(lambda: converged(kube, namespace, "cpu", 3), 60, "3 pods")
    target = {"apiVersion": "shoal.dev/v1alpha1", "kind": "ContainerPool", "name": "cpu"}
    metrics = [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 50}}]
    apply(
        scaler_manifest(
            "cpu",
            target,
            metrics,
            minReplicas=1,
            behavior={"scaleDown": {"cooldownSeconds": 0, "stabilizationWindowSeconds": 0}},
        ),
        namespace,
    )
    # Idle pods (1m CPU) would be scaled down to 1 at once; first make sure the scaler is reading them...
    wait_until(
        lambda: (
            condition(kube.get(custom_path("workerscalers", namespace, "cpu")), "ScalingActive").get("status")
            == "True"
            or pool(kube, namespace, "cpu")["spec"]["replicas"] == 1
        ),
        90,
        "scaler active",
    )
    wait_until(lambda: pool(kube, namespace, "cpu")["spec"]["replicas"] == 1, 60, "scaled down on low CPU")
    kubectl("scale", "cpool/cpu", "-n", namespace, "--replicas=4")  # someone scales up by hand
    testbed.stop("metrics-server")
    try:

        def inactive() -> dict[str, Any]:
            c = condition(kube.get(custom_path("workerscalers", namespace, "cpu")), "ScalingActive")
            return c if c.get("status") == "False" else {}

        cond = wait_until(inactive, 60, "ScalingActive=False without metrics")
        assert cond["reason"] == "MetricsUnavailable"
        assert pool(kube, namespace, "cpu")["spec"]["replicas"] == 4  # held: no scale-down on missing data
    finally:
        testbed.start("metrics-server")
    wait_until(
        lambda: (
            condition(kube.get(custom_path("workerscalers", namespace, "cpu")), "ScalingActive").get("status")
            == "True"
        ),
        120,
        "metrics back",
    )
    wait_until(lambda: pool(kube, namespace, "cpu")["spec"]["replicas"] == 1, 60, "scaling resumed")


def test_crd_schemas_have_no_user_chosen_addresses() -> None:
    """No field lets a resource make the operator contact an address of its choosing (no SSRF)."""
    suspicious = {"url", "uri", "endpoint", "address", "host", "server", "webhook"}

    def words(name: str) -> set[str]:
        """A field name's words, plurals also singular: "securityContext" holds no "uri"."""
        found = {w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", name)}
        return found | {w[:-2] if w.endswith("sses") else w[:-1] for w in found if w.endswith("s")}

    for crd in sorted((ROOT / "crds").glob("shoal.dev_*.yaml")):
        spec_schema = yaml.safe_load(crd.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
            "properties"
        ]["spec"]

        def walk(node: dict[str, Any], path: str) -> None:
            for name, child in (node.get("properties") or {}).items():
                assert not words(name) & suspicious, f"{path}.{name}"
                walk(child, f"{path}.{name}")
            if isinstance(node.get("items"), dict):
                walk(node["items"], f"{path}[]")

        walk(spec_schema, crd.name)


@pytest.mark.parametrize("namespace", [{"pod-security.kubernetes.io/enforce": "restricted"}], indirect=True)
def test_session_pods_pass_pod_security_restricted(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(session_manifest("secure"), namespace)
    wait_until(
        lambda: phase_is(kube, namespace, "secure", "Running"), 60, "session pod admitted under restricted"
    )


@pytest.mark.chaos
def test_twenty_seeded_sigkills_during_session_pause_and_resume(
    kube: Kube, namespace: str, running_operator: OperatorProcess, local_kubelet: LocalKubelet
) -> None:
    rng = random.Random(11)
    apply(session_manifest("cycler"), namespace)
    wait_until(lambda: phase_is(kube, namespace, "cycler", "Running"), 60, "Running")
    steps = 0
    for i in range(20):
        pod = status(kube, namespace, "cycler")["podName"]
        kube.merge_patch(
            custom_path("trainingsessions", namespace, "cycler"), {"spec": {"runState": "Paused"}}
        )
        time.sleep(rng.uniform(0.0, 0.5))  # the fault's timing
        running_operator.kill()
        running_operator.start()
        paused = wait_until(
            lambda: phase_is(kube, namespace, "cycler", "Paused"), 60, f"Paused (cycle {i + 1})"
        )
        assert paused["lastCheckpoint"] == saved_last(local_kubelet, pod), f"cycle {i + 1}"
        assert checkpoint_steps(paused["lastCheckpoint"]) >= steps  # never back to an older one
        steps = checkpoint_steps(paused["lastCheckpoint"])
        kube.merge_patch(
            custom_path("trainingsessions", namespace, "cycler"), {"spec": {"runState": "Running"}}
        )
        time.sleep(rng.uniform(0.0, 0.5))
        running_operator.kill()
        running_operator.start()
        st = wait_until(
            lambda: phase_is(kube, namespace, "cycler", "Running"), 30, f"Running (cycle {i + 1})"
        )
        pods = live_pods(kube, namespace, "shoal.dev/session=cycler")
        assert [p["metadata"]["name"] for p in pods] == [st["podName"]], "duplicate session pods"
        env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
        assert env["SHOAL_RESUME_FROM"] == paused["lastCheckpoint"]
    print(json.dumps({"session_kills": 40, "survived": 40, "last_checkpoint_steps": steps}))
