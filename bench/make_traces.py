"""Writes bench/traces/*.csv: demand traces (time in seconds, load in replica-capacities), seeded.

Run once (`python -m bench.make_traces`); the CSVs are committed so every run replays the same demand.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "traces"
DURATION = 4 * 3600
STEP = 5


def traces() -> dict[str, list[float]]:
    rng = np.random.default_rng(20261122)
    t = np.arange(0, DURATION, STEP, dtype=float)
    out: dict[str, np.ndarray] = {}
    # Two compressed "days" in 4 hours: night 2, peak 20.
    out["diurnal"] = 11 - 9 * np.cos(2 * math.pi * t / (2 * 3600)) + rng.normal(0, 0.4, t.size)
    spike = np.full(t.size, 4.0)
    for start in (3000, 7800, 12000):
        spike[(t >= start) & (t < start + 600)] = 22.0
    out["spike"] = spike + rng.normal(0, 0.3, t.size)
    out["ramp"] = np.clip(2 + 18 * (t - 1800) / (2 * 3600), 2, 20) + rng.normal(0, 0.3, t.size)
    out["noisy"] = 10 + 3 * np.sin(2 * math.pi * t / 1800) + rng.normal(0, 2.5, t.size)
    step = np.where(t < 3600, 3.0, np.where(t < 7200, 15.0, np.where(t < 10800, 6.0, 18.0)))
    out["step"] = step + rng.normal(0, 0.3, t.size)
    return {k: [round(max(0.0, float(x)), 3) for x in v] for k, v in out.items()}


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    for name, load in traces().items():
        with open(HERE / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time_s", "load"])
            for i, x in enumerate(load):
                w.writerow([i * STEP, x])


if __name__ == "__main__":
    main()
