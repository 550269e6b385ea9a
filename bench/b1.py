"""B1 pool throughput: ContainerPools (Shoal) against ReplicaSets and Deployments
(kube-controller-manager), at equal client limits both ways, in rotating order. A ReplicaSet is the
nearest equal of a pool (one controller, one client bucket, pods straight from it); a Deployment is what
most users run (two controllers, each with its own bucket).

Two settings, each its own operator process and restart of kcm and the scheduler:
- `raised`: kcm and the scheduler at `--kube-api-qps=1000 --kube-api-burst=2000`, Shoal as shipped
  (no client-side limit): neither side waits for its own client.
- `defaults`: kcm at its defaults (20 QPS, burst 30), Shoal given the same (SHOAL_KUBE_API_QPS=20,
  SHOAL_KUBE_API_BURST=30).
Per run: the time from the first create until every pod is Ready and every object's status says so,
each controller's own API requests per pod by verb from its own client metrics (kcm's
rest_client_requests_total, Shoal's shoal_api_requests_total), the API server's total per pod, the
seconds each controller's client waited for its rate limit, and each controller process's CPU seconds.
"""

from __future__ import annotations

import re
import ssl
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench import plan
from bench.harness import (
    CONTAINER,
    Operator,
    apiserver_requests,
    by_method,
    drop_namespace,
    log,
    namespace,
    ready_pods,
    settle,
    wait,
)
from bench.podtimes import PodTimes, median_stages, table
from bench.stats import provenance, quantiles
from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path
from shoal.times import parse_time
from testbed import cluster as testbed
from testbed import processes

KINDS = ("Deployment", "ReplicaSet", "ContainerPool")
BASELINES = ("ReplicaSet", "Deployment")
PATHS = {"Deployment": "deployments", "ReplicaSet": "replicasets"}
CONTROLLERS = ("kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class Setting:
    name: str
    controller_flags: tuple[str, ...]
    shoal_env: dict[str, str] = field(default_factory=dict)
    says: str = ""


# The test bed's kcm runs without leader election (testbed/components.py): so does the operator here,
# or its lease reads and renewals (about one a second) would count as requests per pod on one side only.
NO_ELECTION = {"SHOAL_LEADER_ELECTION": "false"}
SETTINGS = (
    Setting(
        "raised",
        ("--kube-api-qps=1000", "--kube-api-burst=2000"),
        dict(NO_ELECTION),
        "kcm and the scheduler at 1000 QPS / burst 2000; Shoal as shipped (no client limit); "
        "neither elects a leader",
    ),
    Setting(
        "defaults",
        (),
        {**NO_ELECTION, "SHOAL_KUBE_API_QPS": "20", "SHOAL_KUBE_API_BURST": "30"},
        "kcm at its defaults (20 QPS / burst 30); Shoal given the same; neither elects a leader",
    ),
)


def scrape(url: str) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test bed's self-signed serving certificate
    with urllib.request.urlopen(url, timeout=10, context=ctx) as r:
        return str(r.read().decode())


def metric_sum(text: str, name: str) -> float:
    """The sum over all label sets of `name` in a Prometheus text exposition."""
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$")
    return sum(float(m.group(2)) for line in text.splitlines() if (m := pattern.match(line)))


def cpu_seconds(pid: int | None) -> float:
    import psutil

    try:
        t = psutil.Process(pid).cpu_times() if pid else None
    except psutil.Error:
        return 0.0
    return t.user + t.system if t else 0.0


def kcm_metrics() -> str:
    return scrape(f"https://{testbed.HOST}:{testbed.PORTS['kube-controller-manager']}/metrics")


def throttle_lines() -> int:
    """kcm's 'Waited for ... due to client-side throttling' lines so far (logged for waits over 1 s)."""
    path = testbed.LOGS / "kube-controller-manager.log"
    return path.read_text(errors="replace").count("client-side throttling") if path.exists() else 0


def drained(op: Operator) -> bool:
    depth = [line for line in op.metrics().splitlines() if line.startswith("shoal_workqueue_depth{")]
    return bool(depth) and all(float(line.rsplit(" ", 1)[1]) == 0 for line in depth)


def restart_controllers(flags: tuple[str, ...]) -> None:
    for name in CONTROLLERS:
        processes.stop(name)
        processes.start(name, flags)


def body(kind: str, name: str, per: int) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [CONTAINER]}}
    if kind in PATHS:
        return {
            "metadata": {"name": name},
            "spec": {"replicas": per, "selector": {"matchLabels": {"app": name}}, "template": template},
        }
    return {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "ContainerPool",
        "metadata": {"name": name},
        "spec": {"replicas": per, "template": template},
    }


