"""How users install Shoal: the Helm chart, the kustomize base and samples, GitOps re-applies, /metrics."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path
from shoal.vocab import AGENT_METRICS_PORT_NAME, LABEL_MANAGED
from tests.e2e.conftest import Exporter, OperatorProcess, pool_manifest, scaler_manifest
from tests.e2e.util import ROOT, apply, helm, kubectl, live_pods, render, wait_until

ALL_FEATURES = [
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "prometheusRule.enabled=true",
    "--set",
    "grafanaDashboard.enabled=true",
    "--set",
    "sessionNetworkPolicy.enabled=true",
]


@pytest.mark.parametrize("values", [[], ["--set", "watchNamespaces={team-a,team-b}", *ALL_FEATURES]])
def test_helm_lint_is_clean(values: list[str]) -> None:
    out = helm("lint", "--strict", str(ROOT / "helm" / "shoal"), *values)
    assert out.returncode == 0 and "0 chart(s) failed" in out.stdout, out.stdout + out.stderr


def test_helm_values_schema_rejects_bad_values() -> None:
    out = helm("template", "shoal", str(ROOT / "helm" / "shoal"), "--set", "log.format=xml")
    assert out.returncode != 0 and "/log/format" in out.stderr, out.stderr


@pytest.mark.parametrize("values", [[], ["--set", "watchNamespaces={NS}"]])
def test_helm_template_is_accepted_by_the_api_server(
    namespace: str, cluster: Path, values: list[str]
) -> None:
    docs = render(namespace, *[v.replace("NS", namespace) for v in values])
    result = kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/shoal created (server dry run)" in result.stdout


def test_rendered_rbac_names_exact_verbs_and_resources() -> None:
    docs = render("shoal-system", *ALL_FEATURES) + render("x", "--set", "watchNamespaces={a,b}")
    roles = [d for d in docs if d["kind"] in ("Role", "ClusterRole")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for key in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule.get(key, []), f"wildcard {key} in {role['metadata']['name']}: {rule}"
            assert "secrets" not in rule["resources"], f"{role['metadata']['name']} grants secrets"
            assert not set(rule["verbs"]) & {"escalate", "bind", "impersonate"}
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert binding["roleRef"]["name"] not in ("cluster-admin", "admin", "edit")


def test_session_network_policies_are_asked_for_by_one_value_and_granted_only_then() -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ml-tools"}}}]
    on = render(
        "shoal-system",
        "--set",
        "sessionNetworkPolicy.enabled=true",
        "--set-json",
        f"sessionNetworkPolicy.from={json.dumps(peers)}",
    )
    env = {
        e["name"]: e.get("value")
        for e in next(d for d in on if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][
            0
        ]["env"]
    }
    assert json.loads(env["SHOAL_SESSION_INGRESS_FROM"]) == peers
    granted = [
        r for d in on if d["kind"] == "ClusterRole" for r in d["rules"] if "networkpolicies" in r["resources"]
    ]
    assert [r["verbs"] for r in granted] == [["create"]]
    off = render("shoal-system")
    assert not [
        r
        for d in off
        if d["kind"] == "ClusterRole"
        for r in d["rules"]
        if "networkpolicies" in r["resources"]
    ]
    deploy = next(d for d in off if d["kind"] == "Deployment")
    assert "SHOAL_SESSION_INGRESS_FROM" not in json.dumps(deploy)


def test_operator_pod_is_locked_down() -> None:
    deploy = next(d for d in render("shoal-system") if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and "readinessProbe" in c


def test_alert_rules_are_valid_promql() -> None:
    out = subprocess.run(
        ["promtool", "check", "rules", str(ROOT / "helm/shoal/files/alerts.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    rules = yaml.safe_load((ROOT / "helm/shoal/files/alerts.yaml").read_text())["groups"][0]["rules"]
    assert out.returncode == 0 and f"SUCCESS: {len(rules)} rules found" in out.stdout, out.stdout + out.stderr


def test_every_alert_fires_where_it_should_and_not_where_it_should_not() -> None:
    """promtool evaluates each rule over synthetic series (tests/alerts/alerts_test.yaml): labels and
    text as a receiver gets them, and a look-alike case that must stay quiet."""
    tests = ROOT / "tests/alerts/alerts_test.yaml"
    out = subprocess.run(
        ["promtool", "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    rules = (ROOT / "helm/shoal/files/alerts.yaml").read_text()
    alerts = set(re.findall(r"- alert: (\w+)", rules))
    tested = set(re.findall(r"alertname: (\w+)", tests.read_text()))
    assert alerts == tested, alerts ^ tested


def test_the_service_monitor_keeps_the_metrics_own_namespace_label() -> None:
    """Without honorLabels, Prometheus renames a pool's or scaler's `namespace` label to
    exported_namespace and puts the operator's own namespace in its place."""
    docs = render("shoal-system", "--set", "serviceMonitor.enabled=true")
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert [e.get("honorLabels") for e in monitor["spec"]["endpoints"]] == [True]


