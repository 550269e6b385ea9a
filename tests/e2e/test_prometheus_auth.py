"""The operator against a real Prometheus that wants TLS, a client certificate and basic auth (its
--web.config.file), with queries limited to each scaler's namespace: a scaler sees its own series,
inside aggregations, functions and binary expressions, and not another namespace's; no credential
appears in the operator's log, a scaler's status or an Event."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from shoal.config import PrometheusAccess
from shoal.k8s.client import Kube
from shoal.sources.promhttp import PrometheusHttp
from testbed.config import binary
from testbed.localpod import free_port
from tests.e2e.conftest import OperatorProcess, scaler_manifest
from tests.e2e.util import apply, condition, create_deployment, decisions, deployment, scaler, wait_until

PASSWORD = "pr0m-s3cret-7f3a"
OTHER = "e2e-other-tenant"  # a namespace label value no scaler here lives in


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], check=True, cwd=cwd, capture_output=True)


def certificates(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=guarded-prometheus-ca")  # fmt: skip
    (d / "server.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.cnf").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr",
                "-subj", f"/CN=shoal-{who}")  # fmt: skip
        openssl(d, "x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{who}.crt", "-days", "2", "-extfile", f"{who}.cnf")  # fmt: skip


class GuardedPrometheus:
    def __init__(self, workdir: Path, namespace: str) -> None:
        self.dir = workdir
        certificates(workdir)
        self.registry = CollectorRegistry()
        queue = Gauge("shoal_e2e_tenant_queue", "Work waiting", ["namespace"], registry=self.registry)
        queue.labels(namespace).set(30)
        queue.labels(OTHER).set(1000)
        Gauge("shoal_e2e_only_other", "Another team's", ["namespace"], registry=self.registry).labels(
            OTHER
        ).set(5)
        self.exporter_port = free_port()
        self.exporter, _ = start_http_server(self.exporter_port, addr="127.0.0.1", registry=self.registry)
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        (workdir / "web.yml").write_text(
            json.dumps(
                {
                    "tls_server_config": {
                        "cert_file": str(workdir / "server.crt"),
                        "key_file": str(workdir / "server.key"),
                        "client_auth_type": "RequireAndVerifyClientCert",
                        "client_ca_file": str(workdir / "ca.crt"),
                    },
                    "basic_auth_users": {"shoal": hashed},
                }
            )
        )
        (workdir / "prometheus.yml").write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "tenants",
                            "honor_labels": True,  # the exporter's own namespace label stands
                            "static_configs": [{"targets": [f"127.0.0.1:{self.exporter_port}"]}],
                        }
                    ],
                }
            )
        )
        (workdir / "user").write_text("shoal\n")
        (workdir / "password").write_text("wrong-password\n")
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(binary("prometheus")),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--web.config.file={workdir / 'web.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def env(self) -> dict[str, str]:
        d = self.dir
        return {
            "SHOAL_PROMETHEUS_URL": self.url,
            "SHOAL_PROMETHEUS_CA_FILE": str(d / "ca.crt"),
            "SHOAL_PROMETHEUS_CERT_FILE": str(d / "client.crt"),
            "SHOAL_PROMETHEUS_KEY_FILE": str(d / "client.key"),
            "SHOAL_PROMETHEUS_BASIC_AUTH_USERNAME_FILE": str(d / "user"),
            "SHOAL_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE": str(d / "password"),
            "SHOAL_PROMETHEUS_HEADERS": json.dumps({"X-Scope-OrgID": "e2e"}),
            "SHOAL_PROMETHEUS_NAMESPACE_LABEL": "namespace",
        }

    def scraped(self) -> bool:
        """Up and scraping, asked the way the operator asks (right password, client certificate)."""
        right = self.dir / "right-password"
        right.write_text(PASSWORD)
        access = PrometheusAccess.from_env(
            {**self.env(), "SHOAL_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE": str(right)}
        )
        payload, _ = PrometheusHttp(access).get("/api/v1/query", {"query": "count(shoal_e2e_tenant_queue)"})
        result = (payload or {}).get("data", {}).get("result") or []
        return bool(result) and result[0]["value"][1] == "2"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)
        self.log.close()
        self.exporter.shutdown()


@pytest.fixture
def guarded(tmp_path: Path, namespace: str) -> Iterator[GuardedPrometheus]:
    prom = GuardedPrometheus(tmp_path, namespace)
    try:
        wait_until(prom.scraped, 60, "the guarded Prometheus scraping its exporter")
        yield prom
    finally:
        prom.stop()


def read_metrics(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    """The scaler's last readings once every one has a value (empty until then)."""
    current = scaler(kube, namespace, name).get("status", {}).get("currentMetrics") or []
    return current if current and all("value" in m for m in current) else []


