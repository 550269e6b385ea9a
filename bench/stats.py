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
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT)
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
