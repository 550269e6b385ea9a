"""Affinity's ranking: how well a pod's past jobs (pool/jobs.py) suit the job that claims it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from shoal.pool.jobs import Job


def pairs(signature: str | None) -> frozenset[tuple[str, str]]:
    """The key/value pairs of a signature; one of an earlier version ("game/algorithm") too."""
    if not signature:
        return frozenset()
    try:
        data = json.loads(signature)
    except ValueError:
        game, _, algorithm = signature.partition("/")
        return frozenset({("game", game), ("algorithm", algorithm)}) if algorithm else frozenset()
    if not isinstance(data, dict):
        return frozenset()
    return frozenset((str(k), str(v)) for k, v in data.items())


def similarity(a: frozenset[tuple[str, str]], b: frozenset[tuple[str, str]]) -> float:
    """Jaccard similarity of two signatures' pairs: 1 for the same job, 0 for nothing shared."""
    union = a | b
    return len(a & b) / len(union) if union else 0.0


@dataclass(frozen=True)
class Score:
    """How well a pod's past suits a job: similarity first, then success, then speed (lower is better
    for `seconds`; a pod with no data for a tie-breaker sits in the middle of those with data)."""

    similarity: float
    success: float
    seconds: float

    def key(self) -> tuple[float, float, float]:
        return (-self.similarity, -self.success, self.seconds)


def score(history: Sequence[Job], last_signature: str | None, wanted: str | None) -> Score:
    want = pairs(wanted)
    jobs = list(history) or ([Job(last_signature, None, 0.0)] if last_signature else [])
    if not want or not jobs:
        return Score(0.0, 0.5, float("inf"))
    sims = [similarity(want, pairs(j.signature)) for j in jobs]
    best = max(sims)
    if best == 0:
        return Score(0.0, 0.5, float("inf"))
    alike = [j for j, s in zip(jobs, sims, strict=True) if s == best]
    told = [j.ok for j in alike if j.ok is not None]
    timed = [j.seconds for j in alike if j.seconds > 0]
    return Score(
        round(best, 6),
        sum(1.0 for ok in told if ok) / len(told) if told else 0.5,
        sum(timed) / len(timed) if timed else float("inf"),
    )
