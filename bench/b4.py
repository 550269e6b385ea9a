"""B4 the operator's footprint from its start: memory and CPU through building many pools and scalers,
a restart that lists them all, a churn phase, then steady state.

Phases, each with the operator's RSS (sampled every 0.5 s), CPU seconds and API requests by verb:
- `build`: a fresh operator; the pools created, their pods Ready, the scalers created and evaluated.
- `restart`: that operator stopped and a new one started beside everything: its initial lists and the
  first pass over every pool and scaler, until its work queue is empty.
- `churn`: every pool loses one pod (deleted), the pools without a scaler are scaled up by one and
  every scaler's bounds raised by one (so it scales its pool), until every pod is Ready again.
- `steady`: `window` seconds with nothing changing but the scalers' polls.
Peak memory is the largest RSS over all phases (what a memory limit must hold); CPU is judged in
steady state (what the operator costs a cluster that is not changing).
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import plan
from bench.harness import CONTAINER, Operator, drop_namespace, log, namespace, ready_pods, settle, wait
from bench.stats import provenance
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, pods_path

PHASES = ("build", "restart", "churn", "steady")
GOAL = {"rss_mib": 200, "cpu_cores": 0.25}


class Sampler:
    """The operator process's RSS and CPU every 0.5 s, under the phase named last."""

    def __init__(self) -> None:
        self.samples: list[tuple[str, float, float, float]] = []  # (phase, time, rss, cpu)
        self.pid: int | None = None
        self.phase = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def follow(self, pid: int, phase: str) -> None:
        self.pid, self.phase = pid, phase
        self.sample()

    def sample(self) -> None:
        import psutil

        if self.pid is None:
            return
        try:
            proc = psutil.Process(self.pid)
            rss, t = proc.memory_info().rss, proc.cpu_times()
        except psutil.Error:
            return
        self.samples.append((self.phase, time.monotonic(), rss / 2**20, t.user + t.system))

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def phase_figures(self, phase: str, cpu_before: float) -> dict[str, float]:
        """RSS max and at the end, CPU seconds since `cpu_before` and cores on average."""
        mine = [s for s in self.samples if s[0] == phase]
        seconds = mine[-1][1] - mine[0][1] if len(mine) > 1 else 0.0
        cpu = mine[-1][3] - cpu_before
        return {
            "seconds": round(seconds, 1),
            "rss_mib_max": round(max(s[2] for s in mine), 1),
            "rss_mib_end": round(mine[-1][2], 1),
            "cpu_s": round(cpu, 2),
            "cpu_cores_avg": round(cpu / seconds, 3) if seconds else 0.0,
        }


def requests_by_verb(op: Operator) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in op.metrics().splitlines():
        if line.startswith("shoal_api_requests_total{") and (m := re.search(r'method="([A-Z]+)"', line)):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def metric(op: Operator, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines() if line.startswith(prefix))


def drained(op: Operator) -> bool:
    depth = [line for line in op.metrics().splitlines() if line.startswith("shoal_workqueue_depth{")]
    return bool(depth) and all(float(line.rsplit(" ", 1)[1]) == 0 for line in depth)


