"""What every benchmark reports the same way: its provenance and the spread of its samples."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def provenance() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    # What `make bench` writes itself (results, report, the table in docs/benchmarks.md) does not make the tree
    # dirty: otherwise every benchmark after the first in one run would be marked uncommitted.
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", ".", ":!bench/results", ":!docs/benchmarks.md"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "commit": commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else ""),
    }


def quantiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99 by linear interpolation (statistics.quantiles), the maximum apart from p99."""
    if len(values) < 2:
        return {"n": len(values)}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "n": len(values),
        "p50": round(q[49], 4),
        "p90": round(q[89], 4),
        "p99": round(q[98], 4),
        "max": round(max(values), 4),
        "min": round(min(values), 4),
    }


def median_ratio_interval(
    num: list[float], den: list[float], resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """A percentile-bootstrap interval of median(num) / median(den) over paired samples: each resample
    draws whole trials (num[i] with den[i]), so what the two sides shared in a trial stays together."""
    import random

    if len(num) != len(den) or len(num) < 2:
        raise ValueError("paired samples of at least two trials are needed")
    rng = random.Random(seed)
    n = len(num)
    ratios = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        d = statistics.median(den[i] for i in idx)
        if d > 0:
            ratios.append(statistics.median(num[i] for i in idx) / d)
    ratios.sort()
    tail = (1 - level) / 2
    lo = ratios[round(tail * (len(ratios) - 1))]
    hi = ratios[round((1 - tail) * (len(ratios) - 1))]
    return round(lo, 3), round(hi, 3)
