"""Uninstalling as the README says, with pools, scalers and sessions still present and the operator
already gone (`kubectl delete -k` takes it down together with the CRDs): it must finish, with
nothing left Terminating. Deletes the CRDs of the shared test bed, so it puts them back after."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from functools import partial

import pytest

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, pods_path
from testbed.kubelet import LocalKubelet
from tests.e2e.conftest import OperatorProcess, pool_manifest, scaler_manifest, session_manifest
from tests.e2e.util import ROOT, apply, helm, kubectl, live_pods, phase_is, sh_blocks, wait_until

SHOAL_CRDS = ("containerpools.shoal.dev", "trainingsessions.shoal.dev", "workerscalers.shoal.dev")
CHART = str(ROOT / "helm" / "shoal")


def readme_uninstall(way: str) -> list[list[str]]:
    """The README's uninstall commands for `way`, as argument lists: what this test runs is what a
    user is told to run."""
    block = next(b for b in sh_blocks() if "helm uninstall" in b)
    lines = [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.split("#")[0].strip()]
    kustomize = [c for c in lines if c[:3] == ["kubectl", "delete", "-k"]]
    return kustomize if way == "kustomize" else [c for c in lines if c not in kustomize]


def run_uninstall(way: str) -> None:
    for line in readme_uninstall(way):
        # Paths in the README are relative to the repository.
        command = [str(ROOT / a) if "/" in a and (ROOT / a).exists() else a for a in line]
        if command[0] == "helm":
            out = helm(*command[1:], "--wait", "--timeout=50s")
            assert out.returncode == 0, out.stderr
        else:
            kubectl(*command[1:], "--timeout=50s")


def kustomize_install() -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "manifests"))


def helm_install() -> None:
    out = helm("install", "shoal", CHART, "--namespace", "shoal-system", "--create-namespace")
    assert out.returncode == 0, out.stderr


def gone(kube: Kube, path: str) -> bool:
    return kube.get_if_exists(path) is None


def restore_crds(kube: Kube) -> None:
    """The CRDs back for the tests after this one, even when an uninstall got stuck: a CRD still
    Terminating would vanish under them, so whatever holds it is let go first."""
    for crd in SHOAL_CRDS:
        found = kube.get_if_exists(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
        if found is None or not found["metadata"].get("deletionTimestamp"):
            continue
        plural = crd.split(".")[0]
        for obj in kube.list_items(f"/apis/shoal.dev/v1alpha1/{plural}"):
            meta = obj["metadata"]
            kube.merge_patch_if_exists(
                custom_path(plural, meta["namespace"], meta["name"]), {"metadata": {"finalizers": None}}
            )
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}"
        wait_until(partial(gone, kube, path), 60, f"{crd} gone")
    kubectl("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", *SHOAL_CRDS)


INSTALL: dict[str, Callable[[], None]] = {"kustomize": kustomize_install, "helm": helm_install}


@pytest.mark.parametrize("way", sorted(INSTALL))
def test_uninstall_finishes_with_pools_scalers_and_sessions_present(
    way: str,
    kube: Kube,
    namespace: str,
    running_operator: OperatorProcess,
    local_kubelet: LocalKubelet,
) -> None:
    assert readme_uninstall(way), "the README's uninstall block"
    INSTALL[way]()  # the chart's own Deployment lands on a KWOK node; the local operator does the work
    try:
        apply(pool_manifest("fleet", 2, sessionAgent={}), namespace)  # a pool sessions can claim
        target = {"apiVersion": "shoal.dev/v1alpha1", "kind": "ContainerPool", "name": "fleet"}
        metrics = [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 50}}]
        apply(scaler_manifest("fleet", target, metrics, minReplicas=2), namespace)
        wait_until(lambda: len(live_pods(kube, namespace, "shoal.dev/pool=fleet")) == 2, 60, "the pool")
        apply(session_manifest("warm", poolRef={"name": "fleet"}), namespace)
        apply(session_manifest("cold"), namespace)
        for name in ("warm", "cold"):
            wait_until(partial(phase_is, kube, namespace, name, "Running"), 60, f"{name} Running")
        running_operator.stop()  # gone before its objects, as with `kubectl delete -k`
        run_uninstall(way)
    finally:
        if way == "helm":  # after a failure, no release left for the next run to trip on
            helm("uninstall", "shoal", "--namespace", "shoal-system", "--ignore-not-found")
        restore_crds(kube)
        running_operator.start()
    # Every Shoal object went with its CRD (kubectl waited for that), and their pods with them.
    for plural in ("containerpools", "workerscalers", "trainingsessions"):
        assert kube.list_items(custom_path(plural, namespace)) == []

    def left() -> list[str]:
        return [
            p["metadata"]["name"]
            for p in kube.list_items(pods_path(namespace))
            if {"shoal.dev/pool", "shoal.dev/session"} & set(p["metadata"].get("labels") or {})
        ]

    wait_until(lambda: not left(), 60, "the pool's and the sessions' pods collected")
    assert kube.get_if_exists("/api/v1/namespaces/shoal-system") is None
