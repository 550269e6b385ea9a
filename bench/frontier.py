"""B2's reactive frontier: how little under-provisioning any simple reactive scaler gets on a trace
within a cost budget, so that each row's goal can be judged reachable or not from the data.

The family is generous on purpose: a scaler that sees the true load (even on the cpu rows, where a real
scaler sees only utilization that saturates at 100 %), sizes for it at once with no tolerance and no
step limit, and holds the largest size of its scale-down window. Its knobs are the target utilization
(the headroom it pays for), the scale-down window (how long it keeps a burst's pods) and the poll
interval. If no member reaches a row's goal at HPA's cost, the goal asks for foresight the trace does
not offer to a scaler without it, and the report says so instead of calling the row a miss of tuning.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

TARGETS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
WINDOWS = (0.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
POLLS = (5.0, 15.0)
TOLERANCES = (0.0, 0.1)


@dataclass(frozen=True)
class Outcome:
    target: float
    window: float
    poll: float
    tolerance: float
    under: float
    cost: float
    events: int


def reactive(
    trace: list[tuple[float, float]],
    target: float,
    window: float,
    poll: float,
    tolerance: float,
    startup: float,
    start_target: float,
    min_r: int = 1,
    max_r: int = 60,
) -> Outcome:
    """One member of the family in the world of bench/scaling_sim (the same warm start at `start_target`,
    the same accounting). It steps one trace bin at a time: the load is constant within a bin, and when
    polls and start-up are whole bins so is readiness, which makes this exact and 5x cheaper than
    stepping seconds."""
    dt = trace[1][0] - trace[0][0]
    if poll % dt or startup % dt:
        raise ValueError("poll and startup must be whole trace bins")
    every, late = round(poll / dt), round(startup / dt)
    # Creation times in bins, kept sorted (new pods are the latest), so readiness is one bisection.
    pods = [-late] * max(min_r, math.ceil(trace[0][1] / start_target))
    recs: deque[tuple[int, int]] = deque()  # (bin, size), sizes decreasing: the window's max is first
    span = window / dt
    under = cost = 0.0
    events = 0
    for i, (_, load) in enumerate(trace):
        if i % every == 0:
            cur = len(pods)
            usage = load / (cur * target) if cur else math.inf
            raw = cur if abs(usage - 1) <= tolerance else math.ceil(round(load / target, 9))
            raw = max(min_r, min(max_r, raw))
            while recs and recs[-1][1] <= raw:
                recs.pop()
            recs.append((i, raw))
            while i - recs[0][0] >= span and len(recs) > 1:
                recs.popleft()
            want = recs[0][1] if i - recs[0][0] < span else raw
            if want > cur:
                pods += [i] * (want - cur)
                events += 1
            elif want < cur:
                del pods[want:]  # the newest go first
                events += 1
        ready = bisect.bisect_right(pods, i - late)
        under += max(0.0, load - ready) * dt
        cost += len(pods) * dt
    return Outcome(target, window, poll, tolerance, under, cost, events)


def frontier(
    trace: list[tuple[float, float]],
    hpa_under: float,
    hpa_cost: float,
    hpa_events: int,
    startup: float,
    start_target: float,
) -> dict[str, object]:
    """The family's best under-provisioning relative to HPA's, within HPA's cost (and, separately, within
    its cost and its number of scale events, as the goal asks), with the member that achieves it."""
    outcomes = [
        reactive(trace, tg, w, p, tol, startup, start_target)
        for tg in TARGETS
        for w in WINDOWS
        for p in POLLS
        for tol in TOLERANCES
    ]

    def best(ok: list[Outcome]) -> dict[str, object] | None:
        if not ok:
            return None
        o = min(ok, key=lambda x: (x.under, x.cost))
        return {
            "under_ratio": round(o.under / hpa_under, 3) if hpa_under else None,
            "under_replica_s": round(o.under),
            "cost_ratio": round(o.cost / hpa_cost, 3),
            "scale_events": o.events,
            "target": o.target,
            "window_s": o.window,
            "poll_s": o.poll,
            "tolerance": o.tolerance,
        }

    in_cost = [o for o in outcomes if o.cost <= hpa_cost]
    return {
        "members": len(outcomes),
        "within_cost": best(in_cost),
        "within_cost_and_events": best([o for o in in_cost if o.events <= hpa_events]),
    }


def reachable(front: dict[str, object], hpa_under: float, under_ratio_max: float) -> bool:
    """Whether any member meets the under-provisioning goal at HPA's cost and events."""
    b = front.get("within_cost_and_events")
    if not isinstance(b, dict):
        return False
    if not hpa_under:
        return bool(b["under_replica_s"] == 0)
    return float(b["under_ratio"]) <= under_ratio_max
