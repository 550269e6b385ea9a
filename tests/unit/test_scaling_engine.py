from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.api.scaler import WorkerScalerSpec
from shoal.scaling.calculator import propose, resource_utilization
from shoal.scaling.engine import config, decide
from shoal.scaling.types import Decision, EngineConfig, History, MetricReading, Observation, PodSample, Rules

T = 1_800_000_000.0  # a fixed "now"


def cfg(**kw: object) -> EngineConfig:
    base = EngineConfig(min_replicas=1, max_replicas=20)
    return replace(base, **kw)  # type: ignore[arg-type]


def cpu(n: int, usage: float, request: float = 1.0, target: float = 0.5, **pod: object) -> MetricReading:
    pods = tuple(PodSample(f"p{i}", True, usage, request) for i in range(n))
    return MetricReading("cpu", "Resource", pods=pods, target_utilization=target)


def prom(value: float | None, per_replica: float = 10.0, error: str | None = None) -> MetricReading:
    return MetricReading("queue", "Prometheus", value=value, target_per_replica=per_replica, error=error)


def run(
    c: EngineConfig, current: int, *metrics: MetricReading, history: History | None = None, now: float = T
) -> tuple[Decision, History]:
    return decide(c, Observation(current, tuple(metrics)), history or History(), now)


# --- Target mode (HPA-compatible) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "current", "want", "reason"),
    [
        (0.5, 4, 4, "WithinTolerance"),  # exactly at target
        (0.54, 4, 4, "WithinTolerance"),  # within 10 %
        (0.75, 4, 6, "ScaleUp"),  # ceil(4 * 0.75 / 0.5)
        (0.2, 10, 4, "ScaleDown"),  # ceil(10 * 0.2 / 0.5) - no down window/cooldown set below
    ],
)
def test_target_mode_is_hpa_arithmetic(usage: float, current: int, want: int, reason: str) -> None:
    c = cfg(down=Rules(0, 0, None, None, 15), up=Rules(0, 0, None, None, 15))
    d, _ = run(c, current, cpu(current, usage))
    assert (d.desired, d.reason) == (want, reason)


def test_prometheus_target_per_replica() -> None:
    c = cfg(up=Rules(0, 0, None, None, 15))
    d, _ = run(c, 2, prom(95))  # 95 / 10 per replica
    assert d.desired == 10 and d.reason == "ScaleUp"


def test_several_metrics_take_the_largest_proposal() -> None:
    c = cfg(up=Rules(0, 0, None, None, 15))
    d, _ = run(c, 4, cpu(4, 0.5), prom(70))
    assert d.desired == 7
    assert [p.replicas for p in d.proposals] == [4, 7]


# --- HPA's treatment of missing and unready pods ---------------------------------------------------


def test_missing_pods_count_as_zero_on_scale_up_and_as_target_on_scale_down() -> None:
    up = (PodSample("a", True, 1.0, 1.0), PodSample("b", True, None, 1.0))
    assert resource_utilization(up, +1, 0.5) == (0.5, 2)
    down = (PodSample("a", True, 0.1, 1.0), PodSample("b", True, None, 1.0))
    assert resource_utilization(down, -1, 0.5) == pytest.approx((0.3, 2))


def test_unready_pods_do_not_inflate_a_scale_up() -> None:
    pods = tuple(PodSample(f"r{i}", True, 0.9, 1.0) for i in range(2)) + tuple(
        PodSample(f"u{i}", False, 0.9, 1.0) for i in range(2)
    )
    p = propose(MetricReading("cpu", "Resource", pods=pods, target_utilization=0.5), cfg(), 4)
    # Ready pods alone: 0.9/0.5 * 2 = 4 (+ unready at 0 %): 0.45/0.5 -> within tolerance, hold.
    assert p.replicas == 4


def test_pods_without_requests_are_an_error() -> None:
    pods = (PodSample("a", True, 0.5, None),)
    p = propose(MetricReading("cpu", "Resource", pods=pods, target_utilization=0.5), cfg(), 1)
    assert p.replicas is None and "request" in (p.error or "")


