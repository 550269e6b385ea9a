"""B9: how soon a ContainerClaim is bound: from the create call to a watch of the namespace's claims
seeing `status.phase: Bound`, on a warm pool of plain (KWOK) pods.

Per repetition: `steady` claims at random 20-200 ms gaps, and a burst of `burst` created at once (16
client threads); which comes first alternates by repetition. Every bound claim is deleted after a
random 0-0.5 s "job", so its pod goes back to the pool for the next claim; before a burst the pool is
let refill (all its pods idle), so a burst measures binding, not the pool's size.

The same arrivals run again on a shared pool (claimsPerPod `slots`, LeastConnections) of as many slots
in `pool / slots` pods: what binding costs when claims join pods that serve others already.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import plan
from bench.harness import (
    CONTAINER,
    ApiServerRequests,
    CpuMeter,
    LogFollower,
    Operator,
    Requests,
    apiserver_requests,
    drop_namespace,
    log,
    namespace,
    wait,
)
from bench.stats import provenance, quantiles
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, pods_path
from testbed.pools import is_idle

GOAL = "p50 <= 100 ms and p99 <= 500 ms over all claims"


def claim_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "ContainerClaim",
        "metadata": {"name": name},
        "spec": {"poolRef": {"name": "warm"}, "signature": {"job": name[0]}},
    }


class Binds:
    """A watch of the namespace's claims: when each was first seen Bound; bound ones are deleted after
    a random hold by a pool of workers (the jobs)."""

    def __init__(self, kube: Kube, ns: str, seed: int) -> None:
        self.kube, self.ns = kube, ns
        self.rng = random.Random(seed)
        self.bound: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.jobs = ThreadPoolExecutor(8)
        threading.Thread(target=self._watch, daemon=True).start()
        if not self.ready.wait(10):
            raise RuntimeError("claim watch did not start")

    def _watch(self) -> None:
        import kubernetes

        api = kubernetes.client.CustomObjectsApi(self.kube.api)
        while not self.stop.is_set():
            w = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
            self.ready.set()
            stream = w.stream(  # type: ignore[no-untyped-call]
                api.list_namespaced_custom_object,
                "shoal.dev",
                "v1alpha1",
                self.ns,
                "containerclaims",
                timeout_seconds=60,
            )
            for event in stream:
                obj = event["raw_object"]
                name = obj["metadata"]["name"]
                if (obj.get("status") or {}).get("phase") == "Bound":
                    with self.lock:
                        first = name not in self.bound
                        if first:
                            self.bound[name] = time.time()
                    if first:
                        self.jobs.submit(self._finish, name, self.rng.uniform(0, 0.5))
                if self.stop.is_set():
                    w.stop()  # type: ignore[no-untyped-call]

    def _finish(self, name: str, hold: float) -> None:
        time.sleep(hold)  # the job's run time: part of the workload, not a synchronisation
        with contextlib.suppress(ApiError):
            self.kube.delete(custom_path("containerclaims", self.ns, name))

    def close(self) -> None:
        self.stop.set()
        self.jobs.shutdown(wait=True)


def idle_pods(kube: Kube, ns: str) -> int:
    """The pool's pods that hold no claim (on a shared pool: with every slot free)."""
    pods = kube.list_items(pods_path(ns), "shoal.dev/pool=warm")
    return sum(1 for p in pods if is_idle(p))


STAGES = ("seen", "chosen", "patched", "status")


