"""`make bench`: benchmarks (not tests). Prints progress, writes bench/results/ (JSON, Markdown, PNG)."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Any

import psutil

from bench import b2 as b2_bench
from bench import engine_speed, plan, readme

RESULTS = plan.RESULTS


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )


def bench_b5(reps: int = 3) -> dict[str, Any]:
    log("B5 engine throughput")
    from bench.stats import provenance

    head = provenance()
    plain = [round(engine_speed.measure(predictive=False)) for _ in range(reps)]
    costs = [engine_speed.forecast_costs() for _ in range(reps)]
    per_eval = [c["evaluation_ms_at_7_days"] for c in costs]
    forecast = {
        **costs[0],
        "evaluation_ms_at_7_days": statistics.median(per_eval),
        "raw_evaluation_ms": per_eval,
        "restore_ms": statistics.median(c["restore_ms"] for c in costs),
        "raw_restore_ms": [c["restore_ms"] for c in costs],
        "evaluation_ms_at_7_days_detecting": statistics.median(
            c["evaluation_ms_at_7_days_detecting"] for c in costs
        ),
        "raw_evaluation_ms_detecting": [c["evaluation_ms_at_7_days_detecting"] for c in costs],
    }
    forecast["goal_met"] = (
        max(forecast["evaluation_ms_at_7_days"], forecast["evaluation_ms_at_7_days_detecting"])
        <= forecast["goal_ms"]
    )
    median = statistics.median(plain)
    return {
        **head,
        "repetitions": reps,
        "evaluations_per_s_per_core": round(median),
        "raw_evaluations_per_s": plain,
        "goal": 10000,
        "goal_met": median >= 10000,
        "forecast": forecast,
    }


def forecast_sentence(b5: dict[str, Any]) -> str:
    f = b5.get("forecast")
    if not f:
        return "(This run predates the forecast-cost measurement.)"
    return (
        f"With prediction over seven days of history (a daily season on a 60 s grid, "
        f"{f['history_points']:,} points): **{f['evaluation_ms_at_7_days']} ms** per evaluation "
        f"(raw {f.get('raw_evaluation_ms', '?')}) "
        f"(goal <= {f['goal_ms']} ms: {plan.verdict(b5, f['goal_met'])}); restoring it from its "
        f"ConfigMap takes {f['restore_ms']} ms once, and the ConfigMap holds {f['persisted_bytes']:,} bytes "
        f"(bound {f['persisted_goal_bytes']:,})."
        + (
            f" With no season configured, the week's daily season is found in the history "
            f"({f['detected_season_seconds']} s) and an evaluation costs "
            f"**{f['evaluation_ms_at_7_days_detecting']} ms**, the search every 15 minutes included "
            f"(raw {f.get('raw_evaluation_ms_detecting', '?')})."
            if "evaluation_ms_at_7_days_detecting" in f
            else ""
        )
    )


def not_rerun(results: dict[str, Any], key: str) -> str:
    """A section's heading says when its figures are no verdict (quick mode, an uncommitted tree)."""
    why = plan.not_judged(results.get(key, {}))
    return f" ({why}: figures, not a verdict)" if why else ""


def report(results: dict[str, Any]) -> str:
    b2 = results["B2"]
    lines = [
        "# Shoal benchmark results",
        "",
        f"Last updated {results.get('updated', results.get('time', '?'))}. Produced by `make bench`, each benchmark "
        "written as it ends; every section has its own run date, commit and mode, raw numbers in `results.json`. "
        "A figure from quick mode or an uncommitted tree says so in its heading and gives no verdict.",
        "",
    ]
    lines += b2_bench.section(b2, not_rerun(results, "B2"))
    b5 = results["B5"]
    lines += [
        "",
        "## B5 engine throughput" + not_rerun(results, "B5"),
        "",
        f"Run {b5.get('started', '?')} at {b5.get('commit', '?')}, median of {b5.get('repetitions', 1)} "
        f"(raw {b5.get('raw_evaluations_per_s', '?')}). "
        f"`decide()` with two metrics (10 pods, one Prometheus value): **{b5['evaluations_per_s_per_core']:,}** "
        f"evaluations per second on one core (goal >= 10,000: {plan.verdict(b5)}). " + forecast_sentence(b5),
        "",
    ]
    if "B1" in results:
        from bench import b1 as b1_bench

        lines += b1_bench.section(results["B1"], not_rerun(results, "B1"))
    if "B3" in results and "summary" in results["B3"]:  # (earlier runs measured another thing)
        from bench import b3_report

        lines += b3_report.section(results["B3"], not_rerun(results, "B3"))
    if "B6" in results:
        from bench import b6 as b6_bench

        lines += b6_bench.section(results["B6"], not_rerun(results, "B6"))
    if "B4" in results:
        from bench import b4 as b4_bench

        lines += b4_bench.section(results["B4"], not_rerun(results, "B4"))
    lines += agent_sections(results)
    if "B9" in results:
        from bench import b9 as b9_bench

        lines += b9_bench.section(results["B9"], not_rerun(results, "B9"))
    lines += soak_section()
    missing = [k for k in plan.ORDER if k not in results]
    if missing:
        lines += ["## Not run yet", "", *[f"- {m}" for m in missing], ""]
    return "\n".join(lines)


