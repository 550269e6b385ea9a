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
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bench.stats import quantiles
from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, pods_path
from shoal.sessions.starts import STAGES
from testbed.kubelet import LocalKubelet
from testbed.localpod import NICENESS, autogroups

if TYPE_CHECKING:
    from bench.harness import Operator

BANDIT = [sys.executable, "-m", "tests.doubles.bandit"]
# The double waits in standby as the SB3 trainer does (the agent starts the built-in trainer so by default).
ENV = {
    "SHOAL_TENSORBOARD_PORT": "0",
    # The agent's own default report interval (5 s): 50 agents reporting every second were 50 pod
    # PATCHes a second, each to the operator's, KWOK's and the agent's own watch, on the same two cores.
    "SHOAL_REPORT_EVERY": "5",
    # A quiet double: 40 ms an episode, about 0.2 ms of it CPU. Its trainers share the control plane's
    # two cores here (on a cluster they run on their own nodes); stepping every 2 ms, 50 of them wanted
    # more than the two cores and a new one waited seconds for its first write.
    "SHOAL_SECONDSPEREPISODE": "0.04",
    "SHOAL_TRAINER_STANDBY": "on",
}
LABEL_SESSION = "shoal.dev/session"
IDLE_S = 10.0  # the window over which an idle warm pool's agents and standby trainers are measured


def finished(kube: Kube, ns: str) -> int:
    sessions = kube.list_items(custom_path("trainingsessions", ns))
    return sum(1 for o in sessions if (o.get("status") or {}).get("phase") in ("Succeeded", "Failed"))


