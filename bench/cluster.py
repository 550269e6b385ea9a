"""Benchmarks on the test bed, one module each (b1, b3, b4, b6, agent's b7, b9), on one operator process:
each runs Shoal and its baseline in the same cluster and run, and cleans up."""

from __future__ import annotations

import os
from typing import Any

from bench import b1, b4, b6
from bench.harness import Operator
from shoal.k8s.client import Kube, load_config
from testbed import cluster as testbed
from testbed import seed


def run_all(which: set[str]) -> dict[str, Any]:
    os.environ["KUBECONFIG"] = str(testbed.KUBECONFIG)
    kube = Kube(load_config(pool_size=16))
    seed.install_crds()
    results: dict[str, Any] = {}
    if "B1" in which:  # first, with operators of its own (one per client-limit setting)
        results["B1"] = b1.b1(kube)
    op = Operator()
    try:
        if "B3" in which:
            from bench import b3

            results["B3"] = b3.bench(kube, reps=int(os.environ.get("SHOAL_BENCH_B3_REPS", "2")))
        if "B6" in which:
            results["B6"] = b6.b6(kube)
        if "B7" in which:
            from bench import agent

            results["B7"] = agent.b7(kube)
        if "B9" in which:
            from bench import b9

            results["B9"] = b9.bench(kube, op_pid=op.proc.pid)
        if "B4" in which:
            results["B4"] = b4.b4(kube, op)
    finally:
        op.stop()
    return results
