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

from bench import plan
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


STAGE_SAYS = {
    "seen": "created -> the operator's first reconcile (watch and work queue)",
    "admitted": "-> admitted (cold: capacity found; warm: the claim attempt that got a pod began)",
    "started": "-> pod chosen and its claim patch answered (warm) or pod created (cold)",
    "configSeen": "-> the agent has the session's config (warm: its pod watch; cold: its process started, which can "
    "come before the operator has the create call's answer, hence a negative time)",
    "trainerStarted": "-> trainer handed its session (warm, standby) or started",
    "firstProgress": "-> the trainer's first progress file",
    "reported": "-> the agent's report of it patched",
    "status": "-> the operator's status showing it",
}


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


def workload(b3: dict[str, Any]) -> str:
    """What each session trained (runs before it was recorded: 2000 one-environment episodes of 2 ms)."""
    w = b3.get("workload")
    if not w:
        return ""
    episodes = w["totalTimesteps"] // w["vecEnvs"]
    return (
        f"Each session trains {w['totalTimesteps']} timesteps, {w['vecEnvs']} environments a step: "
        f"{episodes} of the double's episodes at {w['secondsPerEpisode'] * 1000:g} ms each (about "
        f"{episodes * w['secondsPerEpisode']:.0f} s, mostly asleep); its agent reports at most every "
        f"{w['reportEverySeconds']:g} s. "
    )


def niceness(b3: dict[str, Any]) -> str:
    """Where the pods' processes ran at a lower CPU priority, the report says so (runs before it did not)."""
    if b3.get("pod_niceness") is None:
        return ""
    said = (
        f"The pods' processes run at nice {b3['pod_niceness']}, as on a cluster they would run on their nodes, "
        "not on the control plane's and the operator's cores: they get what those leave of the 2 cores. "
    )
    if "pod_autogroup_niceness" not in b3:  # c758dd4: each pod's session was a scheduling group at nice 0
        return said + (
            "But their sessions' scheduling groups (the kernel's autogroups) stayed at nice 0, so the nice "
            "counted only among each pod's own processes: the pods took CPU as any other process did. "
        )
    if b3["pod_autogroup_niceness"] is not None:
        return said + "Their sessions' scheduling groups (the kernel's autogroups) run at the same nice. "
    return said


def agent_cost(b3: dict[str, Any]) -> list[str]:
    """The agents' own CPU (apart from the trainers they start): per idle warm pod, and per session."""
    agents = "local pods' agents"
    idle = [r["phases"]["idle"] for r in b3["runs"] if "idle" in r["phases"]]
    if not idle or agents not in idle[0]["cpu_s"]:
        return []
    per_pod = [1000 * ph["cpu_s"][agents] / b3["pool"] / ph["seconds"] for ph in idle]
    standby = [1000 * ph["cpu_s"]["local pods' trainers"] / b3["pool"] / ph["seconds"] for ph in idle]
    cells = []
    for mode in ("warm", "cold"):
        for part in ("steady", "burst"):
            runs = [r["phases"][part]["cpu_s"] for r in b3["runs"] if r["mode"] == mode]
            agent = statistics.median(c[agents] / b3[part] for c in runs)
            trainer = statistics.median(c["local pods' trainers"] / b3[part] for c in runs)
            cells.append(f"{mode} {part} {round(agent * 1000)} ms (trainers {round(trainer * 1000)} ms)")
    return [
        f"The agents' own CPU (their trainers apart): an idle warm pod's agent {round(statistics.median(per_pod), 2)} "
        f"ms/s and its trainer in standby {round(statistics.median(standby), 2)} ms/s (a quiet {IDLE_S:.0f} s "
        "window per repetition, median); per session, the agents' CPU over a phase by its sessions (a warm "
        "phase's idle pods included; the trainers' beside it, their training included), median of the "
        "repetitions: " + ", ".join(cells) + ".",
        "",
    ]