def soak_section() -> list[str]:
    """The memory soak (python -m bench.soak, 30 min) has its own file, date and commit."""
    path = RESULTS / "soak.json"
    if not path.exists():
        return []
    soak = json.loads(path.read_text())
    v, c = soak["verdict"], soak["counts"]
    return [
        "## Memory soak with churn",
        "",
        f"Run {soak['started']} at {soak['commit']}, {soak['minutes']:g} minutes (`python -m bench.soak`). One "
        f"operator process against the test bed; every {soak['cycle_seconds']:g} s a new ContainerPool, a "
        "WorkerScaler scaling it from Prometheus and a TrainingSession that stays queued, all under new names, "
        f"each deleted three cycles later, and a new namespace every few cycles: {c['created']:,} objects "
        f"created, {c['deleted']:,} deleted, {c['namespaces_deleted']} namespaces deleted. RSS and the number of "
        "series on /metrics sampled every 10 s (raw samples in soak.json).",
        "",
        "| | first 5 min after warm-up | last 5 min |",
        "|---|---|---|",
        f"| RSS (median) | {v['rss_first_window_mib']} MiB | {v['rss_last_window_mib']} MiB |",
        f"| /metrics series (median) | {v['series_first_window']:g} | {v['series_last_window']:g} |",
        "",
        f"Growth {v['rss_growth']:+.1%}, slope {v['rss_slope_mib_per_hour']:+.2f} MiB/h after warm-up. Flat "
        f"(last window within 5 % of the first): **{'yes' if v['flat'] else 'no'}**.",
        "",
        "![soak](soak.png)",
        "",
    ]


def agent_sections(results: dict[str, Any]) -> list[str]:
    """B7 and B8 carry their own start time and commit: they are reported only when run."""
    lines: list[str] = []
    if "B7" in results:
        b7 = results["B7"]
        q = b7["latency_s"]
        lines += [
            "## B7 agent command latency",
            "",
            f"Run {b7['started']} at {b7['commit']}. A real shoal-agent as a local process for a KWOK session pod "
            "(its ServiceAccount token, its watch on its own pod), the bandit test double as its trainer; "
            f"{b7['commands']} checkpoint commands written as pod annotations at random 0.05-0.5 s spacing; latency "
            "from just before the PATCH to the agent signalling the trainer.",
            "",
            "| p50 | p90 | p99 | max |",
            "|---|---|---|---|",
            f"| {q['p50'] * 1000:.0f} ms | {q['p90'] * 1000:.0f} ms | {q['p99'] * 1000:.0f} ms | {q['max'] * 1000:.0f} ms |",
            "",
            f"Goal p99 <= 1 s: **{plan.verdict(b7)}** (raw samples in results.json).",
            "",
        ]
    if "B8" in results:
        b8 = results["B8"]
        reps = ", ".join(f"{r['mean_reward']} ({r['seconds']} s, {r['fps']} fps)" for r in b8["repetitions"])
        lines += [
            "## B8 learning check",
            "",
            f"Run {b8['started']} at {b8['commit']}. `python -m shoal.agent.sb3`, PPO on CartPole-v1 with a session's "
            f"defaults (1 environment, learning rate 3e-4, observation normalisation), {b8['timesteps']:,} timesteps, "
            f"{len(b8['repetitions'])} repetitions on CPU: mean episode reward over the last 100 episodes {reps}; "
            f"median **{b8['median_mean_reward']}** against **{b8['random_policy_mean_reward']}** for a random "
            f"policy. Goal (median at least 4x random): **{plan.verdict(b8)}**.",
            "",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(plan.ORDER), help="comma-separated benchmarks to run")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, minutes each: figures to compare, never a verdict"
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite report.md from results.json")
    parser.add_argument(
        "--no-save",
        action="store_true",
        help="write no results, report or docs/benchmarks.md figures (a profiled run's timings are not figures)",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        stored = plan.load()
        plan.write_atomic(RESULTS / "report.md", report(stored))
        readme.rewrite(stored)
        return 0
    which = [k for k in plan.ORDER if k in set(args.only.upper().split(","))]
    unknown = set(args.only.upper().split(",")) - set(plan.ORDER)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {', '.join(plan.ORDER)}")
    mode = "quick" if args.quick else "full"
    save = plan.Store(mode, machine(), report, readme.rewrite)
    started = time.monotonic()

    def done(key: str, result: dict[str, Any]) -> None:
        if args.no_save:
            log(
                f"{key} done ({mode}), {time.monotonic() - started:.0f} s into the run; not saved (--no-save)"
            )
            return
        save(key, result)
        log(f"{key} done ({mode}), {time.monotonic() - started:.0f} s into the run; results.json updated")

    log(f"{mode} mode: {', '.join(which)}")
    if "B2" in which:
        done("B2", b2_bench.run(RESULTS, log))
    if "B5" in which:
        done("B5", bench_b5(**plan.sizes("B5", args.quick)))
    if "B8" in which:
        from bench import agent

        done("B8", agent.b8(**plan.sizes("B8", args.quick)))
    if set(which) & {"B1", "B3", "B4", "B6", "B7", "B9"}:
        from bench import cluster

        cluster.run_all(which, args.quick, done)
    stored = plan.load()
    log(f"wrote {RESULTS / 'report.md'} in {time.monotonic() - started:.0f} s")
    if "B2" in stored and "rows_met" in stored["B2"]:
        print(f"B2 goal met on {stored['B2']['rows_met']} of {stored['B2']['rows']} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
