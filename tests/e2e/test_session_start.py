"""Custom trainer images start, or say why at once: a session whose container the kubelet cannot run
says so from the pod's status (the kubelet's reason in status and a Warning Event), not after its start
timeout; an image built to run as root runs where Pod Security allows it (baseline) and is refused,
with the API server's reason, where it does not (restricted)."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, pods_path
from tests.e2e.conftest import OperatorProcess, session_manifest
from tests.e2e.util import apply, events_where, wait_until


def session_status(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return dict(kube.get(custom_path("trainingsessions", ns, name)).get("status") or {})


def status_where(kube: Kube, ns: str, name: str, field: str, value: str) -> dict[str, Any]:
    """The session's status once `field` says `value` (empty before)."""
    st = session_status(kube, ns, name)
    return st if st.get(field) == value else {}


ROOT_USER = {"runAsNonRoot": False, "runAsUser": 0, "fsGroup": 0}


@pytest.mark.parametrize("namespace", [{"pod-security.kubernetes.io/enforce": "baseline"}], indirect=True)
def test_a_root_image_runs_where_pod_security_baseline_allows_it(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(session_manifest("as-root", securityContext=ROOT_USER), namespace)
    running = wait_until(lambda: status_where(kube, namespace, "as-root", "phase", "Running"), 60, "Running")
    pod = kube.get(pods_path(namespace, running["podName"]))
    assert pod["spec"]["securityContext"] == {**ROOT_USER, "seccompProfile": {"type": "RuntimeDefault"}}
    # Root, but without capabilities or privilege escalation.
    assert pod["spec"]["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


@pytest.mark.parametrize("namespace", [{"pod-security.kubernetes.io/enforce": "restricted"}], indirect=True)
def test_a_root_image_where_pod_security_is_restricted_says_why_it_cannot_start(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(session_manifest("as-root", securityContext=ROOT_USER), namespace)
    refused = wait_until(
        lambda: status_where(kube, namespace, "as-root", "reason", "PodCreateFailed"), 60, "PodCreateFailed"
    )
    assert refused["phase"] == "Pending"
    assert 'violates PodSecurity "restricted:latest"' in refused["message"], refused["message"]
    assert "runAsNonRoot != true" in refused["message"], refused["message"]


def test_a_container_the_kubelet_cannot_run_is_in_the_sessions_status_and_events_at_once(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    apply(session_manifest("crashy", startTimeoutSeconds=600), namespace)
    running = wait_until(
        lambda: status_where(kube, namespace, "crashy", "phase", "Running"),
        60,
        "the session Running on its KWOK pod",
    )
    pod = kube.get(pods_path(namespace, running["podName"]))
    container = pod["spec"]["containers"][0]["name"]
    # What a kubelet writes once the container keeps exiting: the pod runs, the container waits.
    conditions = [
        {**c, "status": "False"} if c["type"] in ("Ready", "ContainersReady") else c
        for c in pod["status"]["conditions"]
    ]
    back_off = f"back-off 10s restarting failed container={container} pod={pod['metadata']['name']}"
    kube.merge_patch(
        pods_path(namespace, pod["metadata"]["name"]) + "/status",
        {
            "status": {
                "conditions": conditions,
                "containerStatuses": [
                    {
                        "name": container,
                        "image": "registry.example/trainer:1",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 3,
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": back_off}},
                    }
                ],
            }
        },
    )
    stuck = wait_until(
        lambda: status_where(kube, namespace, "crashy", "reason", "CrashLoopBackOff"),
        30,
        "the kubelet's reason in the session's status",
    )
    assert stuck["phase"] == "Starting"
    assert (
        stuck["message"]
        == f"pod {pod['metadata']['name']}: container {container} CrashLoopBackOff: {back_off}"
    )
    warned = events_where(
        kube,
        namespace,
        lambda e: (
            e["involvedObject"]["name"] == "crashy"
            and e["type"] == "Warning"
            and "CrashLoopBackOff" in e["message"]
        ),
        "a Warning Event saying CrashLoopBackOff",
    )
    assert [e["reason"] for e in warned] == ["Starting"]
    # Not a failure yet: the start timeout (600 s) is what ends the attempt, as before.
    assert session_status(kube, namespace, "crashy").get("attempts") == 1