def one_run(kube: Kube, op: Operator, kind: str, objects: int, per: int) -> dict[str, Any]:
    ns = namespace(kube, f"b1-{kind.lower()}")
    path = (
        f"/apis/apps/v1/namespaces/{ns}/{PATHS[kind]}" if kind in PATHS else custom_path("containerpools", ns)
    )
    pid = op.pid if kind == "ContainerPool" else processes.pid_of("kube-controller-manager")

    def own() -> tuple[dict[str, float], float, float]:
        """The controller's own requests by verb, client-side waits and CPU seconds so far."""
        if kind in PATHS:
            text = kcm_metrics()
            verbs = by_method(text, "rest_client_requests_total")
            waited = metric_sum(text, "rest_client_rate_limiter_duration_seconds_sum")
        else:
            text = op.metrics()
            verbs = by_method(text, "shoal_api_requests_total")
            waited = metric_sum(text, "shoal_client_throttle_seconds_total")
        return verbs, waited, cpu_seconds(pid)

    # The operator done with the previous run (its pods' deletions), so neither side pays for it.
    wait(lambda: drained(op), 300, "the operator's work queue drained", interval=0.5)
    before_all, (before_verbs, before_wait, before_cpu), lines = (
        apiserver_requests(kube),
        own(),
        throttle_lines(),
    )
    created: dict[str, float] = {}
    with PodTimes(kube, ns) as times:
        start = time.time()

        def make(i: int) -> None:
            name = f"w{i:04d}"
            created[name] = time.time()  # before the call: the stages start from the client's request
            kube.create(path, body(kind, name, per))

        with ThreadPoolExecutor(8) as ex:
            list(ex.map(make, range(objects)))

        pods_ready: list[float] = []

        def settled() -> bool:
            if len(ready_pods(kube, ns)) < objects * per:
                return False
            pods_ready[:] = pods_ready or [time.time() - start]
            return all((o.get("status") or {}).get("readyReplicas") == per for o in kube.list_items(path))

        wait(settled, 900, f"{kind}s settled", interval=0.25)
        elapsed = time.time() - start
    after_verbs, after_wait, after_cpu = own()
    pods = objects * per
    verbs = {
        v: round((n - before_verbs.get(v, 0.0)) / pods, 2)
        for v, n in sorted(after_verbs.items())
        if n > before_verbs.get(v, 0.0)
    }
    latencies = []
    for p in ready_pods(kube, ns):
        owner = p["metadata"]["labels"].get("app")
        ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
        t = parse_time(ready.get("lastTransitionTime"))
        if owner in created and t:
            latencies.append(max(0.0, t.timestamp() - created[owner]))
    q = quantiles(latencies)
    out = {
        "seconds": round(elapsed, 2),
        "seconds_to_pods_ready": round(pods_ready[0], 2),
        "controller_requests_per_pod": round(sum(verbs.values()), 2),
        "controller_requests_per_pod_by_verb": verbs,
        "controller_cpu_seconds": round(after_cpu - before_cpu, 2),
        "apiserver_requests_per_pod": round((apiserver_requests(kube) - before_all) / pods, 2),
        "client_throttle_seconds": round(after_wait - before_wait, 2),
        "kcm_throttling_log_lines": throttle_lines() - lines if kind in PATHS else None,
        "create_to_ready_p50_s": q.get("p50"),
        "create_to_ready_p99_s": q.get("p99"),
        "stages": times.stages(created),
        "status_after_pods_ready_s": round(elapsed - pods_ready[0], 2),
    }
    drop_namespace(kube, ns)
    return out


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


