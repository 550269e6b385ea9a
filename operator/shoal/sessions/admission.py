"""Whether a waiting session may start now, and whom it may pause to fit. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

Resources = Mapping[str, Decimal]


@dataclass(frozen=True)
class SessionView:
    name: str
    priority: int
    created: float
    requests: Resources
    preempting: bool = False  # already asked to pause for someone else: its capacity is on its way back


@dataclass(frozen=True)
class Verdict:
    admit: bool
    preempt: tuple[str, ...] = ()
    reason: str = ""
    message: str = ""


def add(a: Resources, b: Resources, sign: int = 1) -> dict[str, Decimal]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, Decimal(0)) + sign * v
    return out


def fits(need: Resources, free: Resources) -> bool:
    return all(v <= free.get(k, Decimal(0)) for k, v in need.items() if v > 0)


def shortfall(need: Resources, free: Resources) -> str:
    return ", ".join(
        f"{k} needs {v.normalize()} (free {free.get(k, Decimal(0)).normalize()})"
        for k, v in sorted(need.items())
        if v > free.get(k, Decimal(0))
    )


def queue_order(sessions: Iterable[SessionView]) -> list[SessionView]:
    """Higher priority first, then older first."""
    return sorted(sessions, key=lambda s: (-s.priority, s.created, s.name))


def decide_admission(
    candidate: SessionView, waiting: Iterable[SessionView], running: Iterable[SessionView], free: Resources
) -> Verdict:
    """Admit by priority then age; a session that cannot fit may pause lower-priority running ones.

    `free` is the capacity left with every running session counted. Waiting sessions ranked above
    the candidate take their share first (a smaller one behind them may still start: backfill).
    """
    queue = queue_order([*[w for w in waiting if w.name != candidate.name], candidate])
    left = dict(free)
    for s in queue:
        if s.name == candidate.name:
            break
        if fits(s.requests, left):
            left = add(left, s.requests, -1)
    if fits(candidate.requests, left):
        return Verdict(True, reason="Admitted")

    running = list(running)
    # Sessions already pausing for someone give their capacity back soon: count it as free.
    reclaimable = dict(left)
    for r in running:
        if r.preempting:
            reclaimable = add(reclaimable, r.requests)
    if fits(candidate.requests, reclaimable):
        return Verdict(
            False, reason="WaitingForPreemption", message="lower-priority sessions are checkpointing"
        )
    victims = sorted(
        (r for r in running if not r.preempting and r.priority < candidate.priority),
        key=lambda r: (r.priority, -r.created, r.name),  # lowest priority, newest first
    )
    chosen: list[str] = []
    for v in victims:
        chosen.append(v.name)
        reclaimable = add(reclaimable, v.requests)
        if fits(candidate.requests, reclaimable):
            return Verdict(
                False,
                preempt=tuple(chosen),
                reason="Preempting",
                message=f"pausing lower-priority session(s) {', '.join(chosen)}",
            )
    return Verdict(False, reason="InsufficientCapacity", message=shortfall(candidate.requests, left))


ONE_POD = {"pods": Decimal(1)}


def decide_warm(
    candidate: SessionView,
    waiting: Iterable[SessionView],
    holding: Iterable[SessionView],
    idle: int,
    can_grow: bool,
) -> Verdict:
    """A warm session's turn at its pool, whose pods are the capacity, one a session: the same rules
    as decide_admission over them. Waiting sessions go by priority, then age. While the pool may
    still grow, one without an idle pod for it claims anyway: the claim waits, and the pool grows
    for it. At maxReplicas, it waits its turn (reason NoIdlePod), or pauses lower-priority sessions
    holding pods of the pool. ResourceQuotas do not come into it: the pool's pods count against
    them when they are created, whoever claims them."""
    one = [replace(s, requests=ONE_POD) for s in (candidate, *waiting)]
    held = [replace(s, requests=ONE_POD) for s in holding]
    verdict = decide_admission(one[0], one[1:], held, {"pods": Decimal(idle)})
    if verdict.admit or can_grow:
        return Verdict(True, reason="Admitted")
    if verdict.reason == "InsufficientCapacity":
        ahead = sum(1 for w in queue_order(one) if w.name != candidate.name and _before(w, one[0]))
        return Verdict(
            False,
            reason="NoIdlePod",
            message=f"the pool is at maxReplicas with {idle} idle pod(s) for {ahead} session(s) ahead; "
            "no lower-priority session holds one",
        )
    return verdict


def _before(a: SessionView, b: SessionView) -> bool:
    return (-a.priority, a.created, a.name) < (-b.priority, b.created, b.name)


def backoff_seconds(restarts: int, initial: float, maximum: float) -> float:
    """Delay before restart number `restarts` (1-based): initial, 2x, 4x, ... capped at maximum."""
    return float(min(maximum, initial * 2 ** max(0, restarts - 1)))
