"""Benchmarks on the test bed, one module each (b1, b3, b4, b6, agent's b7, b9), on one operator process:
each runs Shoal and its baseline in the same cluster and run, and cleans up. Each result is handed to
`done` as soon as its benchmark ends."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from bench import b1, b4, b6, plan
from bench.harness import Operator, settle
from shoal.k8s.client import Kube, load_config
from testbed import cluster as testbed
from testbed import seed


def run_all(which: list[str], quick: bool, done: Callable[[str, dict[str, Any]], None]) -> None:
    os.environ["KUBECONFIG"] = str(testbed.KUBECONFIG)
    kube = Kube(load_config(pool_size=24))
    seed.install_crds()
    if "B1" in which:  # first, with operators of its own (one per client-limit setting)
        done("B1", b1.b1(kube, **plan.sizes("B1", quick)))
    # One operator shared by the benchmarks that measure it working (B3, B9) or need one running
    # (B6, B7). B4 runs its own, and alone: a second operator beside it (another Lease, so also
    # leading) would reconcile the same pools and scalers, and B4 would measure both at work.
    shared = [k for k in ("B3", "B6", "B7", "B9") if k in which]
    if shared:
        op = Operator()
        try:
            for key in shared:
                if key == "B3":
                    from bench import b3

                    done("B3", b3.bench(kube, op, **plan.sizes("B3", quick)))
                elif key == "B6":
                    done("B6", b6.b6(kube, **plan.sizes("B6", quick)))
                elif key == "B7":
                    from bench import agent

                    done("B7", agent.b7(kube, **plan.sizes("B7", quick)))
                elif key == "B9":
                    from bench import b9

                    done("B9", b9.bench(kube, op, **plan.sizes("B9", quick)))
        finally:
            settle(kube)  # what the benchmarks dropped is gone while their operator still runs
            op.stop()
    if "B4" in which:  # last: it leaves 5,000 pods to delete
        try:
            done("B4", b4.b4(kube, **plan.sizes("B4", quick)))
        finally:
            settle(kube)