def b1(kube: Kube, objects: int = 100, per: int = 5, reps: int = 5) -> dict[str, Any]:
    """Each setting: `reps` repetitions of both kinds, the order alternating; figures per setting and
    kind (median and range) with every repetition's raw numbers."""
    result: dict[str, Any] = {**provenance(), "objects": objects, "pods_each": per, "repetitions": reps}
    settings: dict[str, Any] = {}
    try:
        for setting in SETTINGS:
            log(f"B1 {setting.name}: {setting.says}")
            restart_controllers(setting.controller_flags)
            op = Operator(env=setting.shoal_env)
            runs: list[dict[str, Any]] = []
            try:
                for rep in range(reps):
                    for kind in KINDS[rep % len(KINDS) :] + KINDS[: rep % len(KINDS)]:
                        run = {"rep": rep, "kind": kind, **one_run(kube, op, kind, objects, per)}
                        log(f"B1 {setting.name} rep {rep} {kind}: {run}")
                        runs.append(run)
            finally:
                settle(kube)  # its pools' namespaces gone while it still runs
                op.stop()
            settings[setting.name] = summarise(setting, runs)
    finally:
        restart_controllers(())  # the test bed as it was
    result["settings"] = settings
    result["goal"] = (
        "in both settings: Shoal's median time <= kcm's for ReplicaSets and for Deployments, and Shoal's "
        "own requests per pod <= kcm's for each"
    )
    result["goal_met"] = bool(settings) and all(s["goal_met"] for s in settings.values())
    return result


def summarise(setting: Setting, runs: list[dict[str, Any]]) -> dict[str, Any]:
    per_kind: dict[str, Any] = {}
    for kind in KINDS:
        mine = [r for r in runs if r["kind"] == kind]
        if not mine:
            continue
        per_kind[kind] = {
            key: spread([r[key] for r in mine])
            for key in (
                "seconds",
                "seconds_to_pods_ready",
                "controller_requests_per_pod",
                "apiserver_requests_per_pod",
                "client_throttle_seconds",
                "controller_cpu_seconds",
            )
            if all(key in r for r in mine)
        }
        per_kind[kind]["stages"] = median_stages(mine)
        if all("status_after_pods_ready_s" in r for r in mine):
            per_kind[kind]["status_after_pods_ready_s"] = spread(
                [r["status_after_pods_ready_s"] for r in mine]
            )
        verbs = sorted({v for r in mine for v in r.get("controller_requests_per_pod_by_verb", {})})
        per_kind[kind]["requests_per_pod_by_verb"] = {
            v: round(statistics.median(r["controller_requests_per_pod_by_verb"].get(v, 0.0) for r in mine), 2)
            for v in verbs
        }
    shoal = per_kind["ContainerPool"]
    ratios = {
        kind: round(shoal["seconds"]["median"] / per_kind[kind]["seconds"]["median"], 3)
        for kind in BASELINES
        if kind in per_kind
    }
    fewer = {
        kind: shoal["controller_requests_per_pod"]["median"]
        <= per_kind[kind]["controller_requests_per_pod"]["median"]
        for kind in ratios
    }
    lines = sum(r["kcm_throttling_log_lines"] or 0 for r in runs)
    return {
        "says": setting.says,
        "controller_flags": list(setting.controller_flags),
        "shoal_env": setting.shoal_env,
        **per_kind,
        "ratio_time_pools_vs": ratios,
        "ratio_time_pools_vs_deployments": ratios.get("Deployment"),
        "fewer_or_equal_requests_than": fewer,
        "kcm_throttling_log_lines": lines,
        "goal_met": bool(ratios) and all(r <= 1.0 for r in ratios.values()) and all(fewer.values()),
        "runs": runs,
    }


WHO = {"Deployment": "kcm, Deployments", "ReplicaSet": "kcm, ReplicaSets", "ContainerPool": "Shoal, pools"}


