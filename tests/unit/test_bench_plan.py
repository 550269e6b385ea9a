"""bench/plan.py and bench/stats.py: sizes per mode, results kept as each benchmark ends, verdicts only
for figures of a committed tree at full size, and B6's bootstrap interval."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from bench import b6, plan
from bench.stats import median_ratio_interval


def test_every_benchmark_has_a_full_and_a_quick_size() -> None:
    for key in plan.ORDER:
        full, quick = plan.sizes(key, quick=False), plan.sizes(key, quick=True)
        assert full.keys() == quick.keys(), key
        # quick never asks more of any knob than full
        assert all(quick[k] <= full[k] for k in full), key


def test_verdict_only_for_a_committed_tree_at_full_size() -> None:
    judged = {"commit": "abc1234", "mode": "full", "goal_met": True}
    assert plan.verdict(judged) == "met"
    assert plan.verdict({**judged, "goal_met": False}) == "not met"
    assert plan.verdict({**judged, "commit": "abc1234-dirty"}) == "met, not judged: uncommitted tree"
    assert plan.verdict({**judged, "mode": "quick"}) == "met, not judged: quick mode"
    assert plan.verdict({"goal_met": True}) == "met, not judged: no commit recorded"
    # a legacy full run without a mode is judged like full
    assert plan.not_judged({"commit": "abc1234"}) is None


def test_each_result_is_stored_as_it_ends_and_keeps_the_others(tmp_path: Path) -> None:
    rendered: list[dict[str, Any]] = []
    readmes: list[dict[str, Any]] = []

    def render(results: dict[str, Any]) -> str:
        rendered.append(results)
        return "report " + ",".join(k for k in plan.ORDER if k in results)

    (tmp_path / "results.json").write_text(
        json.dumps({"time": "old", "reran": ["B1"], "B1": {"commit": "a", "x": 1, "from_run": "old"}})
    )
    save = plan.Store("quick", "2 cores", render, readmes.append, results=tmp_path)
    save("B3", {"commit": "b", "y": 2})
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["B1"] == {"commit": "a", "x": 1, "from_run": "old"}  # an earlier benchmark kept as it was
    assert stored["B3"] == {"commit": "b", "y": 2, "mode": "quick", "machine": "2 cores"}
    assert "reran" not in stored and "time" not in stored and "updated" in stored
    assert (tmp_path / "report.md").read_text() == "report B1,B3"
    save("B9", {"commit": "c"})
    stored = json.loads((tmp_path / "results.json").read_text())
    assert {"B1", "B3", "B9"} <= stored.keys()
    assert len(rendered) == len(readmes) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("old")

    with pytest.raises(TypeError):
        plan.write_atomic(path, 42)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bootstrap_interval_brackets_the_ratio_and_narrows_with_trials() -> None:
    rng = random.Random(1)
    hpa = [rng.uniform(0, 15) + 3 for _ in range(200)]
    shoal = [h * 1.2 for h in hpa]  # the same trials, Shoal 1.2x slower in each
    lo, hi = median_ratio_interval(shoal, hpa)
    assert lo <= 1.2 <= hi
    few = median_ratio_interval(shoal[:10], hpa[:10])
    assert few[1] - few[0] >= hi - lo
    noisy_shoal = [rng.uniform(0, 15) + 3 for _ in range(20)]
    noisy_lo, noisy_hi = median_ratio_interval(noisy_shoal, hpa[:20])
    assert noisy_hi - noisy_lo > 0.2  # 20 independent draws cannot pin the ratio down
    with pytest.raises(ValueError):
        median_ratio_interval([1.0], [1.0])


def test_b6_is_met_only_when_the_whole_interval_is_within_the_goal() -> None:
    hpa = [10.0 + i % 7 for i in range(60)]
    assert b6.judge([h * 0.3 for h in hpa], hpa, seed=0)["goal_met"] is True
    # a median ratio under the goal whose interval reaches past it is no verdict of "met"
    rng = random.Random(3)
    wide = [h * rng.choice([0.2, 0.45, 1.5]) for h in hpa[:8]]
    judged = b6.judge(wide, hpa[:8], seed=0)
    assert judged["ratio_interval_95"][1] > b6.GOAL_RATIO
    assert judged["goal_met"] is False
