"""B1 pool throughput: ContainerPools against Deployments (kube-controller-manager), side by side."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import CONTAINER, apiserver_requests, drop_namespace, log, namespace, ready_pods, wait
from bench.stats import quantiles
from shoal.k8s.client import Kube, custom_path
from shoal.times import parse_time


def b1(kube: Kube, objects: int = 200, per: int = 5) -> dict[str, Any]:
    """200 Deployments x 5 (kube-controller-manager) against 200 ContainerPools x 5 (Shoal)."""
    results: dict[str, Any] = {"objects": objects, "pods_each": per}
    for kind in ("Deployment", "ContainerPool"):
        ns = namespace(kube, f"b1-{kind.lower()}")
        before = apiserver_requests(kube)
        created: dict[str, float] = {}
        start = time.time()

        def make(i: int, kind: str = kind, ns: str = ns, created: dict[str, float] = created) -> None:
            name = f"w{i:04d}"
            if kind == "Deployment":
                kube.create(
                    f"/apis/apps/v1/namespaces/{ns}/deployments",
                    {
                        "metadata": {"name": name},
                        "spec": {
                            "replicas": per,
                            "selector": {"matchLabels": {"app": name}},
                            "template": {
                                "metadata": {"labels": {"app": name}},
                                "spec": {"containers": [CONTAINER]},
                            },
                        },
                    },
                )
            else:
                kube.create(
                    custom_path("containerpools", ns),
                    {
                        "apiVersion": "shoal.dev/v1alpha1",
                        "kind": "ContainerPool",
                        "metadata": {"name": name},
                        "spec": {
                            "replicas": per,
                            "template": {
                                "metadata": {"labels": {"app": name}},
                                "spec": {"containers": [CONTAINER]},
                            },
                        },
                    },
                )
            created[name] = time.time()

        log(f"B1: creating {objects} {kind}s x {per}")
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(make, range(objects)))

        def settled(kind: str = kind, ns: str = ns) -> bool:
            if len(ready_pods(kube, ns)) < objects * per:
                return False
            path = (
                f"/apis/apps/v1/namespaces/{ns}/deployments"
                if kind == "Deployment"
                else custom_path("containerpools", ns)
            )
            return all((o.get("status") or {}).get("readyReplicas") == per for o in kube.list_items(path))

        wait(settled, 900, f"{kind}s settled", interval=1.0)
        elapsed = time.time() - start
        requests = apiserver_requests(kube) - before
        latencies = []
        for p in ready_pods(kube, ns):
            owner = p["metadata"]["labels"].get("app")
            ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
            t = parse_time(ready.get("lastTransitionTime"))
            if owner in created and t:
                latencies.append(max(0.0, t.timestamp() - created[owner]))
        q = quantiles(latencies)
        results[kind] = {
            "seconds_to_all_ready_and_status": round(elapsed, 1),
            "api_requests_per_pod": round(requests / (objects * per), 2),
            "create_to_ready_p50_s": round(q.get("p50", float("nan")), 1),
            "create_to_ready_p99_s": round(q.get("p99", float("nan")), 1),
        }
        log(f"B1 {kind}: {results[kind]}")
        drop_namespace(kube, ns)
    results["ratio_pools_vs_deployments"] = round(
        results["ContainerPool"]["seconds_to_all_ready_and_status"]
        / results["Deployment"]["seconds_to_all_ready_and_status"],
        3,
    )
    results["goal_met"] = results["ratio_pools_vs_deployments"] <= 1.0
    return results
