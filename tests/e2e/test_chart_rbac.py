"""The operator under the permissions its chart grants, not as cluster admin: the chart's rendered RBAC
and ServiceAccount applied to the test bed, a token of that account, and the operator run with it
through the pool, scaler and session paths. Any verb the chart forgot shows as a 403 in its log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.k8s.client import Kube
from shoal.k8s.paths import pods_path
from testbed.kubelet import LocalKubelet
from tests.e2e.conftest import (
    ChartAccount,
    Exporter,
    OperatorProcess,
    pool_manifest,
    scaler_manifest,
    session_manifest,
)
from tests.e2e.util import (
    apply,
    create_deployment,
    deployment,
    kubectl,
    live_pods,
    training,
    wait_until,
)


@pytest.fixture(params=["cluster", "namespaces"])
def chart_operator(
    request: pytest.FixtureRequest, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """`cluster`: the chart's defaults (a ClusterRole); `namespaces`: watchNamespaces={namespace}."""
    operator.stop()  # the admin operator stands down; the next running_operator restarts it
    values = ["--set", f"watchNamespaces={{{namespace}}}"] if request.param == "namespaces" else []
    chart = ChartAccount(namespace, *values)
    env = {"SHOAL_LEASE_NAMESPACE": namespace, "SHOAL_LEASE_NAME": chart.account}
    if request.param == "namespaces":
        env["SHOAL_NAMESPACES"] = namespace
    op = OperatorProcess(chart.kubeconfig(tmp_path / "chart.kubeconfig"), tmp_path, **env)
    with chart.serving(op):
        yield op


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
    claim_as_a_dispatcher(kube, namespace, chart_operator)
    log = "".join(p.read_text(errors="replace") for p in chart_operator.logdir.glob("operator-*.log"))
    # An RBAC denial names the account ('... is forbidden: User "system:serviceaccount:..." cannot ...'),
    # and kopf says "Not enough permissions"; other 403s (a namespace being terminated, left by an
    # earlier test and seen by the cluster-wide operator) are not about the chart's grants.
    denied = ("is forbidden: User", "Not enough permissions")
    forbidden = [line for line in log.splitlines() if any(d in line for d in denied)]
    assert forbidden == [], forbidden[:5]
    assert chart_operator.healthy()


def claim_as_a_dispatcher(kube: Kube, namespace: str, op: OperatorProcess) -> None:
    """A job dispatcher's account bound to nothing but the chart's claimer role takes a warm pod
    (ContainerClaim), reads its address, gives it back; it may not touch the pods themselves."""
    import kubernetes

    from shoal.k8s.client import ApiError
    from shoal.k8s.paths import custom_path

    release = op.extra_env["SHOAL_LEASE_NAME"].removesuffix("-shoal")  # the account is <release>-shoal
    kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "dispatcher"}})
    kube.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "metadata": {"name": "dispatcher"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{release}-shoal-claimer",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "dispatcher", "namespace": namespace}],
        },
    )
    token = kubectl("create", "token", "dispatcher", "-n", namespace, "--duration=10m").stdout.strip()
    cfg = kubernetes.client.Configuration()
    cfg.host = kube.api.configuration.host
    cfg.ssl_ca_cert = kube.api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    dispatcher = Kube(kubernetes.client.ApiClient(cfg))
    claims = custom_path("containerclaims", namespace)
    body = {"apiVersion": "shoal.dev/v1alpha1", "kind": "ContainerClaim", "metadata": {"name": "job-1"}}
    # The RoleBinding may take a moment to reach the authorizer's cache.
    wait_until(
        lambda: _created(dispatcher, claims, {**body, "spec": {"poolRef": {"name": "chart-pool"}}}),
        30,
        "the dispatcher allowed to create a claim",
    )

    def bound() -> dict[str, Any]:
        status: dict[str, Any] = dispatcher.get(f"{claims}/job-1").get("status") or {}
        return status if status.get("podIP") else {}

    st = wait_until(bound, 60, "the claim bound by the chart's operator")
    assert st["phase"] == "Bound" and st["podName"], st
    try:
        dispatcher.get(pods_path(namespace, st["podName"]))
        raise AssertionError("the dispatcher read a pod")
    except ApiError as exc:
        assert exc.status == 403, exc
    dispatcher.delete(f"{claims}/job-1")
    wait_until(
        lambda: (
            "shoal.dev/claimed-by"
            not in (kube.get(pods_path(namespace, st["podName"]))["metadata"].get("annotations") or {})
        ),
        30,
        "the pod given back",
    )


def _created(kube: Kube, path: str, body: dict[str, Any]) -> bool:
    from shoal.k8s.client import ApiError

    try:
        kube.create(path, body)
    except ApiError as exc:
        if exc.status == 403:
            return False
        raise
    return True