def b4(
    kube: Kube,
    namespaces: int = 10,
    pools_per_ns: int = 100,
    pods: int = 5,
    scalers_per_ns: int = 50,
    window: float = 60.0,
) -> dict[str, Any]:
    spaces = [namespace(kube, "b4") for _ in range(namespaces)]
    pools = [(ns, f"p{i:03d}") for ns in spaces for i in range(pools_per_ns)]
    scaled = {(ns, f"p{i:03d}") for ns in spaces for i in range(scalers_per_ns)}
    total = len(pools) * pods
    result: dict[str, Any] = {
        **provenance(),
        "pools": len(pools),
        "pods": total,
        "scalers": len(scaled),
        "poll_interval_s": 15,
        "goal": GOAL,
    }
    log(f"B4: {len(pools)} pools x {pods} pods, {len(scaled)} scalers in {namespaces} namespaces")
    sampler, phases = Sampler(), dict[str, dict[str, Any]]()

    def ready_total() -> int:
        return sum(len(ready_pods(kube, ns)) for ns in spaces)

    def parallel(job: Any, items: Any) -> None:
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(job, items))

    def scaler(item: tuple[str, str]) -> None:
        ns, name = item
        kube.create(
            custom_path("workerscalers", ns),
            {
                "apiVersion": "shoal.dev/v1alpha1",
                "kind": "WorkerScaler",
                "metadata": {"name": name},
                "spec": {
                    "targetRef": {"apiVersion": "shoal.dev/v1alpha1", "kind": "ContainerPool", "name": name},
                    "minReplicas": pods,
                    "maxReplicas": pods,
                    "pollIntervalSeconds": 15,
                    "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 50}}
                    ],
                },
            },
        )

    def evaluated() -> bool:
        return sum(
            1
            for ns in spaces
            for sc in kube.list_items(custom_path("workerscalers", ns))
            if (sc.get("status") or {}).get("currentReplicas") is not None
        ) >= len(scaled)

    op = Operator(ready=False)
    try:
        sampler.follow(op.pid, "build")
        op.ready()
        parallel(
            lambda item: kube.create(
                custom_path("containerpools", item[0]),
                {
                    "apiVersion": "shoal.dev/v1alpha1",
                    "kind": "ContainerPool",
                    "metadata": {"name": item[1]},
                    "spec": {"replicas": pods, "template": {"spec": {"containers": [CONTAINER]}}},
                },
            ),
            pools,
        )
        wait(lambda: ready_total() >= total, 1800, f"{total} pods ready", interval=5.0)
        parallel(scaler, sorted(scaled))
        wait(evaluated, 600, "every scaler evaluated", interval=5.0)
        wait(lambda: drained(op), 300, "the work queue drained", interval=1.0)
        phases["build"] = {**sampler.phase_figures("build", 0.0), "requests_by_verb": requests_by_verb(op)}
        log(f"B4 build: {phases['build']}")
    finally:
        op.stop()

    op = Operator(ready=False)
    try:
        sampler.follow(op.pid, "restart")
        op.ready()
        # Its first pass over everything: a reconcile per pool done and the queue empty.
        wait(
            lambda: (
                metric(op, 'shoal_reconcile_duration_seconds_count{kind="ContainerPool"}') >= len(pools)
                and drained(op)
            ),
            900,
            "the restarted operator's first pass",
            interval=1.0,
        )
        phases["restart"] = {
            **sampler.phase_figures("restart", 0.0),
            "requests_by_verb": requests_by_verb(op),
        }
        log(f"B4 restart: {phases['restart']}")

        sampler.follow(op.pid, "churn")
        cpu0, verbs0 = sampler.samples[-1][3], requests_by_verb(op)

        def churn(item: tuple[str, str]) -> None:
            ns, name = item
            mine = kube.list_items(pods_path(ns), label_selector=f"shoal.dev/pool={name}")
            if mine:
                try:
                    kube.delete(pods_path(ns) + "/" + mine[0]["metadata"]["name"])
                except ApiError as err:
                    if not err.not_found:
                        raise
            if item in scaled:
                kube.merge_patch(
                    custom_path("workerscalers", ns) + f"/{name}",
                    {"spec": {"maxReplicas": pods + 1, "minReplicas": pods + 1}},
                )
            else:
                kube.merge_patch(
                    custom_path("containerpools", ns) + f"/{name}", {"spec": {"replicas": pods + 1}}
                )

        parallel(churn, pools)
        grown = len(pools) * (pods + 1)
        wait(lambda: ready_total() >= grown, 1200, f"{grown} pods ready after the churn", interval=2.0)
        wait(lambda: drained(op), 300, "the work queue drained", interval=1.0)
        verbs1 = requests_by_verb(op)
        phases["churn"] = {
            **sampler.phase_figures("churn", cpu0),
            "requests_by_verb": {v: round(n - verbs0.get(v, 0.0)) for v, n in verbs1.items()},
        }
        log(f"B4 churn: {phases['churn']}")

        sampler.follow(op.pid, "steady")
        cpu0, evals0 = (
            sampler.samples[-1][3],
            metric(op, 'shoal_reconcile_duration_seconds_count{kind="WorkerScaler"}'),
        )
        deadline = time.monotonic() + window
        wait(lambda: time.monotonic() >= deadline, window + 5, "the steady window", interval=1.0)
        sampler.sample()
        evals = metric(op, 'shoal_reconcile_duration_seconds_count{kind="WorkerScaler"}') - evals0
        phases["steady"] = {
            **sampler.phase_figures("steady", cpu0),
            "requests_by_verb": {v: round(n - verbs1.get(v, 0.0)) for v, n in requests_by_verb(op).items()},
        }
        phases["steady"]["scaler_reconciles_per_s"] = round(evals / max(phases["steady"]["seconds"], 1.0), 1)
        log(f"B4 steady: {phases['steady']}")
    finally:
        sampler.stop()
        for ns in spaces:
            drop_namespace(kube, ns)
        settle(kube)
        op.stop()
    result["phases"] = phases
    return {**result, **judge(phases)}


