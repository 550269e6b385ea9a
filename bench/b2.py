"""B2: scaling quality, one row per trace and metric (the synthetic traces of bench/traces and the
real ones of ../shared/traces), Shoal at a user's defaults against HPA v2 and KEDA as it behaves,
each row judged against the goal on its own; the sentences of the report are computed from the rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from bench import frontier, plan, scaling_sim, warm
from bench.stats import provenance

SYNTHETIC = ["diurnal", "spike", "ramp", "noisy", "step"]
GOAL = {"under_ratio_max": 0.5, "cost_ratio_max": 1.0, "events_ratio_max": 1.0}
SCALERS = ("hpa", "keda", "shoal", "shoal_predictive", "oracle", "floor")


def traces() -> list[str]:
    real = [n for n, (file, _) in scaling_sim.REAL.items() if (scaling_sim.REAL_TRACES / file).exists()]
    return SYNTHETIC + real


def verdict(hpa: dict[str, Any], shoal: dict[str, Any]) -> dict[str, Any]:
    """The goal for one row: under <= 0.5x HPA's (0 where HPA is never short), cost <= 1.0x, events <= 1.0x."""
    h_under, s_under = hpa["under_replica_s"], shoal["under_replica_s"]
    under = round(s_under / h_under, 3) if h_under else None
    cost = round(shoal["cost_replica_s"] / hpa["cost_replica_s"], 3)
    events = round(shoal["scale_events"] / hpa["scale_events"], 3) if hpa["scale_events"] else None
    under_ok = s_under == 0 if h_under == 0 else (under or 0) <= GOAL["under_ratio_max"]
    events_ok = shoal["scale_events"] <= hpa["scale_events"]
    return {
        "under": under,
        "cost": cost,
        "scale_events": events,
        "under_met": under_ok,
        "cost_met": cost <= GOAL["cost_ratio_max"],
        "events_met": events_ok,
        "met": under_ok and cost <= GOAL["cost_ratio_max"] and events_ok,
    }


def run(results_dir: Path, log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        **provenance(),
        "startup_s": 60,
        "poll_s": 15,
        "target_utilization": scaling_sim.TARGET,
        "scale_factors": {n: f for n, (_, f) in scaling_sim.REAL.items()},
        "goal": GOAL,
        "traces": {},
    }
    for trace in traces():
        for metric in ("queue", "cpu"):
            log(f"B2 {trace}/{metric}")
            runs = scaling_sim.simulate(trace, metric)
            row: dict[str, Any] = {
                k: {
                    "under_replica_s": round(r.under),
                    "over_replica_s": round(r.over),
                    "cost_replica_s": round(r.cost),
                    "scale_events": r.events,
                }
                for k, r in runs.items()
            }
            row["real"] = trace in scaling_sim.REAL
            row["vs_hpa"] = verdict(row["hpa"], row["shoal"])
            row["predictive_vs_hpa"] = verdict(row["hpa"], row["shoal_predictive"])
            h = runs["hpa"]
            row["frontier"] = frontier.frontier(
                scaling_sim.load_trace(trace), h.under, h.cost, h.events, 60, scaling_sim.TARGET
            )
            # On a cpu row the frontier's scalers see the true load, which utilization hides once it
            # saturates: there a reachable frontier does not make the goal reachable from cpu alone.
            row["reachable"] = frontier.reachable(row["frontier"], h.under, GOAL["under_ratio_max"])
            row["plot"] = plot(results_dir, trace, metric, runs)
            row["warm"] = warm.row(trace, metric)
            row["warm"]["vs_hpa"] = verdict(row["warm"]["hpa"], row["warm"]["shoal_warm"])
            out["traces"][f"{trace}/{metric}"] = row
    rows = out["traces"].values()
    out["rows_met"] = sum(1 for r in rows if r["vs_hpa"]["met"])
    out["rows"] = len(out["traces"])
    out["goal_met"] = out["rows_met"] == out["rows"]
    return out


