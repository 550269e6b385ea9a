"""B6 reaction to a load step: Shoal's scaler against the HPA, in the same cluster and run.

Each trial makes three fresh Deployments, each with its own scaler: Shoal on the Resource metric
(metrics-server CPU, the source HPA reads), the HPA on the same, and Shoal on a Prometheus gauge.
Each scaler is created at its own random offset within one poll period (created together, they
would poll in lock-step), and once all three read their metric the step waits a random time of up
to one poll period, so it lands at a uniformly random moment of every scaler's cycle. The reaction is the time from
the step until the Deployment's spec.replicas changes, each scaler at the defaults a user gets.
"""

from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import plan
from bench.harness import CONTAINER, drop_namespace, log, namespace, wait
from bench.stats import median_ratio_interval, provenance, quantiles
from shoal.api.common import parse_quantity
from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, pods_path
from testbed import cluster as testbed

POLL_S = 15  # Shoal's default pollIntervalSeconds and HPA's default sync period
# Deployment (and scaler) name -> how it is scaled.
SCALERS = ("shoal-resource", "hpa", "shoal-prometheus")
SERVED = "served"  # when metrics-server first served the step: no reader of it can move before
GOAL_RATIO = 0.5  # Shoal's median reaction on the same metric source <= 0.5x HPA's
PORT = 28999
CPU = {"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 50}}


def _deployment(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"kwok.x-k8s.io/usage-cpu": "50m"}},
                "spec": {"containers": [{**CONTAINER, "resources": {"requests": {"cpu": "1"}}}]},
            },
        },
    }


def _scaler(name: str, metric: dict[str, Any]) -> dict[str, Any]:
    """A WorkerScaler with nothing but what it must have: the defaults a user gets."""
    return {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "WorkerScaler",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "maxReplicas": 10,
            "metrics": [metric],
        },
    }


def _hpa(name: str) -> dict[str, Any]:
    target = {"type": "Utilization", "averageUtilization": 50}
    return {
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
        },
    }


def _hpa_path(ns: str) -> str:
    return f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"


def _reading(kube: Kube, ns: str, name: str) -> bool:
    """Whether the scaler has read its metric at least once."""
    if name == "hpa":
        hpa = kube.get(f"{_hpa_path(ns)}/{name}")
        return bool(hpa.get("status", {}).get("currentMetrics"))
    status = kube.get(custom_path("workerscalers", ns, name)).get("status", {})
    return any(
        c.get("type") == "ScalingActive" and c.get("status") == "True" for c in status.get("conditions", [])
    )


def _served(kube: Kube, ns: str) -> bool:
    """Whether metrics-server serves the step (at least 0.9 of a core) for every pod of both CPU targets."""
    items = kube.list_items(
        f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods", "app in (shoal-resource,hpa)"
    )
    cpu = [sum(float(parse_quantity(c["usage"]["cpu"])) for c in m["containers"]) for m in items]
    return len(cpu) >= 2 and min(cpu) >= 0.9


