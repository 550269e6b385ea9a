"""B3: how soon a TrainingSession trains, warm (claiming a pool pod whose agent waits) or cold (its own
pod), with one definition of "started" on both sides: the create call, to the first progress report of
the session's trainer as its agent publishes it on the pod (shoal.dev/progress). Every agent runs as a
real local process for its KWOK pod (testbed/kubelet.py), with the bandit trainer double
(tests/doubles/bandit.py): this measures the operator, the claim and the agent, not torch's import.
A warm pod's trainer waits in standby (imports done) for its claim; a cold pod's starts with its agent.

Arrivals: `steady` sessions one by one at random gaps, then, once they have finished, a burst of
`burst` created at once. Each trains briefly and finishes; a warm pod then goes back to the pool for
the next session. The pool holds as many pods as the burst (at least 20): every session of the burst
finds a warm pod, so the figure is the start, not the wait for a pod another session holds.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench import plan
from bench.stats import quantiles
from shoal.agent.protocol import ANN_PROGRESS
from shoal.k8s.client import Kube, custom_path, pods_path
from testbed.kubelet import LocalKubelet

BANDIT = [sys.executable, "-m", "tests.doubles.bandit"]
# The double waits in standby as the SB3 trainer does (the agent starts the built-in trainer so by default).
ENV = {
    "SHOAL_TENSORBOARD_PORT": "0",
    "SHOAL_REPORT_EVERY": "1",
    "SHOAL_SECONDSPEREPISODE": "0.002",
    "SHOAL_TRAINER_STANDBY": "on",
}
LABEL_SESSION = "shoal.dev/session"


def first_progress(kube: Kube, ns: str, seen: dict[str, float], stop: threading.Event) -> Callable[[], None]:
    """A watch of the namespace's pods recording when each session's pod first carries a progress
    report (a warm pod's is cleared on release, so the next session's is its own)."""
    import kubernetes

    def run() -> None:
        core = kubernetes.client.CoreV1Api(kube.api)
        while not stop.is_set():
            w = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
            for event in w.stream(core.list_namespaced_pod, ns, timeout_seconds=60):  # type: ignore[no-untyped-call]
                meta = event["raw_object"]["metadata"]
                session = (meta.get("labels") or {}).get(LABEL_SESSION)
                if session and ANN_PROGRESS in (meta.get("annotations") or {}) and session not in seen:
                    seen[session] = time.time()
                if stop.is_set():
                    w.stop()  # type: ignore[no-untyped-call]

    return run


def finished(kube: Kube, ns: str) -> int:
    sessions = kube.list_items(custom_path("trainingsessions", ns))
    return sum(1 for o in sessions if (o.get("status") or {}).get("phase") in ("Succeeded", "Failed"))


def session_body(name: str, pool: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "game": "CartPole-v1",
        "algorithm": "PPO",
        "totalTimesteps": 2000,
        "image": "registry.example/trainer:1",
        "resources": {"cpu": "100m", "memory": "64Mi"},
    }
    if pool:
        spec["poolRef"] = {"name": pool}
    return {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "TrainingSession",
        "metadata": {"name": name},
        "spec": spec,
    }


def warm_pool(kube: Kube, ns: str, kubelet: LocalKubelet, size: int, wait: Callable[..., Any]) -> None:
    kube.create(
        custom_path("containerpools", ns),
        {
            "apiVersion": "shoal.dev/v1alpha1",
            "kind": "ContainerPool",
            "metadata": {"name": "warm"},
            "spec": {
                "replicas": size,
                "maxReplicas": size,  # a pool of `size`: sessions beyond it wait for a pod to come back
                "sessionAgent": {},
                "resources": {"cpu": "100m", "memory": "64Mi"},
                "template": {
                    "metadata": {"labels": {"testbed.shoal.dev/run": "local"}},
                    "spec": {"containers": [{"name": "agent", "image": "registry.example/trainer:1"}]},
                },
            },
        },
    )

    wait(lambda: pool_waiting(kube, ns, kubelet, size), 300, f"{size} warm pods, each trainer in standby")


def pool_waiting(kube: Kube, ns: str, kubelet: LocalKubelet, size: int) -> bool:
    """Every pod of the pool Idle, its agent waiting for a claim with its trainer started in standby."""
    import psutil

    pods = kube.list_items(pods_path(ns), "shoal.dev/pool=warm")
    idle = [p for p in pods if p["metadata"]["labels"].get("shoal.dev/state") == "Idle"]
    if len(idle) != size:
        return False
    for p in idle:
        run = kubelet.pod(p["metadata"]["name"])
        if run is None or run.proc is None or "waiting for a session to claim" not in run.output():
            return False
        try:
            if len(psutil.Process(run.proc.pid).children()) != 1:
                return False
        except psutil.Error:
            return False
    return True


def run(
    kube: Kube,
    ns: str,
    mode: str,
    wait: Callable[..., Any],
    steady: int = 50,
    burst: int = 50,
    pool: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    rng = random.Random(seed)
    kubelet = LocalKubelet(kube, ns, command=BANDIT, env=ENV).start()
    seen: dict[str, float] = {}
    stop = threading.Event()
    try:
        if mode == "warm":
            warm_pool(kube, ns, kubelet, pool, wait)
        threading.Thread(target=first_progress(kube, ns, seen, stop), daemon=True).start()
        posted: dict[str, float] = {}
        for i in range(steady):
            name = f"s{i:03d}"
            posted[name] = time.time()
            kube.create(
                custom_path("trainingsessions", ns), session_body(name, "warm" if mode == "warm" else None)
            )
            time.sleep(rng.uniform(0.1, 0.5))  # arrivals at random gaps (the workload, not synchronisation)
        wait(lambda: all(n in seen for n in posted), 300, f"{mode}: the steady sessions training")
        # The burst meets a pool back to full (every steady session done): it measures starts, not
        # the wait for a pod another session still holds.
        wait(lambda: finished(kube, ns) >= steady, 300, f"{mode}: the steady sessions finished")
        if mode == "warm":
            wait(lambda: pool_waiting(kube, ns, kubelet, pool), 300, "the pool back to full")
        burst_names = [f"b{i:03d}" for i in range(burst)]
        bodies = [session_body(n, "warm" if mode == "warm" else None) for n in burst_names]
        threads = []
        for name, body in zip(burst_names, bodies, strict=True):

            def post(name: str = name, body: dict[str, Any] = body) -> None:
                posted[name] = time.time()
                kube.create(custom_path("trainingsessions", ns), body)

            threads.append(threading.Thread(target=post))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait(lambda: all(n in seen for n in posted), 600, f"{mode}: the burst training")
    finally:
        stop.set()
        kubelet.stop()
    lat = {n: seen[n] - posted[n] for n in posted}
    steady_lat = [v for n, v in lat.items() if n.startswith("s")]
    burst_lat = [v for n, v in lat.items() if n.startswith("b")]
    return {
        "mode": mode,
        "pool": pool if mode == "warm" else None,
        "steady": quantiles(steady_lat),
        "burst": quantiles(burst_lat),
        "all": quantiles([*steady_lat, *burst_lat]),
        "raw_s": {n: round(v, 3) for n, v in sorted(lat.items())},
    }


def bench(kube: Kube, reps: int = 2, steady: int = 50, burst: int = 50, pool: int = 50) -> dict[str, Any]:
    """Warm and cold side by side on the running operator, alternating which goes first; figures per
    mode over all repetitions, each repetition's raw latencies kept."""
    from bench.harness import drop_namespace, log, namespace
    from bench.harness import wait as bench_wait
    from bench.stats import provenance

    out = provenance()
    runs = []
    for rep in range(reps):
        for mode in ("warm", "cold") if rep % 2 == 0 else ("cold", "warm"):
            ns = namespace(kube, f"b3-{mode}")
            log(f"B3 rep {rep} {mode}")
            result = run(kube, ns, mode, bench_wait, steady=steady, burst=burst, pool=pool, seed=rep)
            drop_namespace(kube, ns)
            runs.append({"rep": rep, **result})
    summary: dict[str, Any] = {}
    for mode in ("warm", "cold"):
        mine = [r for r in runs if r["mode"] == mode]
        lat = {
            part: [v for r in mine for n, v in r["raw_s"].items() if n.startswith(part[0])]
            for part in ("steady", "burst")
        }
        summary[mode] = {part: quantiles(v) for part, v in lat.items()} | {
            "all": quantiles([*lat["steady"], *lat["burst"]])
        }
    warm = summary["warm"]["all"]
    return {
        **out,
        "reps": reps,
        "steady": steady,
        "burst": burst,
        "pool": pool,
        "runs": runs,
        "summary": summary,
        "goal": "warm p50 <= 1 s and p99 <= 2 s over steady arrivals and the burst together",
        "goal_met": bool(warm.get("p50", 99) <= 1.0 and warm.get("p99", 99) <= 2.0),
    }


