"""What B1 and B4 compute from their raw figures: requests by verb from client metrics, B1's verdict
against both of kcm's kinds, and B4's peak and steady figures from its phases."""

from __future__ import annotations

from typing import Any

from bench import b1, b4
from bench.harness import by_method

KCM = """# HELP rest_client_requests_total Number of HTTP requests
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="GET"} 10
rest_client_requests_total{code="201",host="127.0.0.1:6443",method="POST"} 500
rest_client_requests_total{code="409",host="127.0.0.1:6443",method="POST"} 3
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="PUT"} 250
rest_client_requests_total_other{method="PUT"} 99
"""


def test_requests_are_summed_per_verb_over_codes() -> None:
    assert by_method(KCM, "rest_client_requests_total") == {"GET": 10.0, "POST": 503.0, "PUT": 250.0}
    assert b1.metric_sum(KCM, "rest_client_requests_total") == 763.0


def run(kind: str, rep: int, seconds: float, requests: float) -> dict[str, Any]:
    return {
        "rep": rep,
        "kind": kind,
        "seconds": seconds,
        "seconds_to_pods_ready": seconds - 1,
        "controller_requests_per_pod": requests,
        "controller_requests_per_pod_by_verb": {"POST": 1.0, "PUT": requests - 1.0},
        "controller_cpu_seconds": 1.0,
        "apiserver_requests_per_pod": 6.0,
        "client_throttle_seconds": 0.0,
        "kcm_throttling_log_lines": 0 if kind != "ContainerPool" else None,
    }


def test_b1_goal_needs_shoal_to_match_replicasets_and_deployments() -> None:
    setting = b1.SETTINGS[0]
    runs = [
        run("Deployment", 0, 10.0, 3.0),
        run("ReplicaSet", 0, 6.0, 2.0),
        run("ContainerPool", 0, 8.0, 2.5),
    ]
    s = b1.summarise(setting, runs)
    assert s["ratio_time_pools_vs"] == {"ReplicaSet": 1.333, "Deployment": 0.8}
    assert s["fewer_or_equal_requests_than"] == {"ReplicaSet": False, "Deployment": True}
    assert not s["goal_met"]  # faster than Deployments is not enough: ReplicaSets are the nearest equal
    assert s["ContainerPool"]["requests_per_pod_by_verb"] == {"POST": 1.0, "PUT": 1.5}
    faster = b1.summarise(setting, [*runs[:2], run("ContainerPool", 0, 5.0, 2.0)])
    assert faster["goal_met"]
    report = "\n".join(
        b1.section(
            {"started": "now", "commit": "abc1234", "mode": "full", "objects": 1, "pods_each": 5,
             "repetitions": 1, "settings": {"raised": s}, "goal": "g", "goal_met": False}
        )
    )  # fmt: skip
    assert "1.333x kcm's time for ReplicaSets (later)" in report
    assert "0.8x kcm's time for Deployments (sooner)" in report
    assert "| raised | kcm, ReplicaSets | 6.0 | 5.0 |" in report


def test_b4_phase_figures_come_from_its_samples() -> None:
    sampler = b4.Sampler()
    sampler.stop()  # no process followed: samples are given
    sampler.samples = [
        ("build", 0.0, 50.0, 1.0),
        ("build", 10.0, 120.0, 6.0),
        ("steady", 10.0, 110.0, 6.0),
        ("steady", 30.0, 100.0, 8.0),
    ]
    build = sampler.phase_figures("build", 0.0)
    assert build == {
        "seconds": 10.0,
        "rss_mib_max": 120.0,
        "rss_mib_end": 120.0,
        "cpu_s": 6.0,
        "cpu_cores_avg": 0.6,
    }
    steady = sampler.phase_figures("steady", 6.0)
    assert steady["cpu_cores_avg"] == 0.1 and steady["rss_mib_max"] == 110.0


def test_b4_judges_memory_at_its_peak_and_cpu_in_steady_state() -> None:
    phases = {
        "build": {"rss_mib_max": 150.0, "cpu_cores_avg": 0.9},
        "restart": {"rss_mib_max": 210.0, "cpu_cores_avg": 1.0},
        "steady": {"rss_mib_max": 120.0, "cpu_cores_avg": 0.1},
    }
    assert b4.judge(phases) == {
        "rss_mib_peak": 210.0,
        "peak_phase": "restart",
        "cpu_cores_steady": 0.1,
        "goal_met": False,
    }
    phases["restart"]["rss_mib_max"] = 180.0
    assert b4.judge(phases)["goal_met"]  # busy phases' CPU is reported, not judged
