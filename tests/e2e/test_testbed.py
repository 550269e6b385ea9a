"""The test bed itself: a real control plane with simulated nodes, metrics and Prometheus."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import urllib.parse
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import kubernetes
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from shoal.api.common import parse_quantity
from shoal.k8s.client import Kube
from shoal.k8s.paths import pods_path
from testbed import cluster as testbed
from testbed.localpod import free_port
from tests.e2e.util import ROOT, wait_until


def _pod(
    name: str, annotations: dict[str, str] | None = None, limits: dict[str, str] | None = None
) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "1", "memory": "128Mi"}}
    if limits:
        resources["limits"] = limits
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "main", "image": "registry.example/app:1", "resources": resources}]},
    }


def test_pod_runs_on_a_kwok_node_and_its_cpu_usage_reads_back_from_the_metrics_api(
    kube: Kube, namespace: str
) -> None:
    kube.create(pods_path(namespace), _pod("load", {"kwok.x-k8s.io/usage-cpu": "300m"}))
    pod = wait_until(
        lambda: (
            (p := kube.get(pods_path(namespace, "load"))).get("status", {}).get("phase") == "Running" and p
        ),
        60,
        "pod Running",
    )
    assert pod["spec"]["nodeName"].startswith("kwok-")

    kube.merge_patch(
        pods_path(namespace, "load"), {"metadata": {"annotations": {"kwok.x-k8s.io/usage-cpu": "750m"}}}
    )
    client = kubernetes.config.new_client_from_config(str(testbed.KUBECONFIG))  # type: ignore[no-untyped-call]
    metrics_api = kubernetes.client.CustomObjectsApi(client)

    def cpu() -> Decimal | None:
        try:
            m: Any = metrics_api.get_namespaced_custom_object(
                "metrics.k8s.io", "v1beta1", namespace, "pods", "load"
            )
        except kubernetes.client.ApiException:
            return None
        return sum((parse_quantity(c["usage"]["cpu"]) for c in m["containers"]), Decimal(0))

    # metrics-server reports a rate over its last two scrapes, so wait for the new value to settle.
    value = wait_until(
        lambda: (v := cpu()) is not None and abs(v - Decimal("0.75")) < Decimal("0.02") and v,
        90,
        "pod CPU usage 750m from metrics.k8s.io",
    )
    assert abs(value - Decimal("0.75")) < Decimal("0.02")


def test_prometheus_scrapes_a_registered_exporter(cluster: Path) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("shoal_e2e_probe", "A value the test sets", ["run"], registry=registry)
    run_id = f"r{random.randrange(10**9)}"
    value = random.randrange(1, 10**6)
    gauge.labels(run_id).set(value)
    port = free_port()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    target = testbed.PROM_TARGETS / f"{run_id}.json"
    target.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"test": "e2e"}}]))
    try:
        query = urllib.parse.urlencode({"query": f'shoal_e2e_probe{{run="{run_id}"}}'})
        url = f"http://127.0.0.1:{testbed.PORTS['prometheus']}/api/v1/query?{query}"

        def read() -> float | None:
            with urllib.request.urlopen(url, timeout=5) as resp:
                result = json.load(resp)["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        assert wait_until(read, 60, "the exporter's value through Prometheus") == value
    finally:
        target.unlink()
        server.shutdown()


def test_gpu_requests_schedule_on_gpu_nodes_and_are_limited_by_them(kube: Kube, namespace: str) -> None:
    kube.create(pods_path(namespace), _pod("gpu", limits={"nvidia.com/gpu": "1"}))
    kube.create(pods_path(namespace), _pod("too-many", limits={"nvidia.com/gpu": "64"}))
    pod = wait_until(
        lambda: kube.get(pods_path(namespace, "gpu"))["spec"].get("nodeName"), 60, "GPU pod scheduled"
    )
    assert pod.startswith("kwok-gpu-")
    node = kube.get(f"/api/v1/nodes/{pod}")
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"

    def unschedulable() -> bool:
        conds = kube.get(pods_path(namespace, "too-many")).get("status", {}).get("conditions", [])
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conds)

    wait_until(unschedulable, 60, "64-GPU pod reported Unschedulable by the real scheduler")


def test_cluster_up_fails_clearly_when_a_port_is_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"SHOAL_TESTBED_DIR": str(tmp_path), "SHOAL_PORT_ETCD": str(port), "PATH": "/usr/bin:/bin"}
        result = subprocess.run(
            [sys.executable, str(ROOT / "testbed" / "cluster.py"), "up"],
            env={**env, "HOME": str(Path.home())},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert "cannot start etcd" in result.stderr and f"etcd ({port})" in result.stderr
    assert "already in use" in result.stderr


def test_every_node_has_both_addresses_so_metrics_server_can_always_scrape_it(kube: Kube) -> None:
    """With only one of the two, KWOK's node-initialize stage rewrites the list at each resync, and the
    nodes flip between InternalIP only and Hostname only (seen: ten minutes without node metrics)."""
    for node in kube.list_items("/api/v1/nodes"):
        kinds = sorted(a["type"] for a in node["status"].get("addresses", []))
        assert kinds == ["Hostname", "InternalIP"], (node["metadata"]["name"], kinds)
