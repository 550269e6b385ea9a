"""Memory over a long run with churn: is the operator's footprint flat, or does something it keeps per
object outlive the object?

One operator process (this tree) against the test bed. Every cycle creates, under new names, a
ContainerPool, a WorkerScaler that scales it from a Prometheus query, and a TrainingSession that asks
for more than any node has (it stays queued, re-judged by admission), and deletes the ones made three
cycles before; every few cycles the objects move to a new namespace and the old one is deleted, so
per-namespace and per-object state (caches, work-queue entries, metric label sets, Event correlation)
must be dropped for memory to stay flat. New names matter: reusing names would hide a leak per name.

Sampled every 10 s: the operator's RSS (psutil) and the number of series on its /metrics. The verdict
compares the median RSS of the last five minutes with the five minutes after warm-up. Usage (test bed up):

    python -m bench.soak --minutes 30
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.stats import provenance
from testbed.config import TestbedError
from testbed.operator_process import OperatorProcess
from testbed.seed import kubectl

RESULTS = Path(__file__).resolve().parent / "results"
CYCLE_SECONDS = 20.0
KEEP_CYCLES = 3  # objects live this many cycles
CYCLES_PER_NAMESPACE = 6
WARMUP_SECONDS = 300.0
WINDOW_SECONDS = 300.0
FLAT_TOLERANCE = 0.05  # last window's median RSS within 5 % of the first's


def objects(ns: str, i: int, rng: random.Random) -> list[dict[str, Any]]:
    pool = f"pool-{i}"
    return [
        {
            "apiVersion": "shoal.dev/v1alpha1",
            "kind": "ContainerPool",
            "metadata": {"name": pool, "namespace": ns},
            "spec": {
                "replicas": rng.randint(1, 3),
                "template": {"spec": {"containers": [{"name": "w", "image": "registry.example/w:1"}]}},
                "resources": {"cpu": "100m", "memory": "64Mi"},
            },
        },
        {
            "apiVersion": "shoal.dev/v1alpha1",
            "kind": "WorkerScaler",
            "metadata": {"name": f"scaler-{i}", "namespace": ns},
            "spec": {
                "targetRef": {"apiVersion": "shoal.dev/v1alpha1", "kind": "ContainerPool", "name": pool},
                "minReplicas": 1,
                "maxReplicas": 4,
                "pollIntervalSeconds": 5,
                "metrics": [
                    {
                        "type": "Prometheus",
                        "prometheus": {"query": f"vector({rng.randint(5, 40)})", "targetPerReplica": 10},
                    }
                ],
            },
        },
        {
            "apiVersion": "shoal.dev/v1alpha1",
            "kind": "TrainingSession",
            "metadata": {"name": f"session-{i}", "namespace": ns},
            "spec": {
                "game": "CartPole-v1",
                "algorithm": "PPO",
                "image": "registry.example/trainer:1",
                "totalTimesteps": 1000,
                "resources": {"cpu": "400", "memory": "1Gi"},  # more than any node: stays queued
            },
        },
    ]


def series(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def namespace_of(cycle: int, run: str) -> str:
    return f"soak-{run}-{cycle // CYCLES_PER_NAMESPACE}"


def soak(minutes: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:4]
    workdir = Path(tempfile.mkdtemp(prefix="shoal-soak-"))
    # The shared launcher, at the chart's log level.
    op = OperatorProcess(
        log_file=workdir / "operator.log", env={"SHOAL_LEASE_NAME": f"soak-{run}", "PATH": "/usr/bin:/bin"}
    )
    op.start(ready=False)
    assert op.proc is not None
    proc = psutil.Process(op.proc.pid)
    samples: list[dict[str, float]] = []
    made: dict[int, str] = {}
    namespaces: set[str] = set()
    counts = {"created": 0, "deleted": 0, "namespaces_deleted": 0, "apply_errors": 0}
    start = time.monotonic()
    end = start + minutes * 60
    next_cycle, next_sample, cycle = start, start, 0
    try:
        while time.monotonic() < end:
            if not op.running():
                raise RuntimeError(f"the operator exited; see {workdir}/operator.log")
            now = time.monotonic()
            if now >= next_cycle:
                ns = namespace_of(cycle, run)
                if ns not in namespaces:
                    kubectl("create", "namespace", ns)
                    namespaces.add(ns)
                try:
                    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects(ns, cycle, rng)))
                    made[cycle] = ns
                    counts["created"] += 3
                except TestbedError:
                    counts["apply_errors"] += 1
                old = cycle - KEEP_CYCLES
                if old in made:
                    old_ns = made.pop(old)
                    kubectl(
                        "delete", "-n", old_ns, "--wait=false", "--ignore-not-found",
                        f"containerpool/pool-{old}", f"workerscaler/scaler-{old}", f"trainingsession/session-{old}",
                    )  # fmt: skip
                    counts["deleted"] += 3
                for gone in sorted(n for n in namespaces if n not in made.values() and n != ns):
                    kubectl("delete", "namespace", gone, "--wait=false")
                    namespaces.discard(gone)
                    counts["namespaces_deleted"] += 1
                cycle += 1
                next_cycle += CYCLE_SECONDS
            if now >= next_sample:
                try:
                    n_series = series(op.metrics_port)
                except OSError:
                    n_series = -1
                samples.append(
                    {
                        "t": round(now - start, 1),
                        "rss_mib": round(proc.memory_info().rss / 2**20, 2),
                        "threads": proc.num_threads(),
                        "series": n_series,
                    }
                )
                next_sample += 10.0
            time.sleep(max(0.05, min(next_cycle, next_sample) - time.monotonic()))  # the schedule's pace
    finally:
        op.stop()
        for ns in namespaces:
            with contextlib.suppress(TestbedError):
                kubectl("delete", "namespace", ns, "--wait=false")
    return {"cycles": cycle, "counts": counts, "samples": samples, "log": str(workdir / "operator.log")}


def verdict(samples: list[dict[str, float]]) -> dict[str, Any]:
    """Medians of RSS and series over the window after warm-up and the last window; the slope over
    everything after warm-up (least squares), as MiB per hour."""
    after = [s for s in samples if s["t"] >= WARMUP_SECONDS]
    if len(after) < 4:
        return {"flat": None, "why": "too short for a window after warm-up"}
    first = [s for s in after if s["t"] < WARMUP_SECONDS + WINDOW_SECONDS]
    last = [s for s in after if s["t"] > after[-1]["t"] - WINDOW_SECONDS]
    rss_first = statistics.median(s["rss_mib"] for s in first)
    rss_last = statistics.median(s["rss_mib"] for s in last)
    slope = statistics.linear_regression([s["t"] for s in after], [s["rss_mib"] for s in after]).slope
    return {
        "rss_first_window_mib": round(rss_first, 1),
        "rss_last_window_mib": round(rss_last, 1),
        "rss_growth": round(rss_last / rss_first - 1, 4),
        "rss_slope_mib_per_hour": round(slope * 3600, 2),
        "series_first_window": statistics.median(s["series"] for s in first),
        "series_last_window": statistics.median(s["series"] for s in last),
        "threads_max": max(s["threads"] for s in samples),
        "flat": rss_last <= rss_first * (1 + FLAT_TOLERANCE),
    }


def plot(samples: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(
        [s["t"] / 60 for s in samples], [s["rss_mib"] for s in samples], color="tab:red", label="RSS (MiB)"
    )
    ax.axvline(WARMUP_SECONDS / 60, color="0.6", linestyle=":", label="end of warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MiB")
    ax2 = ax.twinx()
    ax2.plot(
        [s["t"] / 60 for s in samples],
        [s["series"] for s in samples],
        color="tab:blue",
        label="/metrics series",
    )
    ax2.set_ylabel("series")
    fig.legend(fontsize=7, loc="upper left")
    ax.set_title("Operator memory under churn")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    out = provenance() | {"minutes": args.minutes, "cycle_seconds": CYCLE_SECONDS}
    out |= soak(args.minutes, args.seed)
    out["verdict"] = verdict(out["samples"])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(out, indent=1) + "\n")
    plot(out["samples"], RESULTS / "soak.png")
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
