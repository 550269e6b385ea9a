"""B3's section of docs/benchmarks.md, from its recorded results: where a start's time went, what the
sessions trained, and what an idle warm pool costs."""

from __future__ import annotations

import statistics
from typing import Any

from bench import plan
from bench.b3 import IDLE_S
from shoal.sessions.starts import STAGES

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