def judge(phases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Peak memory over every phase (what a memory limit must hold) and CPU in steady state."""
    peak = max(phases, key=lambda k: float(phases[k]["rss_mib_max"]))
    rss, cores = phases[peak]["rss_mib_max"], phases["steady"]["cpu_cores_avg"]
    return {
        "rss_mib_peak": rss,
        "peak_phase": peak,
        "cpu_cores_steady": cores,
        "goal_met": rss <= GOAL["rss_mib"] and cores <= GOAL["cpu_cores"],
    }


PHASE_SAYS = {
    "build": "fresh operator: pools created, pods Ready, scalers created and evaluated",
    "restart": "a new operator beside everything: initial lists and the first pass",
    "churn": "a pod deleted per pool, pools and scalers' bounds raised by one, until Ready",
    "steady": "nothing changing but the scalers' polls",
}


def section(b4: dict[str, Any], heading_note: str = "") -> list[str]:
    head = ["## B4 footprint" + heading_note, ""]
    if "phases" not in b4:  # a run from before phases were measured
        return [
            *head,
            f"The operator managing {b4['pools']:,} pools / {b4['pods']:,} pods and {b4['scalers']} scalers, "
            f"steady state only: RSS max {b4['rss_mib_max']} MiB, CPU {b4['cpu_cores_avg']} cores. "
            "Not rerun since B4 measures from the operator's start.",
            "",
        ]
    rows = []
    for name in PHASES:
        p = b4["phases"][name]
        verbs = ", ".join(f"{v} {round(n):,}" for v, n in sorted(p["requests_by_verb"].items()))
        rows.append(
            f"| {name} | {PHASE_SAYS[name]} | {p['seconds']} | {p['rss_mib_max']} | {p['rss_mib_end']} | "
            f"{p['cpu_s']} | {p['cpu_cores_avg']} | {verbs} |"
        )
    steady = b4["phases"]["steady"]
    return [
        *head,
        f"Run {b4['started']} at {b4['commit']}. The operator (one Python process, the chart's INFO log) from "
        f"its start managing {b4['pools']:,} ContainerPools / {b4['pods']:,} pods and {b4['scalers']} "
        f"WorkerScalers (CPU metric, {b4['poll_interval_s']} s poll) on the test bed; RSS sampled every 0.5 s "
        "with psutil, CPU seconds from the process, API requests by verb from its own client metrics. The API "
        "server, etcd, KWOK and metrics-server share the same 2 cores.",
        "",
        "| phase | what | seconds | RSS max MiB | RSS end MiB | CPU s | cores avg | own API requests |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Peak RSS **{b4['rss_mib_peak']} MiB** (in `{b4['peak_phase']}`); steady state **"
        f"{b4['cpu_cores_steady']} cores**, {steady['scaler_reconciles_per_s']} scaler reconciles/s "
        f"({b4['scalers']} scalers / {b4['poll_interval_s']} s = {round(b4['scalers'] / b4['poll_interval_s'], 1)} "
        "evaluations due).",
        "",
        f"Goal (peak RSS <= {b4['goal']['rss_mib']} MiB and steady CPU <= {b4['goal']['cpu_cores']} core): "
        f"**{plan.verdict(b4)}**.",
        "",
    ]
