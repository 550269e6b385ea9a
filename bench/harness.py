"""What every benchmark on the test bed shares: an operator process, waits, fresh namespaces, the API
server's request count. Percentiles and provenance are bench/stats.py's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoal.k8s.client import ApiError, Kube, pods_path
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


class Operator:
    def __init__(self, **env: str) -> None:
        self.env = {
            **os.environ,
            "KUBECONFIG": str(testbed.KUBECONFIG),
            "SHOAL_METRICS_PORT": "28080",
            "SHOAL_HEALTH_PORT": "28081",
            # The chart's log level and format: a benchmark pays for the logging a user's operator does.
            "SHOAL_LOG_LEVEL": "INFO",
            "SHOAL_LOG_FORMAT": "json",
            "SHOAL_LEASE_NAMESPACE": "default",
            # A lease of its own per run, at the shipped duration: no wait for an earlier run's to expire.
            "SHOAL_LEASE_NAME": f"shoal-bench-{uuid.uuid4().hex[:6]}",
            "SHOAL_PROMETHEUS_URL": f"http://127.0.0.1:{testbed.PORTS['prometheus']}",
            "PYTHONPATH": str(ROOT / "operator"),
            **env,
        }
        # The log goes to a file, as a kubelet keeps a container's; SHOAL_BENCH_OPERATOR_LOG names another.
        log_path = os.environ.get("SHOAL_BENCH_OPERATOR_LOG") or str(testbed.LOGS / "bench-operator.log")
        self.log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shoal"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT
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
        self.log.close()


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
