"""B6 reaction to a load step: Shoal's scaler against the HPA, in the same cluster and run."""

from __future__ import annotations

import json
import time
from typing import Any

from bench.harness import CONTAINER, drop_namespace, log, namespace, wait
from shoal.k8s.client import Kube, custom_path, pods_path
from testbed import cluster as testbed


def b6(kube: Kube) -> dict[str, Any]:
    """Time from a metric crossing the threshold to the replica patch: Shoal on Prometheus vs HPA on CPU."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    ns = namespace(kube, "b6")
    out: dict[str, Any] = {}
    reg = CollectorRegistry()
    gauge = Gauge("bench_queue", "q", registry=reg)
    gauge.set(5)
    server, _ = start_http_server(28999, addr="127.0.0.1", registry=reg)
    target = testbed.PROM_TARGETS / "bench-b6.json"
    target.write_text('[{"targets": ["127.0.0.1:28999"]}]')
    try:
        for name in ("shoal", "hpa"):
            kube.create(
                f"/apis/apps/v1/namespaces/{ns}/deployments",
                {
                    "metadata": {"name": name},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {
                                "labels": {"app": name},
                                "annotations": {"kwok.x-k8s.io/usage-cpu": "50m"},
                            },
                            "spec": {"containers": [{**CONTAINER, "resources": {"requests": {"cpu": "1"}}}]},
                        },
                    },
                },
            )
        kube.create(
            custom_path("workerscalers", ns),
            {
                "apiVersion": "shoal.dev/v1alpha1",
                "kind": "WorkerScaler",
                "metadata": {"name": "shoal"},
                "spec": {
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shoal"},
                    "minReplicas": 1,
                    "maxReplicas": 10,
                    "pollIntervalSeconds": 15,
                    "metrics": [
                        {
                            "type": "Prometheus",
                            "prometheus": {"query": "sum(bench_queue)", "targetPerReplica": 10},
                        }
                    ],
                },
            },
        )
        kube.create(
            f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
            {
                "metadata": {"name": "hpa"},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hpa"},
                    "minReplicas": 1,
                    "maxReplicas": 10,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": 50},
                            },
                        }
                    ],
                },
            },
        )
        wait(
            lambda: (
                "ScalingActive"
                in json.dumps(kube.get(custom_path("workerscalers", ns, "shoal")).get("status", {}))
            ),
            60,
            "scaler active",
        )
        wait(
            lambda: (
                kube.get(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/hpa")
                .get("status", {})
                .get("currentMetrics")
            ),
            120,
            "HPA reading metrics",
            interval=1.0,
        )
        t0 = time.time()
        gauge.set(35)  # 35/10 -> 4 replicas
        for p in kube.list_items(pods_path(ns), "app=hpa"):
            kube.merge_patch(
                pods_path(ns, p["metadata"]["name"]),
                {"metadata": {"annotations": {"kwok.x-k8s.io/usage-cpu": "1"}}},
            )
        moved: dict[str, float] = {}
        # Both targets are checked on every pass; each records its own time when it is first seen moved.

        def both() -> bool:
            for name in ("shoal", "hpa"):
                if (
                    name not in moved
                    and kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")["spec"]["replicas"] > 1
                ):
                    moved[name] = time.time() - t0
            return len(moved) == 2

        wait(both, 180, "both scaled", interval=0.1)
        out = {
            "shoal_prometheus_s": round(moved["shoal"], 2),
            "hpa_cpu_s": round(moved["hpa"], 2),
            "poll_interval_s": 15,
            "prometheus_scrape_s": 2,
            "metrics_server_resolution_s": 10,
            "goal_met": moved["shoal"] <= 15 + 2 + 1,
        }
        log(f"B6: {out}")
    finally:
        target.unlink(missing_ok=True)
        server.shutdown()
        drop_namespace(kube, ns)
    return out