def test_the_agent_pod_monitor_scrapes_shoal_pods_by_the_port_the_agent_pods_declare() -> None:
    assert not [d for d in render("shoal-system") if d["kind"] == "PodMonitor"]  # opt-in
    docs = render("shoal-system", "--set", "agentPodMonitor.enabled=true", "--set", "watchNamespaces={ml,ci}")
    monitor = next(d for d in docs if d["kind"] == "PodMonitor")
    assert monitor["spec"]["selector"] == {"matchLabels": {LABEL_MANAGED: "true"}}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ml", "ci"]}
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == [AGENT_METRICS_PORT_NAME]
    everywhere = render("shoal-system", "--set", "agentPodMonitor.enabled=true")
    assert next(d for d in everywhere if d["kind"] == "PodMonitor")["spec"]["namespaceSelector"] == {
        "any": True
    }


def test_kustomize_base_is_the_rendered_chart() -> None:
    committed = (ROOT / "manifests" / "shoal.yaml").read_text().split("\n", 1)[1]
    out = helm("template", "shoal", str(ROOT / "helm" / "shoal"), "--namespace", "shoal-system")
    assert committed.strip() == out.stdout.strip(), "manifests/shoal.yaml is stale: run make manifests"
    for crd in (ROOT / "crds").glob("shoal.dev_*.yaml"):
        assert (ROOT / "helm/shoal/crds" / crd.name).read_text() == crd.read_text()


def test_kubectl_apply_k_and_the_samples_work(kube: Kube, namespace: str) -> None:
    result = kubectl("apply", "-k", str(ROOT / "manifests"), check=False)
    try:
        assert result.returncode == 0, result.stderr
        assert (
            "deployment.apps/shoal created" in result.stdout
            or "deployment.apps/shoal configured" in result.stdout
        )
        wait_until(
            lambda: (
                kube.get("/apis/apps/v1/namespaces/shoal-system/deployments/shoal")
                .get("status", {})
                .get("readyReplicas")
                == 2
            ),
            60,
            "operator Deployment ready (KWOK pods)",
        )
        samples = kubectl("apply", "-n", namespace, "-f", str(ROOT / "manifests" / "samples"), check=False)
        assert samples.returncode == 0, samples.stderr
        for kind, name in [
            ("cpool", "ci-runners"),
            ("tsess", "cartpole-ppo"),
            ("wscale", "ci-runners-cpu"),
            ("wscale", "fn-workers-queue"),
        ]:
            kubectl("get", "-n", namespace, kind, name)
    finally:
        kubectl("delete", "namespace", "shoal-system", "--wait=false", check=False)
        kubectl(
            "delete", "clusterrole,clusterrolebinding", "-l", "app.kubernetes.io/instance=shoal", check=False
        )


@pytest.mark.parametrize("server_side", [False, True])
def test_reapplying_a_manifest_without_replicas_keeps_the_scaled_size(
    kube: Kube, namespace: str, running_operator: OperatorProcess, server_side: bool
) -> None:
    manifest = pool_manifest("gitops", 1)
    del manifest["spec"]["replicas"]  # what a GitOps repository holds when something else scales
    flags = ["--server-side"] if server_side else []
    kubectl("apply", *flags, "-n", namespace, "-f", "-", stdin=json.dumps(manifest))
    kubectl("scale", "cpool/gitops", "-n", namespace, "--replicas=4")
    manifest["spec"]["template"]["metadata"]["labels"]["rev"] = "2"  # a real change in Git
    kubectl("apply", *flags, "-n", namespace, "-f", "-", stdin=json.dumps(manifest))
    obj = kube.get(custom_path("containerpools", namespace, "gitops"))
    assert obj["spec"]["replicas"] == 4 and obj["spec"]["template"]["metadata"]["labels"]["rev"] == "2"
    wait_until(lambda: len(live_pods(kube, namespace, "shoal.dev/pool=gitops")) == 4, 60, "4 pods")