def section(b1: dict[str, Any], heading_note: str = "") -> list[str]:
    """The report's B1 section, its sentences computed from the figures."""
    if "settings" not in b1:  # a run from before equal limits: its figures are not comparable
        return ["## B1 pool throughput" + heading_note, "", "Not rerun since B1 compared unequal limits.", ""]
    lines = [
        "## B1 pool throughput" + heading_note,
        "",
        f"Run {b1['started']} at {b1['commit']}: {b1['objects']} objects x {b1['pods_each']} pods (KWOK nodes), "
        f"created by 8 client threads, until every pod is Ready and every object's status says so; "
        f"{b1['repetitions']} repetitions per setting, the kinds taking turns at going first. Requests per pod: "
        "each controller's own client metrics (kcm's rest_client_requests_total, Shoal's "
        "shoal_api_requests_total), by verb, and the API server's total (every client). CPU: the controller "
        "process's seconds over the run (kcm's whole process; Shoal's operator). Median (range). A ReplicaSet "
        "is a pool's nearest equal: one controller with one client bucket on each side. A Deployment has two "
        "controllers, each with its own bucket at kcm's limit. Seconds: until every object reports all its "
        "pods ready; pods Ready: until the last pod is.",
        "",
        "| setting | controller | seconds | pods Ready | own requests/pod | by verb | API server requests/pod "
        "| client throttled s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(s: dict[str, float] | None) -> str:
        if not s:
            return "-"
        return str(s["median"]) if s["min"] == s["max"] else f"{s['median']} ({s['min']}-{s['max']})"

    for name, s in b1["settings"].items():
        for kind in KINDS:
            if kind not in s:
                continue
            k = s[kind]
            verbs = ", ".join(f"{v} {n}" for v, n in k.get("requests_per_pod_by_verb", {}).items()) or "-"
            lines.append(
                f"| {name} | {WHO[kind]} | {cell(k['seconds'])} | {cell(k['seconds_to_pods_ready'])} | "
                f"{cell(k['controller_requests_per_pod'])} | {verbs} | "
                f"{cell(k['apiserver_requests_per_pod'])} | {cell(k['client_throttle_seconds'])} | "
                f"{cell(k.get('controller_cpu_seconds'))} |"
            )
    lines.append("")
    for name, s in b1["settings"].items():
        ratios = s.get("ratio_time_pools_vs") or {"Deployment": s["ratio_time_pools_vs_deployments"]}
        shoal = s["ContainerPool"]
        against = []
        for kind, ratio in ratios.items():
            base = s[kind]
            fewer = (
                shoal["controller_requests_per_pod"]["median"]
                <= base["controller_requests_per_pod"]["median"]
            )
            cpu = (
                f", {shoal['controller_cpu_seconds']['median']} CPU s against "
                f"{base['controller_cpu_seconds']['median']}"
                if "controller_cpu_seconds" in shoal and "controller_cpu_seconds" in base
                else ""
            )
            against.append(
                f"{ratio}x kcm's time for {kind}s ({'sooner' if ratio <= 1.0 else 'later'}) with "
                f"{'fewer or as many' if fewer else 'more'} requests of its own per pod{cpu}"
            )
        lines.append(
            f"- **{name}** ({s['says']}): Shoal finishes at " + "; at ".join(against) + "; kcm logged "
            f"{s['kcm_throttling_log_lines']} client-side throttling line(s). Goal: "
            f"{plan.verdict(b1, s['goal_met'])}."
        )
    rows = {
        f"{name}: {WHO[kind]}": s[kind]["stages"]
        for name, s in b1["settings"].items()
        for kind in KINDS
        if (s.get(kind) or {}).get("stages")
    }
    if rows:
        status = {
            f"{name}: {WHO[kind]}": s[kind]["status_after_pods_ready_s"]["median"]
            for name, s in b1["settings"].items()
            for kind in KINDS
            if "status_after_pods_ready_s" in (s.get(kind) or {})
        }
        lines += [
            "",
            "Where the time goes: each pod's stages as a watch in the benchmark saw them, p50 / p90 over "
            "the pods in seconds (median of the runs), and the last step, the objects' status:",
            "",
            *table(rows, status),
        ]
    lines += ["", f"Goal ({b1['goal']}): **{plan.verdict(b1)}**.", ""]
    return lines