# --- Thresholds mode and emergency ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "want", "reason"),
    [(0.85, 7, "ScaleUpThreshold"), (0.5, 4, "WithinTolerance"), (0.1, 1, "ScaleDownThreshold")],
)
def test_threshold_bands(usage: float, want: int, reason: str) -> None:
    c = cfg(mode="Thresholds", up=Rules(0, 0, None, None, 15), down=Rules(0, 0, None, None, 15))
    d, _ = run(c, 4, cpu(4, usage, target=0.5))
    assert (d.desired, d.reason) == (want, reason)


def test_emergency_scales_in_one_step_past_cooldown_and_step_limits() -> None:
    c = cfg(up=Rules(600, 300, 1, 10, 60))
    hist = History(events=((T - 5, 2, 4),))  # scaled up 5 s ago: cooldown active
    d, _ = run(c, 4, cpu(4, 0.99), history=hist)
    assert d.reason == "EmergencyScaleUp" and d.desired == 8  # ceil(4 * 0.99 / 0.5)
    d2, _ = run(c, 4, cpu(4, 0.8), history=hist)
    assert d2.reason == "CooldownActive" and d2.desired == 4


# --- behaviour ----------------------------------------------------------------------------------------


def test_scale_up_cooldown_then_allowed() -> None:
    c = cfg(up=Rules(30, 0, None, None, 15))
    hist = History(events=((T - 10, 2, 3),))
    assert run(c, 3, cpu(3, 0.8), history=hist)[0].reason == "CooldownActive"
    assert run(c, 3, cpu(3, 0.8), history=hist, now=T + 25)[0].desired == 5


def test_a_scale_up_cut_short_by_the_step_limit_is_finished_without_waiting_for_the_cooldown() -> None:
    c = cfg(max_replicas=40, up=Rules(30, 0, 4, 100, 15))
    d1, h1 = run(c, 6, prom(220))  # wants 22, the step limit allows 6 + max(4, 100 %) = 12
    assert (d1.desired, d1.limited_reason) == (12, "ScaleUpLimited") and h1.capped_up == 22
    d2, h2 = run(c, 12, prom(220), history=h1, now=T + 15)  # one period later, inside the 30 s cooldown
    assert (d2.desired, d2.reason) == (22, "ScaleUp") and h2.capped_up == 0
    # A new rise after an uncapped step is a new reaction: the cooldown applies again.
    d3, _ = run(c, 22, prom(300), history=h2, now=T + 30)
    assert (d3.desired, d3.reason) == (22, "CooldownActive")
    assert run(c, 22, prom(300), history=h2, now=T + 46)[0].desired == 30


def test_scale_down_cooldown_counts_from_any_scaling() -> None:
    c = cfg(down=Rules(180, 0, None, None, 15))
    hist = History(events=((T - 100, 2, 10),))
    d, _ = run(c, 10, cpu(10, 0.1), history=hist)
    assert d.reason == "CooldownActive" and d.desired == 10
    assert run(c, 10, cpu(10, 0.1), history=hist, now=T + 90)[0].desired == 2


def test_scale_down_stabilization_uses_the_highest_recent_recommendation() -> None:
    c = cfg(down=Rules(0, 60, None, None, 15))
    hist = History(recommendations=((T - 30, 11), (T - 90, 4)))
    d, _ = run(c, 10, cpu(10, 0.1), history=hist)
    assert d.desired == 10 and d.reason == "StabilizationWindow"  # 11 was recommended 30 s ago
    hist = History(recommendations=((T - 30, 9), (T - 90, 12)))  # 12 is outside the window
    assert run(c, 10, cpu(10, 0.1), history=hist)[0].desired == 9


def test_stabilize_recommendation_with_behaviors_leaves_out_a_recommendation_as_old_as_the_window() -> None:
    # HPA's stabilizeRecommendationWithBehaviors counts a recommendation only if its timestamp is
    # After(now - window): one made exactly a window ago no longer holds the size up.
    c = cfg(down=Rules(0, 300, None, None, 15))
    at_edge = History(recommendations=((T - 300, 10),))
    d, _ = run(c, 10, cpu(10, 0.1), history=at_edge)
    assert d.desired == 2 and d.reason == "ScaleDown"
    inside = History(recommendations=((T - 299, 10),))
    assert run(c, 10, cpu(10, 0.1), history=inside)[0].reason == "StabilizationWindow"
    # And with no window at all, the recommendation of this evaluation decides.
    assert run(cfg(down=Rules(0, 0, None, None, 15)), 10, cpu(10, 0.1))[0].desired == 2


