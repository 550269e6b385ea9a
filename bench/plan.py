"""What `make bench` runs at which size, and how each benchmark's figures are kept as soon as it ends.

Full mode runs the sizes the goals are judged at; quick mode runs each benchmark in a few minutes on
this 2-core machine (the test bed built) to see where a change moves a figure, and is never a verdict.
Every benchmark's result is merged into results.json (and report.md and the table in docs/benchmarks.md rewritten)
the moment it finishes, each file replaced atomically, so a run cut off keeps what it measured.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9")

# Keyword arguments of each benchmark's entry point, per mode. Quick sizes: each benchmark in about
# 10 minutes or less, the whole set in about 45.
SIZES: dict[str, dict[str, dict[str, int]]] = {
    "B1": {"full": {"objects": 100, "per": 5, "reps": 5}, "quick": {"objects": 100, "per": 5, "reps": 1}},
    "B2": {"full": {}, "quick": {}},
    "B3": {
        "full": {"reps": 2, "steady": 50, "burst": 50, "pool": 50},
        "quick": {"reps": 2, "steady": 15, "burst": 15, "pool": 15},
    },
    "B4": {
        "full": {"namespaces": 10, "pools_per_ns": 100, "pods": 5, "scalers_per_ns": 50, "window": 60},
        "quick": {"namespaces": 2, "pools_per_ns": 50, "pods": 5, "scalers_per_ns": 25, "window": 30},
    },
    "B5": {"full": {"reps": 3}, "quick": {"reps": 1}},
    "B6": {"full": {"trials": 60}, "quick": {"trials": 8}},
    "B7": {"full": {"commands": 100}, "quick": {"commands": 50}},
    "B8": {"full": {"timesteps": 50_000, "repetitions": 3}, "quick": {"timesteps": 50_000, "repetitions": 1}},
    "B9": {
        "full": {"reps": 3, "steady": 100, "burst": 100, "pool": 100},
        "quick": {"reps": 1, "steady": 50, "burst": 50, "pool": 50},
    },
}


def sizes(key: str, quick: bool) -> dict[str, int]:
    return dict(SIZES[key]["quick" if quick else "full"])


def not_judged(r: dict[str, Any]) -> str | None:
    """Why a figure is no verdict, or None: a tree with uncommitted changes, quick mode, or missing
    provenance all make it indicative only."""
    commit = r.get("commit")
    if not commit:
        return "no commit recorded"
    if str(commit).endswith("-dirty"):
        return "uncommitted tree"
    if r.get("mode") == "quick":
        return "quick mode"
    return None


def verdict(r: dict[str, Any], met: bool | None = None) -> str:
    """The goal's verdict as the report and docs/benchmarks.md show it: met / not met only for a judged figure."""
    why = not_judged(r)
    ok = r.get("goal_met") if met is None else met
    said = "met" if ok else "not met"
    return f"{said}, not judged: {why}" if why else said


def load(results: Path = RESULTS) -> dict[str, Any]:
    path = results / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` in one step: a reader (or a run cut off mid-write) sees the old file or the new."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def merge(
    stored: dict[str, Any], key: str, result: dict[str, Any], mode: str, machine: str
) -> dict[str, Any]:
    """The stored results with one benchmark's new figures in place of its old ones."""
    out = {k: v for k, v in stored.items() if k not in ("reran", "time", "from_run")}
    out[key] = {**{k: v for k, v in result.items() if k != "from_run"}, "mode": mode, "machine": machine}
    out["updated"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return out


class Store:
    """Keeps each benchmark's figures the moment it ends: results.json, report.md, the table in docs/benchmarks.md."""

    def __init__(
        self,
        mode: str,
        machine: str,
        render: Callable[[dict[str, Any]], str],
        rewrite_readme: Callable[[dict[str, Any]], None],
        results: Path = RESULTS,
    ) -> None:
        self.mode, self.machine, self.results = mode, machine, results
        self.render, self.rewrite_readme = render, rewrite_readme
        results.mkdir(parents=True, exist_ok=True)

    def __call__(self, key: str, result: dict[str, Any]) -> None:
        merged = merge(load(self.results), key, result, self.mode, self.machine)
        write_atomic(self.results / "results.json", json.dumps(merged, indent=2) + "\n")
        write_atomic(self.results / "report.md", self.render(merged))
        self.rewrite_readme(merged)
