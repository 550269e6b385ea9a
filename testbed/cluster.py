#!/usr/bin/env python3
"""A real Kubernetes control plane run as local processes, loopback only.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the real binaries built by
``build.sh``; KWOK simulates nodes and pods (and their CPU/memory usage); metrics-server serves
``metrics.k8s.io``; Prometheus (Debian's package) scrapes the cluster and a file-based target
directory that tests drop their own exporters into.

Usage: cluster.py up | down | status | env | stop COMPONENT | start COMPONENT | kubeflow-up | kubeflow-down

kubeflow-up starts Kubeflow Trainer and JobSet as well (testbed/kubeflow.py): then the test bed serves
TrainJobs, and Shoal runs its gangs as TrainJobs; kubeflow-down removes them and their CRDs again.

Only the standard library is used, so this runs before the project's dependencies are installed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script (make cluster-up): the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.components import BY_NAME, COMPONENTS, KUBEFLOW
from testbed.config import (
    CACHE,
    HOST,
    KUBECONFIG,
    LOGS,
    PKI,
    PORTS,
    PROM_TARGETS,
    STATE,
    TestbedError,
    binary,
    log,
    versions,
)
from testbed.pki import ensure_pki, write_kubeconfig
from testbed.processes import pid_of, start, stop
from testbed.seed import (
    NODES,
    kubectl,
    metrics_api_manifests,
    node_manifests,
    storage_manifests,
    write_kwok_config,
    write_prometheus_config,
)

# --- commands -----------------------------------------------------------------------------------

# What tests and benchmarks import from here (the modules above hold them).
__all__ = [
    "CACHE",
    "HOST",
    "KUBECONFIG",
    "LOGS",
    "PKI",
    "PORTS",
    "PROM_TARGETS",
    "STATE",
    "TestbedError",
    "binary",
    "down",
    "log",
    "main",
    "start",
    "status",
    "stop",
    "up",
    "versions",
]


def running() -> bool:
    return pid_of("kube-apiserver") is not None and BY_NAME["kube-apiserver"].health()


def up() -> None:
    t0 = time.monotonic()
    if running() and all(pid_of(c.name) for c in COMPONENTS):
        log(f"already running; KUBECONFIG={KUBECONFIG}")
        return
    for c in COMPONENTS:
        binary(c.name)  # fail early with a clear message when a binary is missing
    binary("kubectl")
    if not any(pid_of(c.name) for c in COMPONENTS):
        # A fresh cluster each time: stale etcd data would leak objects between test runs.
        for d in ("etcd", "prometheus/data"):
            shutil.rmtree(STATE / d, ignore_errors=True)
        for f in PROM_TARGETS.glob("*.json") if PROM_TARGETS.exists() else []:
            f.unlink()
    STATE.mkdir(parents=True, exist_ok=True)
    ensure_pki()
    write_kubeconfig()
    write_kwok_config()
    write_prometheus_config()
    for c in COMPONENTS[:4]:
        start(c.name)
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=node_manifests())
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=storage_manifests())
    start("kwok")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=metrics_api_manifests())
    start("metrics-server")
    start("prometheus")
    wait_for(lambda: "kwok-gpu-1" in kubectl("get", "nodes", "--no-headers"), 60, "nodes registered")
    wait_for(nodes_ready, 60, "all nodes Ready")
    log(f"cluster up in {time.monotonic() - t0:.1f}s; export KUBECONFIG={KUBECONFIG}")


def nodes_ready() -> bool:
    out = kubectl(
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{' '}{end}",
    )
    states = out.split()
    return len(states) == len(NODES) and all(s == "True" for s in states)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except TestbedError:
            pass
        time.sleep(0.5)
    raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what}")


def down() -> None:
    for c in (*reversed(KUBEFLOW), *reversed(COMPONENTS)):  # Kubeflow's, if a test left them running
        stop(c.name)
    log("cluster down")


def status() -> int:
    bad = 0
    for c in COMPONENTS:
        pid = pid_of(c.name)
        healthy = bool(pid) and c.health()
        bad += not healthy
        print(
            f"{c.name:25} {'running' if pid else 'stopped':8} pid={pid or '-':<8} "
            f"port={PORTS[c.port_names[0]]:<6} {'healthy' if healthy else 'unhealthy'}"
        )
    print(f"KUBECONFIG={KUBECONFIG}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command", choices=["up", "down", "status", "env", "stop", "start", "kubeflow-up", "kubeflow-down"]
    )
    parser.add_argument("component", nargs="?", choices=sorted(BY_NAME))
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        elif args.command == "status":
            return status()
        elif args.command in ("kubeflow-up", "kubeflow-down"):
            from testbed import kubeflow

            kubeflow.up() if args.command == "kubeflow-up" else kubeflow.down()
        elif args.command == "env":
            print(f"export KUBECONFIG={KUBECONFIG}")
        elif args.component is None:
            parser.error(f"{args.command} needs a component")
        elif args.command == "stop":
            stop(args.component)
        else:
            start(args.component)
    except TestbedError as exc:
        log(f"ERROR: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