def test_step_limits_pods_and_percent() -> None:
    c = cfg(max_replicas=100, up=Rules(0, 0, 4, 100, 15))
    d, _ = run(c, 2, cpu(2, 0.9, target=0.1))  # wants 18, below the emergency band
    assert d.desired == 6 and d.limited and d.limited_reason == "ScaleUpLimited"  # +max(4, 100 % of 2)
    c = cfg(max_replicas=100, down=Rules(0, 0, 2, None, 15))
    d, _ = run(c, 20, cpu(20, 0.01))
    assert d.desired == 18 and d.limited_reason == "ScaleDownLimited"


def test_clamped_to_max_is_reported() -> None:
    c = cfg(max_replicas=5, up=Rules(0, 0, None, None, 15))
    d, _ = run(c, 5, cpu(5, 1.5, target=1.0))
    assert d.desired == 5 and d.limited and d.limited_reason == "AtMax" and d.reason == "AtMax"


def test_scheduled_floor_raises_the_size_in_its_window_only() -> None:
    # 2027-01-11 is a Monday; 09:00 UTC + 8 h window.
    monday_11 = 1_799_665_200.0  # 2027-01-11T11:00:00Z
    c = cfg(schedule=(("0 9 * * 1-5", 8 * 3600.0, 6),), up=Rules(0, 0, None, None, 15))
    d, _ = run(c, 2, cpu(2, 0.5), now=monday_11)
    assert d.desired == 6 and d.reason == "ScheduledFloor"
    d, _ = run(c, 2, cpu(2, 0.5), now=monday_11 + 9 * 3600)
    assert d.desired == 2


def test_windows_follow_the_monotonic_clock_and_cron_the_wall_clock() -> None:
    """The operator passes a monotonic `now` and the wall time apart: a wall clock stepped an hour
    ahead (NTP, a VM resumed) neither ends a cooldown early nor moves a window; cron reads the wall."""
    mono = 5_000.0  # seconds since boot, nothing like a date
    monday_11 = 1_799_665_200.0  # 2027-01-11T11:00:00Z
    c = cfg(up=Rules(30, 0, None, None, 15))
    hist = History(events=((mono - 10, 2, 3),))
    d, _ = decide(c, Observation(3, (cpu(3, 0.8),)), hist, mono, wall=monday_11 + 3600)
    assert d.reason == "CooldownActive"  # 10 s on the monotonic clock, whatever the wall says
    d, _ = decide(c, Observation(3, (cpu(3, 0.8),)), hist, mono + 25, wall=monday_11 - 86_400)
    assert d.desired == 5  # 35 s on: the cooldown is over, though the wall went back a day
    c = cfg(schedule=(("0 9 * * 1-5", 8 * 3600.0, 6),), up=Rules(0, 0, None, None, 15))
    assert decide(c, Observation(2, (cpu(2, 0.5),)), History(), mono, wall=monday_11)[0].desired == 6
    assert decide(c, Observation(2, (cpu(2, 0.5),)), History(), mono, wall=monday_11 - 86_400)[0].desired == 2


@pytest.mark.parametrize(
    ("current", "value", "activation", "minimum", "want"),
    [
        (0, 3, 5, 0, 0),  # below the activation value: stays at zero
        (0, 8, 5, 0, 1),  # above it: 8 / 10 per replica still means one
        (0, 30, 5, 0, 3),
        (3, 2, 5, 0, 0),  # back at or below it: to zero
        (3, 2, 5, 1, 1),  # ...unless minReplicas says otherwise
        (0, 0.5, 0, 0, 1),  # no activation value: anything above 0 activates
        (0, 0, 0, 0, 0),
    ],
)
def test_activation_from_zero_on_a_prometheus_metric(
    current: int, value: float, activation: float, minimum: int, want: int
) -> None:
    c = cfg(min_replicas=minimum, up=Rules(0, 0, None, None, 15), down=Rules(0, 0, None, None, 15))
    reading = replace(prom(value), activation=activation)
    assert run(c, current, reading)[0].desired == want


# --- missing data ----------------------------------------------------------------------------------------