def section(b3: dict[str, Any], heading_note: str = "") -> list[str]:
    """The report's B3 section, its sentences computed from the figures."""
    head = ["## B3 session start" + heading_note, ""]
    if "stages" not in b3["summary"]["warm"]["all"]:
        return [*head, "(An earlier design: create to the agent's first acknowledgement; rerun B3.)", ""]
    rows = []
    pool = b3["pool"]
    for mode, label in (("warm", f"warm (`poolRef`, pool of {pool})"), ("cold", "cold (own pod)")):
        for part in ("steady", "burst", "all"):
            q = b3["summary"][mode][part]
            rows.append(
                f"| {label} | {part} | {q['n']} | {q['p50']} s | {q['p90']} s | {q['p99']} s | "
                f"{q['min']}-{q['max']} s |"
            )
    stage_rows = []
    for stage in (*STAGES, "total"):
        cells = []
        for mode in ("warm", "cold"):
            for part in ("steady", "burst"):
                q = b3["summary"][mode][part]["stages"].get(stage, {})
                cells.append(f"{q['p50']} / {q['p90']} / {q['p99']}" if "p50" in q else "-")
        says = STAGE_SAYS.get(stage, "create -> status (all stages)")
        stage_rows.append(f"| {stage} | {says} | " + " | ".join(cells) + " |")
    cpu_rows = []
    for r in b3["runs"]:
        for part in ("idle", "steady", "burst"):
            if part not in r["phases"]:
                continue
            ph = r["phases"][part]
            spent = ", ".join(f"{k} {v}" for k, v in ph["cpu_s"].items())
            if ph.get("operator_requests"):
                spent += "; the operator's requests: " + ", ".join(
                    f"{v} {n}" for v, n in ph["operator_requests"].items()
                )
            if rec := ph.get("session_reconciles"):
                spent += (
                    f"; {rec['reconciles']} session reconciles, {rec['mean_s']} s each and "
                    f"{rec['queue_wait_mean_s']} s in the queue before it on average"
                )
            cpu_rows.append(
                f"- rep {r['rep'] + 1} {r['mode']} {part} (machine {ph['busy_at_start']:.0%} busy at its start): {spent}"
            )
            if last := ph.get("to_last_start"):
                cpu = last["cpu_s"]
                cpu_rows.append(
                    f"  - from the burst's creates to its last start, {last['seconds']} s, of the "
                    f"{2 * last['seconds']:.1f} CPU s the 2 cores had: "
                    + ", ".join(f"{k} {v}" for k, v in cpu.items())
                )
                if served := last.get("apiserver_requests"):
                    top = list(served.items())[:10]
                    cpu_rows.append(
                        f"  - the API server served meanwhile {sum(served.values())} requests (watches "
                        "aside), most: " + ", ".join(f"{k} {n}" for k, n in top)
                    )
    warm, cold = b3["summary"]["warm"]["all"], b3["summary"]["cold"]["all"]
    n = warm["n"]
    slowest = max(STAGES, key=lambda k: b3["summary"]["warm"]["all"]["stages"].get(k, {}).get("p50", 0))
    return [
        *head,
        f"Run {b3['started']} at commit {b3['commit']}.",
        "",
        "From the create call to the session's trainer writing its first progress. Every moment after the create "
        "call is recorded by the component it belongs to: the operator's start record (its log, with "
        "`shoal_session_start_stage_seconds`) gives when it first reconciled the session, claimed or created "
        "its pod and wrote the status showing progress; the agent sends with its report when it had the config, "
        "started (or handed the session to) the trainer, and the trainer's first progress file's write time. "
        "Every agent runs as a real local process for its KWOK pod, with the bandit trainer double (so torch's "
        "import is not in it); a warm pod's trainer waits in standby for its claim. "
        f"{niceness(b3)}{workload(b3)}Each phase starts once the "
        "pool's pods are idle with their trainers in standby and the machine is quiet. Per repetition: "
        f"{b3['steady']} sessions arriving at random 0.1-0.5 s gaps, then, once they have finished, {b3['burst']} "
        f"at once; warm and cold alternate first; {b3['reps']} repetitions, every session's stages in results.json. "
        f"The pool holds {pool} pods.",
        "",
        "| | arrivals | n | p50 | p90 | p99 | range |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Where the time goes, each stage from the one before (p50 / p90 / p99, seconds):",
        "",
        "| stage | from the one before | warm steady | warm burst | cold steady | cold burst |",
        "|---|---|---|---|---|---|",
        *stage_rows,
        "",
        "CPU seconds per phase (the operator, each test-bed process and the benchmark's own (its clients and "
        "local kubelet); the local pods' agents and trainers, sampled every 0.5 s; the whole machine, 2 "
        "cores, whose rest is the kernel and anything else running):",
        "",
        *cpu_rows,
        "",
        *agent_cost(b3),
        f"Over all {n} warm starts: p50 {warm['p50']} s, p99 {warm['p99']} s, "
        f"{round(cold['p50'] / warm['p50'], 1) if warm.get('p50') else '?'}x sooner than cold at the median "
        f"(cold p50 {cold['p50']} s); the warm stage with the largest median is `{slowest}`. "
        + (
            f"With {n} samples p99 lies between the two largest (it is not simply the maximum)."
            if n >= 100
            else f"With {n} samples p99 is interpolated next to the maximum: a rough figure."
        ),
        "",
        f"Goal ({b3['goal']}): **{plan.verdict(b3)}**.",
        "",
    ]
