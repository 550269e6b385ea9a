"""Pool pods that reach their own pod and nothing else (ownPodAccess): what a CI runner's job hooks
need to mark it busy, tested with a real token of the pod's ServiceAccount, and the CI-runner sample's
hooks run as its pods' own processes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import kubernetes
import pytest

from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import pods_path
from testbed.localpod import LocalPod
from tests.e2e.conftest import OperatorProcess, pool_manifest
from tests.e2e.util import (
    ROOT,
    SEL,
    PodHistory,
    apply,
    get_pod,
    kubectl,
    kubectl_path,
    live_pods,
    running,
    sh_blocks,
    wait_until,
)


def test_a_runner_pod_marks_itself_busy_with_its_own_token_and_cannot_touch_its_neighbour(
    kube: Kube, namespace: str, running_operator: OperatorProcess, tmp_path: Path
) -> None:
    """ownPodAccess: the recipe for CI runners (a job-started hook sets shoal.dev/busy=true on
    $POD_NAME, a job-completed hook sets it false), run with each pod's own ServiceAccount token."""
    apply(pool_manifest("selfservice", 2, ownPodAccess=True), namespace)
    wait_until(lambda: len(running(live_pods(kube, namespace, SEL.format("selfservice")))) == 2, 60, "2 pods")
    pods = sorted(
        running(live_pods(kube, namespace, SEL.format("selfservice"))), key=lambda p: p["metadata"]["name"]
    )
    me, neighbour = pods[0]["metadata"]["name"], pods[1]["metadata"]["name"]
    spec = kube.get(pods_path(namespace, me))["spec"]
    env = {
        e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        for e in spec["containers"][0]["env"]
    }
    assert spec["serviceAccountName"] == me and env["POD_NAME"] == "metadata.name"
    token = kubectl("create", "token", me, "-n", namespace, "--duration=10m").stdout.strip()
    cfg = kubernetes.client.Configuration()
    cfg.host = kube.api.configuration.host
    cfg.ssl_ca_cert = kube.api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    runner = Kube(kubernetes.client.ApiClient(cfg))

    def mark(pod: str, busy: str) -> None:
        runner.merge_patch(pods_path(namespace, pod), {"metadata": {"annotations": {"shoal.dev/busy": busy}}})

    # The README's hooks, run as the pod would run them: its token, its POD_NAME and POD_NAMESPACE.
    hooks = next(b for b in sh_blocks() if "shoal.dev/busy=true" in b)
    started, completed = (
        next(x for x in hooks.splitlines() if f"busy={v}" in x).strip() for v in ("true", "false")
    )
    kubeconfig = tmp_path / "runner.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": cfg.host, "certificate-authority": cfg.ssl_ca_cert}}
                ],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )

    def hook(line: str) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "POD_NAME": me,
            "POD_NAMESPACE": namespace,
            "PATH": f"{Path(kubectl_path()).parent}:{os.environ['PATH']}",
        }
        out = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr

    hook(started)
    assert kube.get(pods_path(namespace, me))["metadata"]["annotations"]["shoal.dev/busy"] == "true"
    for refused in (lambda: mark(neighbour, "true"), lambda: runner.get(pods_path(namespace, neighbour))):
        with pytest.raises(ApiError) as denied:
            refused()
        assert denied.value.status == 403
    kubectl("scale", "cpool/selfservice", "-n", namespace, "--replicas=0")
    wait_until(lambda: get_pod(kube, namespace, neighbour) is None, 60, "the idle neighbour scaled away")
    assert get_pod(kube, namespace, me) is not None  # busy: spared
    hook(completed)
    wait_until(lambda: get_pod(kube, namespace, me) is None, 60, "the runner scaled away once idle")


def test_the_ci_runner_sample_runs_its_job_hooks_as_the_pod_and_the_pool_follows_them(
    kube: Kube, namespace: str, running_operator: OperatorProcess
) -> None:
    """manifests/samples/ci-runner-pool.yaml as applied: each runner's job hooks (from the sample's
    ConfigMap, run as the runner runs them: in the pod, with its env, mounts and own token) mark it
    busy and idle again; a second busy runner brings up one more warm runner (2 busy + minIdle 3 is
    above replicas 4), and once both are idle the pool is back to 4 without touching the others."""
    sample = ROOT / "manifests" / "samples" / "ci-runner-pool.yaml"
    kubectl("apply", "-n", namespace, "-f", str(sample))
    sel = SEL.format("ci-runners")
    wait_until(lambda: len(running(live_pods(kube, namespace, sel))) == 4, 60, "4 runners")
    first = {p["metadata"]["name"] for p in live_pods(kube, namespace, sel)}
    a, b = sorted(first)[:2]

    def hook(pod: str, which: str) -> None:
        out = LocalPod(kube, namespace, pod).exec(["sh", "-c", f'exec sh "$ACTIONS_RUNNER_HOOK_JOB_{which}"'])
        assert out.returncode == 0, out.stderr

    def busy(pod: str) -> str | None:
        return (kube.get(pods_path(namespace, pod))["metadata"].get("annotations") or {}).get(
            "shoal.dev/busy"
        )

    hook(a, "STARTED")
    assert busy(a) == "true" and busy(b) is None  # its own pod only
    hook(b, "STARTED")
    wait_until(lambda: len(running(live_pods(kube, namespace, sel))) == 5, 60, "a fifth, warm runner")
    second = {p["metadata"]["name"] for p in live_pods(kube, namespace, sel)}
    assert first < second and len(second) == 5  # one created, none replaced
    history = PodHistory(kube, namespace, sel)
    for pod in (a, b):
        hook(pod, "COMPLETED")
        # Idle again, so the pool may take it for its scale-down at once: gone, or marked idle.
        now = kube.get_if_exists(pods_path(namespace, pod))
        assert now is None or (now["metadata"].get("annotations") or {}).get("shoal.dev/busy") == "false"
    wait_until(lambda: len(live_pods(kube, namespace, sel)) == 4, 60, "back to 4 runners")
    third = {p["metadata"]["name"] for p in live_pods(kube, namespace, sel)}
    assert third < second  # one removed, none created
    # The one removed was not in a job when it went: marked idle by its hook, or never busy.
    assert len(history.at_deletion) == 1
    assert [a.get("shoal.dev/busy") for a in history.at_deletion.values()] != ["true"]