def run(
    kube: Kube, rep: int, steady: int, burst: int, pool: int, op: Operator, slots: int = 1
) -> dict[str, Any]:
    """One repetition, on a pool of `pool` slots: `pool / slots` pods of `slots` claims each. Each claim's moments after the create call are the operator's own (its bind
    record: first reconcile, claim patch answered, Bound status written), read from its log after the
    fact; the watch here only ends each claim's job."""
    ns = namespace(kube, "b9")
    follow = LogFollower(op.log_path)
    moments: dict[str, dict[str, float]] = {}

    def recorded() -> bool:
        for r in follow.records():
            claim = str(r.get("claim", ""))
            if r.get("moments") and claim.startswith(f"{ns}/"):
                moments[claim.split("/", 1)[1]] = r["moments"]
        return all(n in moments for n in posted)

    rng = random.Random(rep)
    pods = pool // slots
    kube.create(
        custom_path("containerpools", ns),
        {
            "apiVersion": "shoal.dev/v1alpha1",
            "kind": "ContainerPool",
            "metadata": {"name": "warm"},
            "spec": {
                "replicas": pods,
                "template": {"spec": {"containers": [CONTAINER]}},
                **({"claimsPerPod": slots, "selection": "LeastConnections"} if slots > 1 else {}),
            },
        },
    )
    wait(lambda: idle_pods(kube, ns) == pods, 300, f"{pods} idle pods")
    binds = Binds(kube, ns, rep)
    posted: dict[str, float] = {}

    def post(name: str) -> None:
        posted[name] = time.time()
        kube.create(custom_path("containerclaims", ns), claim_body(name))

    def steady_part() -> None:
        for i in range(steady):
            post(f"s{rep}-{i:03d}")
            time.sleep(rng.uniform(0.02, 0.2))  # arrivals at random gaps (the workload)

    spent: dict[str, Any] = {}

    def burst_part() -> None:
        wait(lambda: idle_pods(kube, ns) == pods, 120, "the pool refilled before the burst")
        meter, own = CpuMeter(op.pid), Requests(op)
        requests, served, t0 = apiserver_requests(kube), ApiServerRequests(kube), time.monotonic()
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(post, [f"b{rep}-{i:03d}" for i in range(burst)]))
        spent["create_calls_s"] = round(time.monotonic() - t0, 3)
        names = [f"b{rep}-{i:03d}" for i in range(burst)]
        wait(lambda: all(n in binds.bound for n in names), 300, "the burst bound")
        spent["burst_wall_s"] = round(time.monotonic() - t0, 3)
        spent["cpu_s"] = meter.spent()
        spent["api_requests"] = apiserver_requests(kube) - requests
        spent["apiserver_requests"] = served.spent()  # by verb and resource, watches aside
        spent["operator_requests"] = own.spent()

    try:
        for part in (steady_part, burst_part) if rep % 2 == 0 else (burst_part, steady_part):
            part()
            wait(lambda: all(n in binds.bound for n in posted), 300, "every claim bound")
        wait(recorded, 60, "every bind recorded by the operator")
    finally:
        binds.close()
        drop_namespace(kube, ns)
    per = {n: stages(posted[n], moments[n]) for n in sorted(posted)}
    return {
        "rep": rep,
        "first": "steady" if rep % 2 == 0 else "burst",
        "burst_costs": spent,
        "stages_s": per,
        "raw_s": {n: s["total"] for n, s in per.items()},
    }