def test_operator_metrics_expose_every_documented_series(
    kube: Kube, namespace: str, exporter: Exporter, running_operator: OperatorProcess
) -> None:
    apply(pool_manifest("m-pool", 2, sessionAgent={}), namespace)
    exporter.set(25)
    create = {"apiVersion": "shoal.dev/v1alpha1", "kind": "ContainerPool", "name": "m-pool"}
    metric = [{"type": "Prometheus", "prometheus": {"query": exporter.query, "targetPerReplica": 10}}]
    apply(scaler_manifest("m-scaler", create, metric), namespace)
    wait_until(
        lambda: kube.get(custom_path("containerpools", namespace, "m-pool"))["spec"]["replicas"] == 3,
        60,
        "scaled to 3",
    )
    apply(
        {
            "apiVersion": "shoal.dev/v1alpha1",
            "kind": "TrainingSession",
            "metadata": {"name": "m-sess"},
            "spec": {
                "game": "g",
                "algorithm": "PPO",
                "totalTimesteps": 10,
                "poolRef": {"name": "m-pool"},
            },
        },
        namespace,
    )
    wait_until(
        lambda: (
            kube.get(custom_path("trainingsessions", namespace, "m-sess")).get("status", {}).get("phase")
            == "Running"
        ),
        30,
        "session bound",
    )
    want = [
        'shoal_reconcile_duration_seconds_count{kind="ContainerPool"}',
        'shoal_reconcile_duration_seconds_count{kind="WorkerScaler"}',
        'shoal_reconcile_duration_seconds_count{kind="TrainingSession"}',
        'shoal_reconcile_errors_total{kind="ContainerPool"}',
        f'shoal_pool_pods{{namespace="{namespace}",pool="m-pool",state="Claimed"}}',
        f'shoal_scaler_replicas{{kind="desired",namespace="{namespace}",scaler="m-scaler"}}',
        f'shoal_scaler_replicas{{kind="current",namespace="{namespace}",scaler="m-scaler"}}',
        'shoal_scaler_scalings_total{reason="ScaleUp"}',
        'shoal_metric_source_duration_seconds_count{source="Prometheus"}',
        'shoal_metric_source_failures_total{source="Prometheus"}',
        "shoal_claim_latency_seconds_count",
        'shoal_pod_events_total{watch="pool"}',
        "shoal_leader 1.0",
    ]

    def missing() -> list[str]:
        text = running_operator.metrics()
        return [w for w in want if w not in text]

    try:
        wait_until(lambda: not missing(), 30, "all series")
    except AssertionError as exc:
        raise AssertionError(f"missing: {missing()}") from exc


PROMETHEUS_AUTH = [
    "--set", "prometheus.url=https://prometheus.monitoring:9090",
    "--set", "prometheus.basicAuth.secretName=prom-basic",
    "--set", "prometheus.tls.caSecretName=prom-ca",
    "--set", "prometheus.tls.clientCertSecretName=prom-client",
    "--set", "prometheus.headers.X-Scope-OrgID=team-a",
    "--set", "prometheus.namespaceLabel=namespace",
]  # fmt: skip


def test_prometheus_credentials_come_from_mounted_secrets_the_operator_accepts(
    namespace: str, cluster: Path
) -> None:
    from shoal.config import PrometheusAccess

    docs = render(namespace, *PROMETHEUS_AUTH)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    access = PrometheusAccess.from_env(env)  # the chart's settings pass the operator's own checks
    assert access.basic_auth_password_file == "/etc/shoal/prometheus/basic-auth/password"
    assert (access.ca_file, access.cert_file) == (
        "/etc/shoal/prometheus/ca/ca.crt",
        "/etc/shoal/prometheus/client/tls.crt",
    )
    assert access.headers == (("X-Scope-OrgID", "team-a"),) and access.namespace_label == "namespace"
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {
        "prometheus-basic-auth": "prom-basic",
        "prometheus-ca": "prom-ca",
        "prometheus-client": "prom-client",
    }
    mounts = [m for m in container["volumeMounts"] if m["name"].startswith("prometheus-")]
    assert len(mounts) == 3 and all(m["readOnly"] for m in mounts)
    assert (
        pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    )  # readable by the operator
    result = kubectl(
        "apply", "--dry-run=server", "-f", "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # (helm's schema library names a random path for a propertyNames failure: only the name is checked)
    for bad, named in (
        ("prometheus.headers.Authorization=Bearer x", "invalid propertyName 'Authorization'"),
        ("prometheus.basicAuth.secretName=Not_A_Name", "/prometheus/basicAuth/secretName"),
    ):
        out = helm("template", "shoal", str(ROOT / "helm" / "shoal"), "--set", bad)
        assert out.returncode != 0 and named in out.stderr, out.stderr
