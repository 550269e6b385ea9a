"""Benchmarks on the test bed: B1 pools vs Deployments, B3 (bench/b3.py) warm vs cold session starts, B6 reaction vs HPA.

Each runs Shoal and its baseline in the same cluster and run, one after the other, and cleans up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from shoal.k8s.client import ApiError, Kube, custom_path, load_config, pods_path
from shoal.times import parse_time
from testbed import cluster as testbed

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout:.0f}s")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class Operator:
    def __init__(self, **env: str) -> None:
        self.env = {
            **os.environ,
            "KUBECONFIG": str(testbed.KUBECONFIG),
            "SHOAL_METRICS_PORT": "28080",
            "SHOAL_HEALTH_PORT": "28081",
            "SHOAL_LOG_LEVEL": "WARNING",
            "SHOAL_LEASE_NAMESPACE": "default",
            "SHOAL_LEASE_NAME": "shoal-bench",
            "SHOAL_LEASE_DURATION_SECONDS": "4",
            "SHOAL_PROMETHEUS_URL": f"http://127.0.0.1:{testbed.PORTS['prometheus']}",
            "PYTHONPATH": str(ROOT / "operator"),
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shoal"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait(self._healthy, 30, "operator up")
        wait(lambda: "shoal_leader 1.0" in self.metrics(), 30, "operator leading")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen("http://127.0.0.1:28081/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen("http://127.0.0.1:28080/metrics", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def apiserver_requests(kube: Kube) -> float:
    url = f"https://127.0.0.1:{testbed.PORTS['kube-apiserver']}/metrics"
    resp = kube.api.call_api("GET", url, header_params={"Accept": "text/plain"})
    text = resp.read().decode()  # type: ignore[no-untyped-call]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{")
    )


_DELETED: list[str] = []


def namespace(kube: Kube, prefix: str) -> str:
    """A fresh namespace, once every dropped one is fully deleted: each measurement starts on a
    quiet cluster, not beside the garbage collection of the previous one's pods."""
    wait(
        lambda: not any(_exists(kube, f"/api/v1/namespaces/{n}") for n in _DELETED),
        600,
        "earlier benchmark namespaces deleted",
        interval=1.0,
    )
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    wait(lambda: _exists(kube, f"/api/v1/namespaces/{name}/serviceaccounts/default"), 60, "default SA")
    return name


def drop_namespace(kube: Kube, ns: str) -> None:
    kube.delete(f"/api/v1/namespaces/{ns}")
    _DELETED.append(ns)


def _exists(kube: Kube, path: str) -> bool:
    try:
        kube.get(path)
    except ApiError:
        return False
    return True


def ready_pods(kube: Kube, ns: str) -> list[dict[str, Any]]:
    out = []
    for p in kube.list_items(pods_path(ns)):
        conds = {c["type"]: c for c in p.get("status", {}).get("conditions") or []}
        if conds.get("Ready", {}).get("status") == "True" and not p["metadata"].get("deletionTimestamp"):
            out.append(p)
    return out


CONTAINER = {
    "name": "w",
    "image": "registry.example/w:1",
    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
}


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
        results[kind] = {
            "seconds_to_all_ready_and_status": round(elapsed, 1),
            "api_requests_per_pod": round(requests / (objects * per), 2),
            "create_to_ready_p50_s": round(pct(latencies, 0.5), 1),
            "create_to_ready_p99_s": round(pct(latencies, 0.99), 1),
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


def run_all(which: set[str]) -> dict[str, Any]:
    os.environ["KUBECONFIG"] = str(testbed.KUBECONFIG)
    kube = Kube(load_config(pool_size=16))
    op = Operator()
    results: dict[str, Any] = {}
    try:
        if "B1" in which:
            results["B1"] = b1(kube)
        if "B3" in which:
            from bench import b3

            results["B3"] = b3.bench(kube)
        if "B6" in which:
            results["B6"] = b6(kube)
        if "B7" in which:
            from bench import agent

            results["B7"] = agent.b7(kube)
        if "B4" in which:
            results["B4"] = b4(kube, op)
    finally:
        op.stop()
    return results