def beyond_frontier(b2: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(rows missed, those of them beyond the reactive frontier)."""
    missed = [k for k, r in b2["traces"].items() if not r["vs_hpa"]["met"]]
    return missed, [k for k in missed if not b2["traces"][k]["reachable"]]


def lever(row: dict[str, Any]) -> str:
    """Which lever a missed row would need, from the row's own figures: the first that meets its
    under-provisioning and cost goals of warm capacity, prediction, and reactive tuning (the
    frontier), else foresight no reactive scaler has."""
    v = row["vs_hpa"]
    if v["under_met"] and v["cost_met"]:
        return "fewer size changes (a longer scale-down window)"
    w = (row.get("warm") or {}).get("vs_hpa")
    if w and w["under_met"] and w["cost_met"]:
        return (
            f"warm capacity (minIdle {row['warm']['min_idle']}: under {_ratio(w['under'])}, cost {w['cost']})"
        )
    p = row["predictive_vs_hpa"]
    if p["under_met"] and p["cost_met"]:
        return "prediction"
    if row["reachable"]:
        return "reactive tuning (" + _frontier_cell(row) + ")"
    return "foresight (beyond the reactive frontier; warm capacity and prediction fall short here)"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v}"


def _frontier_cell(row: dict[str, Any]) -> str:
    b = row["frontier"]["within_cost_and_events"]
    if b is None:
        return "none within cost and events"
    return (
        f"{_ratio(b['under_ratio'])} (target {b['target']:.0%}, window {b['window_s']:.0f} s, "
        f"poll {b['poll_s']:.0f} s)"
    )


def section(b2: dict[str, Any], heading_suffix: str) -> list[str]:
    first = next(iter(b2["traces"].values()))
    if "vs_hpa" not in first or "frontier" not in first:
        return [f"## B2 scaling quality{heading_suffix}", "", "(An earlier format; rerun B2.)", ""]
    factors = ", ".join(f"{n} x{f:g}" for n, f in b2["scale_factors"].items())
    members = first["frontier"]["members"]
    lines = [
        f"## B2 scaling quality (simulated replay){heading_suffix}",
        "",
        f"Run {b2['started']} at {b2['commit']}. Each trace is replayed second by second: the synthetic ones of "
        "bench/traces (4 h, 5 s bins) and the real ones of ../shared/traces (5 s bins, requests per second times "
        f"one constant per trace so that a replica serves one unit: {factors}). A new pod serves after "
        f"{b2['startup_s']} s. Every scaler evaluates every {b2['poll_s']} s with a 70 % target: the HPA v2 "
        "reference (0.1 tolerance, 300 s scale-down window, +max(4 pods, 100 %) per 15 s); KEDA as it behaves "
        "(its metrics server asks the scaler afresh at every HPA sync, so above zero it is HPA on the same "
        "value, and only activation from zero follows its 30 s pollingInterval: with minReplicas 1, as here, "
        "its rows are HPA's); Shoal's engine at a user's defaults (prediction off, as a WorkerScaler without "
        "`predictive` gets), and beside it with prediction on (horizon = start-up time); an oracle that knows "
        "the load ahead; and a *causal floor* (sees every second, sizes at once, never scales down). *under* = "
        "replica-seconds of load above ready capacity; *cost* = replica-seconds of all pods; *events* = size "
        "changes. `queue`: the metric is the load; `cpu`: utilization of ready pods, saturating at 100 %. Goal "
        "per row, for Shoal at defaults: under <= 0.5x HPA's (0 where HPA is never short), cost <= 1.0x, "
        "events <= HPA's.",
        "",
        f"*Reactive frontier*: {members} reactive scalers (bench/frontier.py) that see the true load, size for "
        "it at once with no step limit, and differ in target utilization (40-90 %), scale-down window "
        "(0-1200 s), poll (5 or 15 s) and tolerance (0 or 0.1). The column gives the least under-provisioning "
        "any of them reaches at no more than HPA's cost and events, against HPA's. Where it is above 0.5 the "
        "row's goal asks for foresight of the load: no scaler of the family, however tuned, meets it. On the "
        "cpu rows the family sees more than utilization shows, so there it is a bound, not a promise.",
        "",
        "| trace/metric | under HPA | under Shoal | Shoal/HPA under | cost | events HPA / Shoal | "
        "predictive: under, cost | floor | frontier under | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in b2["traces"].items():
        v, pv = row["vs_hpa"], row["predictive_vs_hpa"]
        missed = [
            n
            for n, ok in (("under", v["under_met"]), ("cost", v["cost_met"]), ("events", v["events_met"]))
            if not ok
        ]
        goal = "met" if v["met"] else "not met (" + ", ".join(missed) + "); needs " + lever(row)
        lines.append(
            f"| {key}{' (real)' if row['real'] else ''} | {row['hpa']['under_replica_s']} | "
            f"{row['shoal']['under_replica_s']} | {_ratio(v['under'])} | {v['cost']} | "
            f"{row['hpa']['scale_events']} / {row['shoal']['scale_events']} | "
            f"{_ratio(pv['under'])}, {pv['cost']} | {row['floor']['under_replica_s']} | "
            f"{_frontier_cell(row)} | {goal} |"
        )
    real = [r for r in b2["traces"].values() if r["real"]]
    real_met = sum(1 for r in real if r["vs_hpa"]["met"])
    ratios = [r["vs_hpa"]["under"] for r in b2["traces"].values() if r["vs_hpa"]["under"] is not None]
    missed_rows, beyond = beyond_frontier(b2)
    lines += [
        "",
        f"**Goal met on {b2['rows_met']} of {b2['rows']} rows** ({real_met} of {len(real)} real-trace rows). "
        + (
            f"Where HPA is ever short, Shoal's under-provisioning is {min(ratios)}x to {max(ratios)}x HPA's. "
            if ratios
            else ""
        )
        + f"Of the {len(missed_rows)} rows missed, {len(beyond)} are beyond the reactive frontier"
        + (f" ({', '.join(beyond)})" if beyond else "")
        + f". Goal (every row): **{plan.verdict(b2)}**. "
        + "Levers the missed rows would need (each row's own figures): "
        + ", ".join(
            f"{n} {name}"
            for name, n in Counter(lever(b2["traces"][k]).split(" (")[0] for k in missed_rows).most_common()
        )
        + ".",
        "",
    ]
    lines += warm_section(b2)
    lines += [f"![{k}]({row['plot']})" for k, row in b2["traces"].items()]
    return lines


def warm_section(b2: dict[str, Any]) -> list[str]:
    rows = {k: r["warm"] for k, r in b2["traces"].items() if "warm" in r}
    if not rows:
        return []
    lines = [
        "### Warm capacity as a lever: WorkerScaler + warm pool against HPA + Deployment",
        "",
        "The same traces, held out: each trace's first half sizes the pool's `warm.minIdle` (the "
        f"{warm.PERCENTILE}th percentile of the demand's rise within one start-up time, one rule for every "
        "trace), and its second half is replayed for both (bench/warm.py). The pool holds max(the scaler's "
        "size, demand + minIdle) pods each second: a rise claims idle pods at once, and the pool starts "
        "new ones behind it. The idle pods are the headroom, so the scaler sizes for the demand itself "
        "(100 % target) where HPA keeps its 70 %. Cost counts every pod, idle ones included; *events* are "
        "the scaler's size changes, *pool changes* the pool's own.",
        "",
        "| trace/metric | minIdle | under HPA | under warm | ratio | cost | events HPA / scaler | pool changes | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, w in rows.items():
        v = w["vs_hpa"]
        missed = [
            n
            for n, ok in (("under", v["under_met"]), ("cost", v["cost_met"]), ("events", v["events_met"]))
            if not ok
        ]
        lines.append(
            f"| {key}{' (real)' if b2['traces'][key]['real'] else ''} | {w['min_idle']} | "
            f"{w['hpa']['under_replica_s']} | {w['shoal_warm']['under_replica_s']} | {_ratio(v['under'])} | "
            f"{v['cost']} | {w['hpa']['scale_events']} / {w['shoal_warm']['scale_events']} | "
            f"{w['shoal_warm']['pool_changes']} | {'met' if v['met'] else 'not met (' + ', '.join(missed) + ')'} |"
        )
    pays = [k for k, w in rows.items() if w["vs_hpa"]["under_met"] and w["vs_hpa"]["cost_met"]]
    dear = [k for k, w in rows.items() if not w["vs_hpa"]["cost_met"]]
    lines += [
        "",
        f"Under-provisioning at most half of HPA's at no more than its cost on {len(pays)} of {len(rows)} rows"
        + (f" ({', '.join(pays)})" if pays else "")
        + f"; dearer than HPA on {len(dear)}"
        + (f" ({', '.join(dear)})" if dear else "")
        + f". The scaler's size changes exceed HPA's on {sum(not w['vs_hpa']['events_met'] for w in rows.values())} "
        f"of {len(rows)} rows, and the pool, following its claims second by second, changes its size "
        f"{sum(w['shoal_warm']['pool_changes'] for w in rows.values())} times in all against HPA's "
        f"{sum(w['hpa']['scale_events'] for w in rows.values())}.",
        "",
    ]
    return lines


def plot(results_dir: Path, trace: str, metric: str, runs: dict[str, scaling_sim.Run]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    load = scaling_sim.load_trace(trace)
    fig, ax = plt.subplots(figsize=(10, 4))
    minutes = [t / 60 for t, _ in load]
    ax.plot(minutes, [x / scaling_sim.TARGET for _, x in load], color="0.75", linewidth=0.8,
            label=f"demand / target ({scaling_sim.TARGET:.0%})")  # fmt: skip
    ax.plot(minutes, [x for _, x in load], color="0.45", linewidth=0.8, label="demand (replicas at 100 %)")
    styles = {
        "hpa": ("tab:blue", "-"),
        "keda": ("tab:green", ":"),
        "shoal": ("tab:red", "-"),
        "shoal_predictive": ("tab:orange", "--"),
        "oracle": ("k", "--"),
    }
    for key, r in runs.items():
        if key in styles:  # the causal floor never scales down: it would only flatten the plot
            color, ls = styles[key]
            ax.plot(
                [t / 60 for t in r.times],
                r.ready,
                color=color,
                linestyle=ls,
                label=f"{r.name} (ready)",
                linewidth=1.1,
            )
    ax.set_xlabel("minutes")
    ax.set_ylabel("replicas")
    ax.set_title(f"B2 {trace} trace, {metric} metric, 60 s pod start-up")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    name = f"b2-{trace}-{metric}.png"
    fig.savefig(results_dir / name, dpi=90)
    plt.close(fig)
    return name