def trial(kube: Kube, gauge: Any, k: int, rng: random.Random) -> dict[str, float]:
    """One step, the reaction of each scaler in seconds (a namespace, metric series and random draws
    of its own, so trials can run side by side)."""
    ns = namespace(kube, f"b6-{k}")
    query = f'sum(bench_queue{{trial="{k}"}})'
    try:
        gauge.labels(trial=str(k)).set(5)
        for name in SCALERS:
            kube.create(f"/apis/apps/v1/namespaces/{ns}/deployments", _deployment(name))
        prom = {"type": "Prometheus", "prometheus": {"query": query, "targetPerReplica": 10}}
        objects = {
            "shoal-resource": (custom_path("workerscalers", ns), _scaler("shoal-resource", CPU)),
            "shoal-prometheus": (custom_path("workerscalers", ns), _scaler("shoal-prometheus", prom)),
            "hpa": (_hpa_path(ns), _hpa("hpa")),
        }
        # Each scaler starts its cycle at its own random offset, so no two poll in lock-step.
        start = time.monotonic()
        for offset, name in sorted((rng.uniform(0, POLL_S), n) for n in SCALERS):
            time.sleep(max(0.0, start + offset - time.monotonic()))
            kube.create(*objects[name])
        wait(lambda: all(_reading(kube, ns, n) for n in SCALERS), 180, "all three reading", interval=1.0)
        # The random phase; not a synchronisation: every scaler is already reading.
        time.sleep(rng.uniform(0, POLL_S))
        t0 = time.monotonic()
        gauge.labels(trial=str(k)).set(35)  # 35 / 10 per replica -> 4
        for name in ("shoal-resource", "hpa"):
            for p in kube.list_items(pods_path(ns), f"app={name}"):
                kube.merge_patch(
                    pods_path(ns, p["metadata"]["name"]),
                    {"metadata": {"annotations": {"kwok.x-k8s.io/usage-cpu": "1"}}},
                )
        moved: dict[str, float] = {}

        def all_moved() -> bool:
            # One list per pass; each target records its own time when first seen moved, and when
            # metrics-server first served the step for both CPU targets' pods (one scrape serves both).
            now = time.monotonic()
            if SERVED not in moved and _served(kube, ns):
                moved[SERVED] = round(now - t0, 2)
            for d in kube.list_items(f"/apis/apps/v1/namespaces/{ns}/deployments"):
                name = d["metadata"]["name"]
                if name not in moved and d["spec"]["replicas"] > 1:
                    moved[name] = round(now - t0, 2)
            return len(moved) == len(SCALERS) + 1

        wait(all_moved, 180, "all three scaled", interval=0.1)
        return moved
    finally:
        gauge.remove(str(k))
        drop_namespace(kube, ns)


