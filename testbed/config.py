"""Paths, ports, pinned versions and binaries of the test bed."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("SHOAL_CACHE", Path.home() / ".cache" / "shoal"))
STATE = Path(os.environ.get("SHOAL_TESTBED_DIR", CACHE / "testbed"))
PKI = STATE / "pki"
LOGS = STATE / "logs"
PIDS = STATE / "pids"
KUBECONFIG = STATE / "kubeconfig"
PROM_TARGETS = STATE / "prometheus" / "targets"
HOST = "127.0.0.1"

# Ports sit away from the defaults so that a developer's own cluster (kind, minikube) does not clash.
PORTS = {
    "etcd": 12379,
    "etcd-peer": 12380,
    "kube-apiserver": 16443,
    "kube-controller-manager": 20257,
    "kube-scheduler": 20259,
    "kwok": 20247,
    "metrics-server": 20443,
    "prometheus": 19090,
    "jobset-webhook": 20910,
    "jobset-metrics": 20911,
    "jobset-health": 20912,
    "trainer-webhook": 20913,
    "trainer-health": 20914,
}
for _name in list(PORTS):
    _override = os.environ.get("SHOAL_PORT_" + _name.upper().replace("-", "_"))
    if _override:
        PORTS[_name] = int(_override)


def log(msg: str) -> None:
    print(f"[testbed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class TestbedError(RuntimeError):
    pass


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def binary(component: str) -> Path:
    v = versions()
    dirs = {
        "etcd": f"etcd-{v['ETCD_VERSION']}",
        "kwok": f"kwok-{v['KWOK_VERSION']}",
        "metrics-server": f"metrics-server-{v['METRICS_SERVER_VERSION']}",
        "jobset": f"jobset-{v['JOBSET_VERSION']}",
        "trainer-controller-manager": f"trainer-controller-manager-{v['KUBEFLOW_TRAINER_VERSION']}",
    }
    path = CACHE / "bin" / dirs.get(component, f"kubernetes-{v['KUBERNETES_VERSION']}") / component
    if component == "prometheus":
        found = shutil.which("prometheus") or "/usr/bin/prometheus"
        path = Path(found)
    if not path.exists():
        hint = "apt-get install prometheus" if component == "prometheus" else "make testbed-build"
        raise TestbedError(f"{component} binary not found at {path}; run `{hint}` first")
    return path


def kwok_assets() -> Path:
    return CACHE / "bin" / f"kwok-{versions()['KWOK_VERSION']}" / "assets"