def test_missing_metrics_hold_and_fallback_after_threshold() -> None:
    c = cfg(fallback_policy="Replicas", fallback_replicas=8, failure_threshold=3)
    hist = History()
    for i in range(2):
        d, hist = run(c, 3, prom(None, error="connection refused"), history=hist, now=T + i)
        assert d.desired == 3 and d.reason == "MetricsUnavailable" and not d.scaling_active
    d, hist = run(c, 3, prom(None, error="connection refused"), history=hist, now=T + 2)
    assert d.desired == 8 and d.reason == "FallbackReplicas"
    d, hist = run(c, 8, prom(50), history=hist, now=T + 3)
    assert hist.failures == 0 and d.scaling_active


def test_no_scale_down_while_one_metric_is_missing() -> None:
    c = cfg(down=Rules(0, 0, None, None, 15))
    d, _ = run(c, 10, cpu(10, 0.05), prom(None, error="timeout"))
    assert d.desired == 10 and d.reason == "MetricsUnavailable"


def test_config_from_spec_defaults() -> None:
    spec = WorkerScalerSpec.model_validate(
        {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"},
            "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 60}}],
        }
    )
    c = config(spec)
    assert (c.up.cooldown, c.down.cooldown, c.scale_up, c.scale_down, c.emergency) == (
        0,  # HPA's: no cooldowns (B2: DESIGN's 30 s / 180 s only delayed rises and kept pods longer)
        0,
        0.8,
        0.3,
        0.95,
    )
    assert (c.up.stabilization, c.down.stabilization) == (0, 300)  # HPA's scale-down window


# --- properties -----------------------------------------------------------------------------------------

bounds = st.tuples(st.integers(0, 10), st.integers(1, 40)).filter(lambda b: b[0] <= b[1])


@settings(max_examples=300, deadline=None)
@given(
    b=bounds,
    current=st.integers(0, 60),
    usage=st.floats(0, 5),
    n=st.integers(1, 30),
    mode=st.sampled_from(["Target", "Thresholds"]),
)
def test_result_always_within_min_and_max(
    b: tuple[int, int], current: int, usage: float, n: int, mode: str
) -> None:
    c = cfg(min_replicas=b[0], max_replicas=b[1], mode=mode)
    d, _ = run(c, current, cpu(n, usage))
    assert b[0] <= d.desired <= b[1]


@settings(max_examples=300, deadline=None)
@given(
    b=bounds,
    current=st.integers(0, 60),
    failures=st.integers(0, 10),
    policy=st.sampled_from(["Hold", "Replicas"]),
    fb=st.integers(0, 40),
)
def test_never_below_current_when_data_is_missing(
    b: tuple[int, int], current: int, failures: int, policy: str, fb: int
) -> None:
    c = cfg(min_replicas=b[0], max_replicas=b[1], fallback_policy=policy, fallback_replicas=fb)
    d, _ = run(c, current, prom(None, error="down"), history=History(failures=failures))
    assert d.desired >= min(current, b[1])


@settings(max_examples=300, deadline=None)
@given(
    current=st.integers(1, 30),
    lo=st.floats(0, 3),
    hi=st.floats(0, 3),
    mode=st.sampled_from(["Target", "Thresholds"]),
)
def test_monotone_in_load(current: int, lo: float, hi: float, mode: str) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    c = cfg(max_replicas=200, mode=mode, up=Rules(0, 0, None, None, 15), down=Rules(0, 0, None, None, 15))
    d_lo, _ = run(c, current, cpu(current, lo))
    d_hi, _ = run(c, current, cpu(current, hi))
    assert d_lo.desired <= d_hi.desired


def test_history_is_threaded_through_evaluations_and_the_one_passed_in_is_kept() -> None:
    """The engine's memory between polls: each decide() returns the old history plus this poll."""
    import copy

    c = cfg(up=Rules(0, 0, None, None, 15), predictive=True)
    first, h1 = run(c, 2, cpu(2, 1.0), now=T)
    assert h1.fit is not None and (first.desired, h1.fit.n, len(h1.events)) == (4, 1, 1)
    kept = copy.deepcopy(h1)
    second, h2 = run(c, 4, cpu(4, 1.0), history=h1, now=T + 15)
    assert h1 == kept and kept.fit is not None and h1.fit.series == kept.fit.series  # unchanged
    assert second.desired == 8
    assert h2.fit is not None and h2.fit.n == 2 and math.isclose(h2.fit.series[-1], 8.0)
    assert h2.fit.series[:1] == h1.fit.series
    assert h2.events == (*h1.events, (T + 15, 4, 8))
    assert [t for t, _ in h2.recommendations] == [T, T + 15]