def section(b3: dict[str, Any], heading_note: str = "") -> list[str]:
    """The report's B3 section, its sentences computed from the figures."""
    rows = []
    pool = b3.get("pool", 20)
    for mode, label in (("warm", f"warm (`poolRef`, pool of {pool})"), ("cold", "cold (own pod)")):
        for part in ("steady", "burst", "all"):
            q = b3["summary"][mode][part]
            rows.append(
                f"| {label} | {part} | {q['n']} | {q['p50']} s | {q['p90']} s | {q['p99']} s | "
                f"{q['min']}-{q['max']} s |"
            )
    warm, cold = b3["summary"]["warm"]["all"], b3["summary"]["cold"]["all"]
    n = warm["n"]
    return [
        "## B3 session start" + heading_note,
        "",
        f"Run {b3.get('started', b3.get('date', '?'))} at commit {b3.get('commit', '?')}.",
        "",
        "From the create call to the session's trainer reporting its first progress, as its agent publishes it "
        "on the pod (a watch of the namespace's pods). Every agent runs as a real local process for its KWOK pod, "
        "with the bandit trainer double (so torch's import is not in it); a warm pod's trainer waits in standby "
        f"for its claim. Per repetition: {b3.get('steady', 50)} sessions arriving at random 0.1-0.5 s gaps, then, "
        f"once they have finished, {b3.get('burst', 50)} at once; warm and cold alternate first; {b3['reps']} repetitions, raw latencies in "
        f"results.json. The pool holds {pool} pods.",
        "",
        "| | arrivals | n | p50 | p90 | p99 | range |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Over all {n} warm starts: p50 {warm['p50']} s, p99 {warm['p99']} s, "
        f"{round(cold['p50'] / warm['p50'], 1) if warm.get('p50') else '?'}x sooner than cold at the median "
        f"(cold p50 {cold['p50']} s). With {n} samples p99 lies between the two largest"
        + (
            " (it is not simply the maximum)."
            if n >= 100
            else "; too few samples for a p99 apart from the maximum."
        ),
        "",
        f"Goal ({b3['goal']}): **{plan.verdict(b3)}**.",
        "",
    ]