def session_body(name: str, pool: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "game": "CartPole-v1",
        "algorithm": "PPO",
        "totalTimesteps": 2000,
        # Eight environments a step, as PPO is commonly run: 250 of the double's episodes (about 10 s at
        # ENV's pace, so a burst's sessions are still training while its last ones start), not 2000.
        "vecEnvs": 8,
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

    from testbed.pools import is_idle

    pods = kube.list_items(pods_path(ns), "shoal.dev/pool=warm")
    idle = [p for p in pods if is_idle(p)]
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


def stages(posted: float, moments: dict[str, float]) -> dict[str, float]:
    """Seconds from one moment to the next, from the create call on; `firstProgress` is the end point
    (create -> the trainer's first progress) and `total` is create -> status."""
    out, before = {}, posted
    for stage in STAGES:
        out[stage] = round(moments[stage] - before, 4)
        before = moments[stage]
    out["toFirstProgress"] = round(moments["firstProgress"] - posted, 4)
    out["total"] = round(moments["status"] - posted, 4)
    return out


def run(
    kube: Kube,
    ns: str,
    mode: str,
    wait: Callable[..., Any],
    op: Operator,
    steady: int = 50,
    burst: int = 50,
    pool: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """One repetition of one mode. Each session's moments are those its components recorded (the
    operator's start record in its log, with the agent's moments from its report), read after the
    fact; the create call's time is this process's."""
    from bench.harness import ApiServerRequests, CpuMeter, LogFollower, Reconciles, Requests, quiet

    rng = random.Random(seed)
    kubelet = LocalKubelet(kube, ns, command=BANDIT, env=ENV).start()
    starts: dict[str, dict[str, float]] = {}
    follow = LogFollower(op.log_path)

    def started() -> bool:
        for r in follow.records():
            session = str(r.get("session", ""))
            if r.get("moments") and session.startswith(f"{ns}/"):
                starts[session.split("/", 1)[1]] = r["moments"]
        return all(n in starts for n in posted)

    posted: dict[str, float] = {}
    phases: dict[str, Any] = {}
    try:
        if mode == "warm":
            warm_pool(kube, ns, kubelet, pool, wait)
            phases["idle"] = {"busy_at_start": quiet(), "seconds": IDLE_S}
            meter = CpuMeter(op.pid)
            time.sleep(IDLE_S)  # a window measured: the idle pool's own cost, nothing awaited
            phases["idle"]["cpu_s"] = meter.spent()
        phases["steady"] = {"busy_at_start": quiet()}
        meter, requests, sessions = CpuMeter(op.pid), Requests(op), Reconciles(op, "TrainingSession")
        for i in range(steady):
            name = f"s{i:03d}"
            posted[name] = time.time()
            kube.create(
                custom_path("trainingsessions", ns), session_body(name, "warm" if mode == "warm" else None)
            )
            time.sleep(rng.uniform(0.1, 0.5))  # arrivals at random gaps (the workload, not synchronisation)
        wait(started, 300, f"{mode}: the steady sessions training")
        # The burst meets a pool back to full (every steady session done): it measures starts, not
        # the wait for a pod another session still holds.
        wait(lambda: finished(kube, ns) >= steady, 300, f"{mode}: the steady sessions finished")
        if mode == "warm":
            wait(lambda: pool_waiting(kube, ns, kubelet, pool), 300, "the pool back to full")
        phases["steady"]["cpu_s"] = meter.spent()
        phases["steady"]["operator_requests"] = requests.spent()
        phases["steady"]["session_reconciles"] = sessions.spent()
        phases["burst"] = {"busy_at_start": quiet()}
        meter, requests, sessions = CpuMeter(op.pid), Requests(op), Reconciles(op, "TrainingSession")
        burst_names = [f"b{i:03d}" for i in range(burst)]
        bodies = [session_body(n, "warm" if mode == "warm" else None) for n in burst_names]
        threads = []
        # The burst's own window, its creates to its last start: what the two cores did meanwhile.
        window, window_from = CpuMeter(op.pid), time.monotonic()
        served = ApiServerRequests(kube)
        for name, body in zip(burst_names, bodies, strict=True):

            def post(name: str = name, body: dict[str, Any] = body) -> None:
                posted[name] = time.time()
                kube.create(custom_path("trainingsessions", ns), body)

            threads.append(threading.Thread(target=post))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait(started, 600, f"{mode}: the burst training", interval=0.05)
        phases["burst"]["to_last_start"] = {
            "seconds": round(time.monotonic() - window_from, 2),
            "cpu_s": window.spent(),
            "apiserver_requests": served.spent(),
        }
        wait(lambda: finished(kube, ns) >= steady + burst, 300, f"{mode}: the burst finished")
    finally:
        kubelet.stop()
    # After the kubelet's stop: the local pods' last CPU is in.
    phases["burst"]["cpu_s"] = meter.spent()
    phases["burst"]["operator_requests"] = requests.spent()
    phases["burst"]["session_reconciles"] = sessions.spent()
    per = {n: stages(posted[n], starts[n]) for n in posted}
    return {
        "mode": mode,
        "pool": pool if mode == "warm" else None,
        "phases": phases,
        "stages_s": per,
        "raw_s": {n: per[n]["toFirstProgress"] for n in sorted(per)},
    }


def summarise(runs: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """Per arrival pattern: create -> first progress, and every stage, as p50/p90/p99."""
    mine = [r for r in runs if r["mode"] == mode]
    out: dict[str, Any] = {}
    for part in ("steady", "burst", "all"):
        rows = [s for r in mine for n, s in r["stages_s"].items() if part == "all" or n.startswith(part[0])]
        out[part] = quantiles([s["toFirstProgress"] for s in rows])
        out[part]["stages"] = {k: quantiles([s[k] for s in rows]) for k in (*STAGES, "total")}
    return out


def bench(
    kube: Kube,
    op: Operator,
    reps: int = 2,
    steady: int = 50,
    burst: int = 50,
    pool: int = 50,
) -> dict[str, Any]:
    """Warm and cold side by side on the running operator, alternating which goes first; figures per
    mode over all repetitions, each repetition's raw stages kept."""
    from bench.harness import drop_namespace, log, namespace
    from bench.harness import wait as bench_wait
    from bench.stats import provenance

    out = provenance()
    runs = []
    for rep in range(reps):
        for mode in ("warm", "cold") if rep % 2 == 0 else ("cold", "warm"):
            ns = namespace(kube, f"b3-{mode}")
            log(f"B3 rep {rep + 1}/{reps} {mode}: {steady} one by one, then {burst} at once")
            result = run(kube, ns, mode, bench_wait, op, steady=steady, burst=burst, pool=pool, seed=rep)
            drop_namespace(kube, ns)
            runs.append({"rep": rep, **result})
            q = result["raw_s"]
            log(
                f"B3 rep {rep + 1} {mode}: create -> first progress median {statistics.median(q.values()):.2f} s"
            )
    summary = {mode: summarise(runs, mode) for mode in ("warm", "cold")}
    warm = summary["warm"]["all"]
    return {
        **out,
        "reps": reps,
        "steady": steady,
        "burst": burst,
        "pool": pool,
        "pod_niceness": NICENESS,
        # What each session trains and how its double paces itself (the report says it).
        "workload": {
            **{k: session_body("x", None)["spec"][k] for k in ("totalTimesteps", "vecEnvs")},
            "secondsPerEpisode": float(ENV["SHOAL_SECONDSPEREPISODE"]),
            "reportEverySeconds": float(ENV["SHOAL_REPORT_EVERY"]),
        },
        "pod_autogroup_niceness": NICENESS if autogroups() else None,  # None: nice alone counts
        "runs": runs,
        "summary": summary,
        "goal": "warm create -> the trainer's first progress p50 <= 1 s and p99 <= 2 s, steady and burst together",
        "goal_met": bool(warm.get("p50", 99) <= 1.0 and warm.get("p99", 99) <= 2.0),
    }