def stages(posted: float, moments: dict[str, float]) -> dict[str, float]:
    out, before = {}, posted
    for stage in STAGES:
        out[stage] = round(moments[stage] - before, 4)
        before = moments[stage]
    out["total"] = round(moments["status"] - posted, 4)
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Quantiles of the bind latencies per arrival part and over all, with their stages."""
    parts = {
        part: [v for r in runs for n, v in r["raw_s"].items() if n.startswith(part[0])]
        for part in ("steady", "burst")
    }
    every = [*parts["steady"], *parts["burst"]]
    summary: dict[str, dict[str, Any]] = {p: quantiles(v) for p, v in parts.items()} | {
        "all": quantiles(every)
    }
    for part in ("steady", "burst", "all"):
        rows = [s for r in runs for n, s in r["stages_s"].items() if part == "all" or n.startswith(part[0])]
        summary[part]["stages"] = {k: quantiles([s[k] for s in rows]) for k in STAGES}
    return summary


def bench(
    kube: Kube,
    op: Operator,
    reps: int = 3,
    steady: int = 100,
    burst: int = 100,
    pool: int = 100,
    slots: int = 4,
) -> dict[str, Any]:
    head = provenance()
    log(f"B9 claim binding: {reps} x ({steady} steady + {burst} burst) claims, pool of {pool}, then shared")
    runs = [run(kube, rep, steady, burst, pool, op) for rep in range(reps)]
    summary = summarise(runs)
    shared_runs = [run(kube, rep, steady, burst, pool, op, slots) for rep in range(reps)]
    q = summary["all"]
    return {
        **head,
        "repetitions": reps,
        "claims": sum(len(r["raw_s"]) for r in runs),
        "steady": steady,
        "burst": burst,
        "pool": pool,
        "summary": summary,
        "per_repetition": [quantiles(list(r["raw_s"].values())) for r in runs],
        "runs": runs,
        "shared": {
            "slots": slots,
            "pods": pool // slots,
            "claims": sum(len(r["raw_s"]) for r in shared_runs),
            "summary": summarise(shared_runs),
            "per_repetition": [quantiles(list(r["raw_s"].values())) for r in shared_runs],
            "runs": shared_runs,
        },
        "goal": GOAL,
        "goal_met": bool(q.get("p50", 99) <= 0.1 and q.get("p99", 99) <= 0.5),
    }


def burst_rates(runs: list[dict[str, Any]], burst: int) -> list[float]:
    """Per repetition with a burst: its claims over the seconds from its first create to its last bind."""
    return [burst / c["burst_wall_s"] for r in runs if (c := r.get("burst_costs")) and c.get("burst_wall_s")]


def stage_lines(b9: dict[str, Any]) -> list[str]:
    if "stages" not in b9["summary"]["all"]:
        return []
    says = {
        "seen": "created -> the operator's first reconcile (watch and work queue)",
        "chosen": "-> the attempt that binds begins: its pod chosen (earlier attempts found none free)",
        "patched": "-> the pod's claim patch answered",
        "status": "-> the Bound status written",
    }
    rows = []
    for stage in STAGES:
        cells = []
        for part in ("steady", "burst"):
            q = b9["summary"][part]["stages"].get(stage, {})
            cells.append(
                f"{q['p50'] * 1000:.0f} / {q['p90'] * 1000:.0f} / {q['p99'] * 1000:.0f}"
                if "p50" in q
                else "-"
            )
        rows.append(f"| {stage} | {says[stage]} | " + " | ".join(cells) + " |")
    return [
        "Where each claim's time goes, each stage from the one before (p50 / p90 / p99, ms):",
        "",
        "| stage | from the one before | one by one | burst |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def section(b9: dict[str, Any], heading_note: str) -> list[str]:
    shared = b9.get("shared")
    pools = [("exclusive", b9["summary"]), *([("shared", shared["summary"])] if shared else [])]
    rows = [
        f"| {kind} | {part} | {q['n']} | {q['p50'] * 1000:.0f} ms | {q['p90'] * 1000:.0f} ms | "
        f"{q['p99'] * 1000:.0f} ms | {q['min'] * 1000:.0f}-{q['max'] * 1000:.0f} ms |"
        for kind, summary in pools
        for part in ("steady", "burst", "all")
        if (q := summary[part]).get("n", 0) >= 2
    ]
    shared_says = (
        [
            f"Shared: the same arrivals on {shared['pods']} pods of {shared['slots']} claims each "
            f"(claimsPerPod {shared['slots']}, LeastConnections), {shared['claims']} claims; p50/p99 per "
            "repetition: "
            + ", ".join(f"{r['p50'] * 1000:.0f}/{r['p99'] * 1000:.0f}" for r in shared["per_repetition"])
            + " ms. The goal is judged on the exclusive pool.",
            "",
        ]
        if shared
        else []
    )
    rates = [
        f"{kind}: " + ", ".join(f"{rate:.0f}" for rate in burst_rates(runs, b9.get("burst", 100)))
        for kind, runs in (("exclusive", b9["runs"]), *([("shared", shared["runs"])] if shared else []))
    ]
    rate_says = (
        [
            "Claims bound per second in each burst (its claims over the time from its first create to its last "
            "bind): " + "; ".join(rates) + ".",
            "",
        ]
        if any(burst_rates(b9["runs"], 1))
        else []
    )
    spread = ", ".join(f"{r['p50'] * 1000:.0f}/{r['p99'] * 1000:.0f}" for r in b9["per_repetition"])
    costs = [r["burst_costs"] for r in b9["runs"] if r.get("burst_costs")]
    cost_lines = [
        f"- burst of repetition {i}: created in {c['create_calls_s']} s, all bound {c['burst_wall_s']} s after the "
        f"first create; CPU seconds meanwhile: "
        + ", ".join(f"{k} {v}" for k, v in c["cpu_s"].items())
        + f"; {c['api_requests']:.0f} API server requests ({c['api_requests'] / b9.get('burst', 100):.1f} per claim, all clients)"
        + (
            "; the operator's own: " + ", ".join(f"{v} {n}" for v, n in c["operator_requests"].items())
            if c.get("operator_requests")
            else ""
        )
        + (
            "; the API server's by resource (watches aside): "
            + ", ".join(f"{k} {n}" for k, n in list(c["apiserver_requests"].items())[:8])
            if c.get("apiserver_requests")
            else ""
        )
        for i, c in enumerate(costs)
    ]
    return [
        "## B9 ContainerClaim binding" + heading_note,
        "",
        f"Run {b9['started']} at {b9['commit']}. From the create call to the operator's `Bound` status written (its "
        "own bind record, with when it first reconciled the claim and when its claim patch was answered), on a pool "
        f"of {b9['pool']} warm KWOK pods; per repetition {b9.get('steady', 100)} claims at random 20-200 ms gaps and a burst of "
        f"{b9.get('burst', 100)} created "
        "at once by 16 client threads (order alternating), each claim deleted after a random 0-0.5 s job so its pod "
        f"serves the next. {b9['repetitions']} repetitions, {b9['claims']} claims; p50/p99 per repetition: {spread} ms; "
        "raw latencies in results.json.",
        "",
        "| pool | arrivals | n | p50 | p90 | p99 | range |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        *shared_says,
        *rate_says,
        *stage_lines(b9),
        "Where a burst's time goes (the operator, the API server and etcd share this machine's cores):",
        "",
        *cost_lines,
        "",
        f"Goal ({b9['goal']}): **{plan.verdict(b9)}**.",
        "",
    ]
