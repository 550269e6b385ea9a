"""The operator under the permissions its chart grants, not as cluster admin: the chart's rendered RBAC
and ServiceAccount applied to the test bed, a token of that account, and the operator run with it
through the pool, scaler and session paths. Any verb the chart forgot shows as a 403 in its log."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.k8s.client import Kube, pods_path
from testbed import cluster as testbed
from testbed.kubelet import LocalKubelet
from tests.e2e.conftest import Exporter, OperatorProcess, pool_manifest, scaler_manifest
from tests.e2e.test_packaging import render
from tests.e2e.test_scaler import create_deployment, deployment
from tests.e2e.test_session import session_manifest, training
from tests.e2e.util import apply, kubectl, live_pods, wait_until


@pytest.fixture(params=["cluster", "namespaces"])
def chart_operator(
    request: pytest.FixtureRequest, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """`cluster`: the chart's defaults (a ClusterRole); `namespaces`: watchNamespaces={namespace}."""
    operator.stop()  # the admin operator stands down; the next running_operator restarts it
    release = f"rbac{random.randrange(10**6)}"
    values = ["--set", f"watchNamespaces={{{namespace}}}"] if request.param == "namespaces" else []
    # A release name of its own: the cluster-scoped roles must not meet another release's.
    docs = [d for d in render(namespace, *values, release=release) if d["kind"] != "Deployment"]
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    account = f"{release}-shoal"
    token = kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    kubeconfig = tmp_path / "chart.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "testbed",
                        "cluster": {
                            "server": f"https://{testbed.HOST}:{testbed.PORTS['kube-apiserver']}",
                            "certificate-authority": str(testbed.PKI / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": "chart", "context": {"cluster": "testbed", "user": account}}],
                "current-context": "chart",
            }
        )
    )
    env = {"SHOAL_LEASE_NAMESPACE": namespace, "SHOAL_LEASE_NAME": account}
    if request.param == "namespaces":
        env["SHOAL_NAMESPACES"] = namespace
    op = OperatorProcess(kubeconfig, tmp_path, **env)
    op.start()
    yield op
    op.stop()
    cluster_scoped = [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for d in cluster_scoped:
        kubectl("delete", d["kind"].lower(), d["metadata"]["name"], "--ignore-not-found", check=False)


def test_pools_scalers_and_sessions_work_with_only_the_charts_permissions(
    kube: Kube,
    namespace: str,
    chart_operator: OperatorProcess,
    exporter: Exporter,
    local_kubelet: LocalKubelet,
) -> None:
    apply(pool_manifest("chart-pool", 2), namespace)
    wait_until(
        lambda: len(live_pods(kube, namespace, "shoal.dev/pool=chart-pool")) == 2, 60, "the pool's 2 pods"
    )
    exporter.set(30)
    create_deployment(kube, namespace, "chart-workers", 1)
    metric = [{"type": "Prometheus", "prometheus": {"query": exporter.query, "targetPerReplica": 10}}]
    apply(
        scaler_manifest(
            "chart-workers",
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chart-workers"},
            metric,
            predictive={"enabled": True, "historySeconds": 600},  # its history read and written too
        ),
        namespace,
    )
    wait_until(
        lambda: deployment(kube, namespace, "chart-workers")["spec"]["replicas"] == 3, 90, "scaled to 3"
    )
    apply(session_manifest("chart-session"), namespace)
    trained = wait_until(lambda: training(kube, namespace, "chart-session"), 120, "the session training")
    assert kube.get(pods_path(namespace, trained["podName"]))
    history = f"/api/v1/namespaces/{namespace}/configmaps/chart-workers-history"
    wait_until(lambda: kube.get_if_exists(history), 60, "the scaler's history saved")
    log = "".join(p.read_text(errors="replace") for p in chart_operator.logdir.glob("operator-*.log"))
    # An RBAC denial names the account ('... is forbidden: User "system:serviceaccount:..." cannot ...'),
    # and kopf says "Not enough permissions"; other 403s (a namespace being terminated, left by an
    # earlier test and seen by the cluster-wide operator) are not about the chart's grants.
    denied = ("is forbidden: User", "Not enough permissions")
    forbidden = [line for line in log.splitlines() if any(d in line for d in denied)]
    assert forbidden == [], forbidden[:5]
    assert chart_operator.healthy()
