"""Target mode on Resource metrics is kube-controller-manager's replica calculator: each case mirrors one
of `pkg/controller/podautoscaler/replica_calculator_test.go` (named in the test id), with its pods,
readiness, phases, levels (millicores against 1-core requests unless said) and expected replicas."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shoal.scaling.calculator import CPU_INITIALIZATION_SECONDS, propose
from shoal.scaling.engine import decide
from shoal.scaling.types import EngineConfig, History, MetricReading, Observation, PodSample, Rules

NOW = 1_800_000_000.0
HOT = NOW - 60  # started within the CPU initialization period
COOL = NOW - 2 * CPU_INITIALIZATION_SECONDS


def pods(
    levels: list[int | None],
    ready: list[bool] | None = None,
    phase: list[str] | None = None,
    deleting: list[bool] | None = None,
    started: list[float] | None = None,
    requests: list[float] | None = None,
) -> tuple[PodSample, ...]:
    n = len(levels)
    out = []
    for i in range(n):
        start = (started or [COOL] * n)[i]
        out.append(
            PodSample(
                f"pod-{i}",
                (ready or [True] * n)[i],
                None if levels[i] is None else levels[i] / 1000,  # type: ignore[operator]
                (requests or [1.0] * n)[i],
                phase=(phase or ["Running"] * n)[i],
                deleting=(deleting or [False] * n)[i],
                started=start,
                ready_since=start + 5,  # Ready 5 s after it started
                sampled=NOW - 1,
                window=60.0,  # metrics-server's window: a hot pod's sample overlaps its start
            )
        )
    return tuple(out)


def replicas(current: int, target: int, samples: tuple[PodSample, ...]) -> int | None:
    reading = MetricReading("cpu", "Resource", pods=samples, target_utilization=target / 100)
    return propose(reading, EngineConfig(min_replicas=1, max_replicas=100), current, NOW).replicas


R, U = True, False


@pytest.mark.parametrize(
    ("current", "target", "samples", "want"),
    [
        pytest.param(3, 30, pods([300, 500, 700]), 5, id="ResourceScale/scale up"),
        pytest.param(3, 30, pods([300, 500, 700], ready=[U, R, R]), 4, id="ResourceScale/unready pod scales less"),
        pytest.param(3, 30, pods([300, 500, 700], started=[HOT, COOL, COOL]), 4, id="ResourceScale/hot-CPU pod scales less"),
        pytest.param(3, 30, pods([400, 500, 700], ready=[R, U, U]), 3, id="ResourceScale/no scale: unready pods ignored"),
        pytest.param(
            3, 30, pods([400, 500, 700], ready=[R, U, U], started=[COOL, HOT, HOT]), 3,
            id="ResourceScale/no scale: hot-CPU pods ignored",
        ),
        pytest.param(
            2, 30, pods([500, 700, None, None], ready=[R, R, U, U], phase=["Running", "Running", "Failed", "Failed"]), 4,
            id="ResourceScale/scale up: failed pods ignored",
        ),
        pytest.param(
            2, 30, pods([500, 700, None, None], ready=[R, R, U, U], deleting=[False, False, True, True]), 4,
            id="ResourceScale/scale up: pods being deleted are ignored",
        ),
        pytest.param(5, 50, pods([100, 300, 500, 250, 250]), 3, id="ResourceScale/scale down"),
        pytest.param(
            5, 50, pods([100, 300, 500, 250, 250], ready=[R, R, R, U, U]), 2, id="ResourceScale/scale down: exclude unready pods"
        ),
        pytest.param(
            5, 50, pods([100, None, None, None, None], ready=[R, U, U, U, U], phase=["Running"] + ["Pending"] * 4), 1,
            id="ResourceScale/scale down: exclude unscheduled pods",
        ),
        pytest.param(
            5, 50, pods([100, 300, 500, 250, 250], started=[COOL, COOL, COOL, HOT, HOT]), 2,
            id="ResourceScale/scale down: ignore hot-CPU pods",
        ),
        pytest.param(
            5, 50, pods([100, 300, 500, 250, 250, None, None], ready=[R] * 5 + [U, U], phase=["Running"] * 5 + ["Failed"] * 2), 3,
            id="ResourceScale/scale down: failed pods ignored",
        ),
        pytest.param(3, 100, pods([1010, 1030, 1020], requests=[0.9, 1.0, 1.1]), 3, id="TestReplicaCalcTolerance"),
        pytest.param(4, 100, pods([4000, 9500, 3000, 7000]), 24, id="TestReplicaCalcSuperfluousMetrics"),
        pytest.param(4, 100, pods([400, 95, None, None]), 3, id="TestReplicaCalcMissingMetrics"),
        pytest.param(2, 100, pods([1000, None]), 2, id="TestReplicaCalcMissingMetricsNoChangeEq"),
        pytest.param(2, 100, pods([1900, None]), 2, id="TestReplicaCalcMissingMetricsNoChangeGt"),
        pytest.param(2, 100, pods([600, None]), 2, id="TestReplicaCalcMissingMetricsNoChangeLt"),
        pytest.param(3, 50, pods([100, 450, None], ready=[U, R, R]), 3, id="TestReplicaCalcMissingMetricsUnreadyChange"),
        pytest.param(3, 50, pods([100, 450, None], started=[HOT, COOL, COOL]), 3, id="TestReplicaCalcMissingMetricsHotCpuNoChange"),
        pytest.param(3, 50, pods([100, 2000, None], ready=[U, R, R]), 4, id="TestReplicaCalcMissingMetricsUnreadyScaleUp"),
        pytest.param(
            3, 50, pods([100, 2000, None], ready=[U, R, R], started=[HOT, COOL, COOL]), 4,
            id="TestReplicaCalcMissingMetricsHotCpuScaleUp",
        ),
        pytest.param(4, 50, pods([100, 100, 100, None], ready=[U, R, R, R]), 3, id="TestReplicaCalcMissingMetricsUnreadyScaleDown"),
        # Same shape with a 200 % target: a pod without metrics counts at max(100 %, target) on a scale-down.
        pytest.param(
            4, 200, pods([100, 100, 100, None], ready=[U, R, R, R]), 2, id="TestReplicaCalcMissingMetricsScaleDownTargetOver100"
        ),
    ],
)  # fmt: skip
def test_the_replica_calculator(current: int, target: int, samples: tuple[PodSample, ...], want: int) -> None:
    assert replicas(current, target, samples) == want


def test_unready_memory_pods_with_metrics_count_as_ready() -> None:
    """HPA judges readiness for CPU only: the same unready pods that hold a CPU scale-up count for memory."""
    samples = pods([400, 500, 700], ready=[R, U, U])
    reading = MetricReading("memory", "Resource", pods=samples, target_utilization=0.3)
    assert (
        propose(reading, EngineConfig(min_replicas=1, max_replicas=100), 3, NOW).replicas == 6
    )  # 1600/3000 / 0.3 * 3


def test_a_pod_without_a_start_time_or_ready_condition_is_unready() -> None:
    samples = tuple(replace(p, started=None) if p.name == "pod-0" else p for p in pods([300, 500, 700]))
    assert replicas(3, 30, samples) == 4  # as "unready pod scales less"


def test_no_ready_pod_with_metrics_is_an_error_not_a_size() -> None:
    reading = MetricReading(
        "cpu", "Resource", pods=pods([300, 500], started=[HOT, HOT]), target_utilization=0.3
    )
    p = propose(reading, EngineConfig(min_replicas=1, max_replicas=100), 2, NOW)
    assert p.replicas is None and "ready pods" in (p.error or "")


def test_the_step_limit_counts_from_the_size_at_the_period_start_when_it_went_both_ways() -> None:
    """HPA's calculateScaleUpLimitWithScalingRules: the period's start is the current size less what was
    added in it plus what was removed (4 -> 2 -> 6 within 15 s started at 4), not its lowest size (2)."""
    cfg = EngineConfig(min_replicas=1, max_replicas=40, up=Rules(0, 0, 3, None, 15))
    history = History(events=((NOW - 10, 4, 2), (NOW - 5, 2, 6)))
    reading = MetricReading("queue", "Prometheus", value=100, target_per_replica=10)
    d, _ = decide(cfg, Observation(6, (reading,)), history, NOW)
    assert (d.desired, d.limited_reason) == (7, "ScaleUpLimited")  # 4 + 3, not max(6, 2 + 3)
