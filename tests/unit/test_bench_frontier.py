"""B2's reactive frontier: the replay's accounting and what the frontier may call reachable."""

from __future__ import annotations

import pytest

from bench import frontier


def trace(*parts: tuple[float, float]) -> list[tuple[float, float]]:
    """(seconds, load) parts as 5 s bins."""
    loads = [load for seconds, load in parts for _ in range(int(seconds // 5))]
    return [(float(i * 5), load) for i, load in enumerate(loads)]


def test_a_step_costs_the_start_up_time_at_the_size_held_before_it() -> None:
    step = trace((300, 1.0), (600, 10.0))
    o = frontier.reactive(step, 0.5, 0.0, 5.0, 0.0, 60.0, 0.7)
    # 2 warm pods (ceil(1 / 0.7)) until the new ones serve, 60 s after the step is seen.
    assert o.under == pytest.approx((10 - 2) * 60)
    assert o.cost == pytest.approx(2 * 300 + 20 * 600)
    assert o.events == 1
    # More headroom helps only by what it holds before the step: 3 pods (ceil(1 / 0.4)).
    wide = frontier.reactive(step, 0.4, 0.0, 5.0, 0.0, 60.0, 0.7)
    assert wide.under == pytest.approx((10 - 3) * 60)
    assert wide.events == 2


def test_the_scale_down_window_keeps_the_largest_size_for_its_length() -> None:
    drop = trace((300, 10.0), (600, 1.0))
    o = frontier.reactive(drop, 0.5, 300.0, 5.0, 0.0, 60.0, 0.7)
    # 20 pods until 300 s after the last poll that asked for 20 (at 295 s), then 2.
    assert o.cost == pytest.approx(20 * 595 + 2 * 305)
    assert (o.under, o.events) == (0.0, 2)
    held = frontier.reactive(drop, 0.5, 0.0, 5.0, 0.0, 60.0, 0.7)
    assert held.cost < o.cost


def test_tolerance_leaves_the_size_alone_within_the_band() -> None:
    flat = trace((300, 7.0), (300, 7.5))
    assert frontier.reactive(flat, 0.7, 0.0, 5.0, 0.1, 60.0, 0.7).events == 0
    assert frontier.reactive(flat, 0.7, 0.0, 5.0, 0.0, 60.0, 0.7).events == 1


def test_polls_and_start_up_must_be_whole_bins() -> None:
    with pytest.raises(ValueError, match="whole trace bins"):
        frontier.reactive(trace((60, 1.0)), 0.7, 0.0, 7.0, 0.0, 60.0, 0.7)


def test_a_goal_below_what_start_up_forces_is_beyond_the_frontier() -> None:
    step = trace((300, 1.0), (600, 10.0))
    # The most headroom (40 %: 3 warm pods) is still short 7 replicas for the start-up's 60 s: 420
    # replica-seconds, so half of 840 is reachable and half of 800 is not.
    reach = frontier.frontier(step, 840.0, 1e9, 100, 60.0, 0.7)
    assert reach["within_cost_and_events"]["under_replica_s"] == 420  # type: ignore[index]
    assert frontier.reachable(reach, 840.0, 0.5)
    assert not frontier.reachable(frontier.frontier(step, 800.0, 1e9, 100, 60.0, 0.7), 800.0, 0.5)


def test_members_over_the_cost_or_events_budget_do_not_count() -> None:
    step = trace((300, 1.0), (600, 10.0))
    poor = frontier.frontier(step, 960.0, 100.0, 100, 60.0, 0.7)
    assert poor["within_cost"] is None and not frontier.reachable(poor, 960.0, 0.5)
    still = frontier.frontier(step, 960.0, 1e9, 0, 60.0, 0.7)
    assert still["within_cost_and_events"] is None and not frontier.reachable(still, 960.0, 0.5)