def b6(kube: Kube, trials: int = 60, side_by_side: int = 5) -> dict[str, Any]:
    """`trials` trials, `side_by_side` at a time: each waits most of its time on poll periods, and a
    few more scalers do not load the operator, HPA or metrics-server (B4 runs hundreds)."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    seed = int(os.environ.get("SHOAL_BENCH_SEED", str(int(time.time()))))
    out: dict[str, Any] = {
        **provenance(),
        "poll_s": POLL_S,
        "seed": seed,
        "side_by_side": side_by_side,
        "prometheus_scrape_s": 2,
        "metrics_server_resolution_s": 10,
    }
    reg = CollectorRegistry()
    gauge = Gauge("bench_queue", "the benchmark's queue depth", ["trial"], registry=reg)
    server, _ = start_http_server(PORT, addr="127.0.0.1", registry=reg)
    target = testbed.PROM_TARGETS / "bench-b6.json"
    target.write_text(json.dumps([{"targets": [f"127.0.0.1:{PORT}"]}]))
    done: dict[int, dict[str, float]] = {}

    def one(k: int) -> None:
        done[k] = trial(kube, gauge, k, random.Random(seed * 1000 + k))
        log(f"B6 trial {k + 1} ({len(done)}/{trials} done): {done[k]}")

    try:
        with ThreadPoolExecutor(side_by_side) as ex:
            list(ex.map(one, range(trials)))
    finally:
        target.unlink(missing_ok=True)
        server.shutdown()
    # In trial order, so the i-th values of every scaler come from the same trial (paired).
    raw = {n: [done[k][n] for k in sorted(done)] for n in SCALERS}
    served = [done[k][SERVED] for k in sorted(done)]
    out["served_s"] = served
    # Where each CPU scaler's time went: waiting for metrics-server's next scrape, then its own.
    out["after_served"] = {
        n: quantiles([round(t - w, 2) for t, w in zip(raw[n], served, strict=True)])
        for n in ("shoal-resource", "hpa")
    }
    out["served"] = quantiles(served)
    out["trials"] = trials
    out["raw_s"] = raw
    out["summary"] = {n: quantiles(v) for n, v in raw.items()}
    med = {n: out["summary"][n].get("p50") for n in SCALERS}
    ratio = med["shoal-resource"] / med["hpa"] if med["hpa"] and med["shoal-resource"] is not None else None
    out["shoal_resource_vs_hpa_median"] = round(ratio, 3) if ratio is not None else None
    out["goal_ratio"] = GOAL_RATIO
    out.update(judge(raw["shoal-resource"], raw["hpa"], seed))
    return out


def judge(shoal: list[float], hpa: list[float], seed: int) -> dict[str, Any]:
    """The median ratio's bootstrap 95 % interval over paired trials; "met" only when the interval's
    upper end is within the goal, so a lucky median from few trials is no verdict."""
    if len(shoal) < 2:
        return {"ratio_interval_95": None, "goal_met": False}
    lo, hi = median_ratio_interval(shoal, hpa, seed=seed)
    return {"ratio_interval_95": [lo, hi], "goal_met": hi <= GOAL_RATIO}


def section(b6: dict[str, Any], heading_suffix: str) -> list[str]:
    lines = [f"## B6 reaction to a load step{heading_suffix}", ""]
    if "trials" not in b6:
        return [*lines, "(An earlier format, one trial with both scalers in lock-step: not judged.)", ""]
    lines += [
        f"Run {b6['started']} at {b6['commit']}, {b6['trials']} trials (seed {b6['seed']}"
        + (f", {b6['side_by_side']} at a time" if b6.get("side_by_side", 1) > 1 else "")
        + "). Each trial: three "
        "fresh Deployments of one pod, each with its scaler at a user's defaults (15 s poll or sync; Shoal reads a "
        "Resource metric when metrics-server serves a new sample, at most a poll apart): Shoal "
        "on the Resource metric (metrics-server CPU, as HPA), the HPA, and Shoal on a Prometheus gauge "
        f"(scraped every {b6['prometheus_scrape_s']} s), each created at its own random offset within one poll "
        "period. Once all three read their metric, a random wait of up to one poll period, then the step (CPU usage 5 % -> 100 % of the request, the gauge 5 -> 35); "
        "the reaction is the time to the Deployment's spec.replicas changing. metrics-server's resolution "
        f"is {b6['metrics_server_resolution_s']} s.",
        "",
        "| scaler | median s | p90 s | max s | min s |",
        "|---|---|---|---|---|",
    ]
    for name, q in b6["summary"].items():
        lines.append(f"| {name} | {q.get('p50')} | {q.get('p90')} | {q.get('max')} | {q.get('min')} |")
    ratio = b6["shoal_resource_vs_hpa_median"]
    lines += [
        "",
        f"Shoal's median reaction on the same metric source is **{ratio}x HPA's**"
        + (
            f", 95 % interval {b6['ratio_interval_95'][0]}-{b6['ratio_interval_95'][1]}x (bootstrap over "
            "paired trials)"
            if b6.get("ratio_interval_95")
            else ""
        )
        + f" (goal: the interval's upper end <= {b6['goal_ratio']}x: **{plan.verdict(b6)}**). Raw seconds per "
        "trial in results.json.",
        "",
    ]
    if b6.get("after_served"):
        lines += served_lines(b6)
    return lines


def served_lines(b6: dict[str, Any]) -> list[str]:
    """Where the time went: metrics-server's next scrape, which no reader of it can beat, then each scaler."""
    served, after = b6["served"], b6["after_served"]
    hpa_median = b6["summary"]["hpa"]["p50"]
    floor = served["p50"] / hpa_median if hpa_median else None
    lines = [
        f"Where the time went: metrics-server served the step {served['p50']} s after it (median; p90 "
        f"{served['p90']} s, max {served['max']} s), its next scrape at a {b6['metrics_server_resolution_s']} s "
        "resolution. From then, Shoal on the Resource metric moved the Deployment in "
        f"{after['shoal-resource']['p50']} s (median; p90 {after['shoal-resource']['p90']} s) and HPA in "
        f"{after['hpa']['p50']} s (median; p90 {after['hpa']['p90']} s).",
    ]
    if floor is not None:
        lo, hi = median_ratio_interval(b6["served_s"], b6["raw_s"]["hpa"], seed=b6["seed"])
        lines[-1] += (
            f" A reader that acted the instant each sample was served would still take the scrape: "
            f"{floor:.2f}x HPA's median, 95 % interval {lo}-{hi}x over the same trials, so the goal (the "
            "interval's upper end within "
            f"{b6['goal_ratio']}x) is "
            + ("out of reach of any reader of metrics-server" if hi > b6["goal_ratio"] else "within reach")
            + " at this resolution and number of trials."
        )
    return [*lines, ""]
