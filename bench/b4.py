"""B4 the operator's footprint: memory and CPU while it runs many scalers."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import CONTAINER, Operator, drop_namespace, log, namespace, ready_pods, wait
from shoal.k8s.client import Kube, custom_path


def b4(
    kube: Kube,
    op: Operator,
    namespaces: int = 10,
    pools_per_ns: int = 100,
    pods: int = 5,
    scalers_per_ns: int = 50,
    window: float = 60.0,
) -> dict[str, Any]:
    """Operator RSS and CPU while it manages 1,000 pools / 5,000 pods and 500 scalers polling every 15 s."""
    import psutil

    proc = psutil.Process(op.proc.pid)
    spaces = [namespace(kube, "b4") for _ in range(namespaces)]
    total_pods = namespaces * pools_per_ns * pods
    log(f"B4: {namespaces * pools_per_ns} pools x {pods} pods in {namespaces} namespaces")

    def make_pool(job: tuple[str, int]) -> None:
        ns, i = job
        kube.create(
            custom_path("containerpools", ns),
            {
                "apiVersion": "shoal.dev/v1alpha1",
                "kind": "ContainerPool",
                "metadata": {"name": f"p{i:03d}"},
                "spec": {"replicas": pods, "template": {"spec": {"containers": [CONTAINER]}}},
            },
        )

    started = time.time()
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(make_pool, [(ns, i) for ns in spaces for i in range(pools_per_ns)]))

    def all_ready() -> bool:
        return sum(len(ready_pods(kube, ns)) for ns in spaces) >= total_pods

    wait(all_ready, 1200, "5,000 pods ready", interval=5.0)
    log(
        f"B4: {total_pods} pods ready after {time.time() - started:.0f}s; creating {namespaces * scalers_per_ns} scalers"
    )

    def make_scaler(job: tuple[str, int]) -> None:
        ns, i = job
        kube.create(
            custom_path("workerscalers", ns),
            {
                "apiVersion": "shoal.dev/v1alpha1",
                "kind": "WorkerScaler",
                "metadata": {"name": f"s{i:03d}"},
                "spec": {
                    "targetRef": {
                        "apiVersion": "shoal.dev/v1alpha1",
                        "kind": "ContainerPool",
                        "name": f"p{i:03d}",
                    },
                    "minReplicas": pods,
                    "maxReplicas": pods,
                    "pollIntervalSeconds": 15,
                    "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 50}}
                    ],
                },
            },
        )

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(make_scaler, [(ns, i) for ns in spaces for i in range(scalers_per_ns)]))

    def evaluated() -> bool:
        done = sum(
            1
            for ns in spaces
            for sc in kube.list_items(custom_path("workerscalers", ns))
            if (sc.get("status") or {}).get("currentReplicas") is not None
        )
        return done >= namespaces * scalers_per_ns

    wait(evaluated, 600, "every scaler evaluated", interval=5.0)

    def evaluations() -> float:
        for line in op.metrics().splitlines():
            if line.startswith('shoal_reconcile_duration_seconds_count{kind="WorkerScaler"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    log(f"B4: steady state, measuring for {window:.0f}s")
    cpu0, ev0, t0 = sum(proc.cpu_times()[:2]), evaluations(), time.monotonic()
    rss = []
    while time.monotonic() - t0 < window:
        rss.append(proc.memory_info().rss)
        time.sleep(1.0)  # sampling period of the measurement
    elapsed = time.monotonic() - t0
    cores = (sum(proc.cpu_times()[:2]) - cpu0) / elapsed
    out = {
        "pools": namespaces * pools_per_ns,
        "pods": total_pods,
        "scalers": namespaces * scalers_per_ns,
        "poll_interval_s": 15,
        "rss_mib_max": round(max(rss) / 2**20, 1),
        "rss_mib_end": round(rss[-1] / 2**20, 1),
        "cpu_cores_avg": round(cores, 3),
        "scaler_reconciles_per_s": round((evaluations() - ev0) / elapsed, 1),
        "window_s": round(elapsed),
        "goal": {"rss_mib": 200, "cpu_cores": 0.25},
    }
    out["goal_met"] = max(rss) / 2**20 <= 200 and cores <= 0.25
    log(f"B4: {out}")
    for ns in spaces:
        drop_namespace(kube, ns)
    return out
