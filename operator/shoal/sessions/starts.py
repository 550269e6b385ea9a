"""Where a session's start went: the moments each component recorded, in order, and the time between.

The operator records when it first saw the session, when it admitted it (a cold start: capacity found;
a warm start: the claim attempt that got a pod) and when it started it (the claim patch of a warm pod
answered, the create of a cold one); the agent sends with its reports when it saw the session's config,
started (or handed the session to) the trainer, found the trainer's first progress file (its write
time) and sent the first report carrying it; the operator adds when its status showed that report.
Pure: the reconciler logs the record and feeds the stage histogram.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any

# Each stage ends at its own moment; it starts where the previous one ended.
STAGES = (
    "seen",
    "admitted",
    "started",
    "configSeen",
    "trainerStarted",
    "firstProgress",
    "reported",
    "status",
)


def agent_times(progress: Mapping[str, Any] | None) -> dict[str, float]:
    """The agent's moments from a progress report; {} for a report without them (or junk)."""
    times = (progress or {}).get("times")
    if not isinstance(times, Mapping):
        return {}
    out: dict[str, float] = {}
    for key in STAGES[3:7]:
        try:
            out[key] = float(times[key])
        except (KeyError, TypeError, ValueError):
            continue
    return out


def timeline(
    operator: Mapping[str, float], progress: Mapping[str, Any] | None, status: float
) -> dict[str, float] | None:
    """Every moment of one start, or None until the agent's report carries the trainer's first progress
    (and for a start this operator did not see from the beginning)."""
    agent = agent_times(progress)
    if "reported" not in agent or any(k not in operator for k in STAGES[:3]):
        return None
    moments = {**{k: operator[k] for k in STAGES[:3]}, **agent, "status": status}
    return moments if all(k in moments for k in STAGES) else None


def durations(moments: Mapping[str, float]) -> dict[str, float]:
    """Seconds spent reaching each stage from the one before (the first: from `seen`), and the total.
    Moments from two clocks (operator and agent) are on one machine's or NTP-synchronised clocks; a
    negative skew shows as a negative stage rather than being hidden."""
    out: dict[str, float] = {}
    for before, stage in pairwise(STAGES):
        out[stage] = round(moments[stage] - moments[before], 4)
    out["total"] = round(moments["status"] - moments["seen"], 4)
    return out
