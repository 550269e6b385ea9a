"""B9: how soon a ContainerClaim is bound: from the create call to a watch of the namespace's claims
seeing `status.phase: Bound`, on a warm pool of plain (KWOK) pods.

Per repetition: `steady` claims at random 20-200 ms gaps, and a burst of `burst` created at once (16
client threads); which comes first alternates by repetition. Every bound claim is deleted after a
random 0-0.5 s "job", so its pod goes back to the pool for the next claim; before a burst the pool is
let refill (all its pods idle), so a burst measures binding, not the pool's size.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from bench import plan
from bench.harness import CONTAINER, apiserver_requests, drop_namespace, log, namespace, wait
from bench.stats import provenance, quantiles
from shoal.k8s.client import ApiError, Kube, custom_path, pods_path

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
    pods = kube.list_items(pods_path(ns), "shoal.dev/pool=warm")
    return sum(1 for p in pods if p["metadata"]["labels"].get("shoal.dev/state") == "Idle")


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) so far of each named process."""
    out = {}
    for name, pid in pids.items():
        try:
            t = psutil.Process(pid).cpu_times()
            out[name] = t.user + t.system
        except psutil.Error:
            out[name] = 0.0
    return out


def processes(op_pid: int | None) -> dict[str, int]:
    """The operator and the test bed's API server and etcd: who spends the CPU during a burst."""
    found = {"operator": op_pid} if op_pid else {}
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        for name in ("kube-apiserver", "etcd"):
            if name not in found and (proc.info.get("name") == name or f"/{name} " in f"{cmd} "):
                found[name] = proc.pid
    return found


def run(
    kube: Kube, rep: int, steady: int, burst: int, pool: int, op_pid: int | None = None
) -> dict[str, Any]:
    ns = namespace(kube, "b9")
    rng = random.Random(rep)
    kube.create(
        custom_path("containerpools", ns),
        {
            "apiVersion": "shoal.dev/v1alpha1",
            "kind": "ContainerPool",
            "metadata": {"name": "warm"},
            "spec": {"replicas": pool, "template": {"spec": {"containers": [CONTAINER]}}},
        },
    )
    wait(lambda: idle_pods(kube, ns) == pool, 300, f"{pool} idle pods")
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
        wait(lambda: idle_pods(kube, ns) == pool, 120, "the pool refilled before the burst")
        pids = processes(op_pid)
        before, requests, t0 = cpu_seconds(pids), apiserver_requests(kube), time.monotonic()
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(post, [f"b{rep}-{i:03d}" for i in range(burst)]))
        spent["create_calls_s"] = round(time.monotonic() - t0, 3)
        names = [f"b{rep}-{i:03d}" for i in range(burst)]
        wait(lambda: all(n in binds.bound for n in names), 300, "the burst bound")
        spent["burst_wall_s"] = round(time.monotonic() - t0, 3)
        after = cpu_seconds(pids)
        spent["cpu_s"] = {k: round(after[k] - before[k], 2) for k in pids}
        spent["api_requests"] = apiserver_requests(kube) - requests

    try:
        for part in (steady_part, burst_part) if rep % 2 == 0 else (burst_part, steady_part):
            part()
            wait(lambda: all(n in binds.bound for n in posted), 300, "every claim bound")
    finally:
        binds.close()
        drop_namespace(kube, ns)
    lat = {n: binds.bound[n] - t for n, t in posted.items()}
    return {
        "rep": rep,
        "first": "steady" if rep % 2 == 0 else "burst",
        "burst_costs": spent,
        "raw_s": {n: round(v, 4) for n, v in sorted(lat.items())},
    }


def bench(
    kube: Kube, reps: int = 3, steady: int = 100, burst: int = 100, pool: int = 100, op_pid: int | None = None
) -> dict[str, Any]:
    head = provenance()
    log(f"B9 claim binding: {reps} x ({steady} steady + {burst} burst) claims, pool of {pool}")
    runs = [run(kube, rep, steady, burst, pool, op_pid) for rep in range(reps)]
    parts = {
        part: [v for r in runs for n, v in r["raw_s"].items() if n.startswith(part[0])]
        for part in ("steady", "burst")
    }
    every = [*parts["steady"], *parts["burst"]]
    summary = {part: quantiles(v) for part, v in parts.items()} | {"all": quantiles(every)}
    per_rep = [quantiles(list(r["raw_s"].values())) for r in runs]
    q = summary["all"]
    return {
        **head,
        "repetitions": reps,
        "claims": len(every),
        "steady": steady,
        "burst": burst,
        "pool": pool,
        "summary": summary,
        "per_repetition": per_rep,
        "runs": runs,
        "goal": GOAL,
        "goal_met": bool(q.get("p50", 99) <= 0.1 and q.get("p99", 99) <= 0.5),
    }


def section(b9: dict[str, Any], heading_note: str) -> list[str]:
    rows = [
        f"| {part} | {q['n']} | {q['p50'] * 1000:.0f} ms | {q['p90'] * 1000:.0f} ms | {q['p99'] * 1000:.0f} ms | "
        f"{q['min'] * 1000:.0f}-{q['max'] * 1000:.0f} ms |"
        for part in ("steady", "burst", "all")
        if (q := b9["summary"][part]).get("n", 0) >= 2
    ]
    spread = ", ".join(f"{r['p50'] * 1000:.0f}/{r['p99'] * 1000:.0f}" for r in b9["per_repetition"])
    costs = [r["burst_costs"] for r in b9["runs"] if r.get("burst_costs")]
    cost_lines = [
        f"- burst of repetition {i}: created in {c['create_calls_s']} s, all bound {c['burst_wall_s']} s after the "
        f"first create; CPU seconds meanwhile: "
        + ", ".join(f"{k} {v}" for k, v in c["cpu_s"].items())
        + f"; {c['api_requests']:.0f} API server requests ({c['api_requests'] / b9.get('burst', 100):.1f} per claim, all clients)"
        for i, c in enumerate(costs)
    ]
    return [
        "## B9 ContainerClaim binding" + heading_note,
        "",
        f"Run {b9['started']} at {b9['commit']}. From the create call to a watch seeing the claim `Bound`, on a pool "
        f"of {b9['pool']} warm KWOK pods; per repetition {b9.get('steady', 100)} claims at random 20-200 ms gaps and a burst of "
        f"{b9.get('burst', 100)} created "
        "at once by 16 client threads (order alternating), each claim deleted after a random 0-0.5 s job so its pod "
        f"serves the next. {b9['repetitions']} repetitions, {b9['claims']} claims; p50/p99 per repetition: {spread} ms; "
        "raw latencies in results.json.",
        "",
        "| arrivals | n | p50 | p90 | p99 | range |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Where a burst's time goes (the operator, the API server and etcd share this machine's cores):",
        "",
        *cost_lines,
        "",
        f"Goal ({b9['goal']}): **{plan.verdict(b9)}**.",
        "",
    ]