def metric(query: str) -> list[dict[str, Any]]:
    return [{"type": "Prometheus", "prometheus": {"query": query, "targetPerReplica": 10}}]


def test_tls_client_certificate_and_basic_auth_with_queries_limited_to_the_scalers_namespace(
    kube: Kube, namespace: str, operator: OperatorProcess, guarded: GuardedPrometheus, tmp_path: Path
) -> None:
    operator.stop()  # the shared operator stands down; the next running_operator restarts it
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**guarded.env(), "SHOAL_LEASE_NAMESPACE": namespace, "SHOAL_LEASE_NAME": "auth"}
    op = OperatorProcess(operator.kubeconfig, logs, **env)
    queries = {
        # Its own queue (30) through an aggregation, a function and a binary expression; unscoped,
        # the other tenant's 1000 would count too and the size would go to maxReplicas.
        "own": "sum(shoal_e2e_tenant_queue) + 0 * scalar(max(shoal_e2e_tenant_queue))",
        "foreign": "sum(shoal_e2e_only_other)",  # exists only in the other namespace: empty here
        "refused": f'sum(shoal_e2e_tenant_queue{{namespace="{OTHER}"}})',
    }
    for name, query in queries.items():
        create_deployment(kube, namespace, name, 1)
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        apply(scaler_manifest(name, target, metric(query)), namespace)
    op.start()
    try:

        def unavailable(name: str, text: str) -> dict[str, Any]:
            c = condition(scaler(kube, namespace, name), "ScalingActive")
            return c if c.get("status") == "False" and text in c.get("message", "") else {}

        # A wrong password: Prometheus' 401 in the condition, the size held.
        denied = wait_until(lambda: unavailable("own", "Prometheus answered 401"), 60, "the 401 shown")
        assert denied["reason"] == "MetricsUnavailable", denied
        assert deployment(kube, namespace, "own")["spec"]["replicas"] == 1
        # The Secret rotated to the right password: read on the next query, no restart.
        (guarded.dir / "password").write_text(PASSWORD + "\n")
        wait_until(lambda: deployment(kube, namespace, "own")["spec"]["replicas"] == 3, 60, "own at 3")
        # The status write follows the scale patch: wait for the reading that caused it.
        own = wait_until(lambda: read_metrics(kube, namespace, "own"), 30, "own's reading in status")
        assert [float(m["value"]) for m in own] == [30.0], own
        assert max(d["toReplicas"] for d in decisions(kube, namespace, "own")) == 3
        foreign = wait_until(lambda: unavailable("foreign", "no series"), 60, "the foreign series unseen")
        assert foreign["reason"] == "MetricsUnavailable", foreign
        refused = wait_until(lambda: unavailable("refused", "cannot limit it to namespace"), 60, "refused")
        assert f'only namespace="{namespace}" may be read' in refused["message"], refused
        for name in ("foreign", "refused"):
            assert deployment(kube, namespace, name)["spec"]["replicas"] == 1, name
    finally:
        op.stop()
    key = (guarded.dir / "client.key").read_text().splitlines()[1]
    pairs = [base64.b64encode(f"shoal:{p}".encode()).decode() for p in (PASSWORD, "wrong-password")]
    secrets = [PASSWORD, "wrong-password", key, *pairs]
    shown = [p.read_text(errors="replace") for p in logs.glob("operator-*.log")]
    shown += [json.dumps(scaler(kube, namespace, n)) for n in queries]
    shown.append(json.dumps(kube.list_items(f"/api/v1/namespaces/{namespace}/events")))
    assert not [s for s in secrets for text in shown if s in text]
