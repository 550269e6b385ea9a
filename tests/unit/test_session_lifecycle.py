"""The TrainingSession lifecycle, table-driven: every phase transition the code makes, with the
actions it asks for (the cases are in lifecycle_cases and lifecycle_cases_more); and the transition
map (lifecycle.TRANSITIONS, the table in docs/sessions.md) walked against those cases in both
directions."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from shoal.api.session import TrainingSessionSpec
from shoal.sessions.lifecycle import TRANSITIONS, PodState, spec_hash
from shoal.sessions.steps import LATER_FIELDS, POD_FIELDS
from tests.unit.lifecycle_cases import BASE, RUNNING, STARTING_AND_RUNNING, Case, run
from tests.unit.lifecycle_cases_more import COMMANDS_AND_AFTER

CASES = [*STARTING_AND_RUNNING, *COMMANDS_AND_AFTER]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_transition(case: Case) -> None:
    step = run(case)
    assert step.status["phase"] == case.want, step.status
    assert [type(a) for a in step.actions] == case.actions, step.actions
    if case.reason:
        assert step.status["reason"] == case.reason, step.status
    if case.check:
        assert case.check(step), step
    assert case.want in TRANSITIONS[case.status.get("phase") or "Pending"]


def test_the_transition_map_is_exactly_what_the_cases_show() -> None:
    seen = {(c.status.get("phase") or "Pending", run(c).status["phase"]) for c in CASES}
    declared = {(a, b) for a, successors in TRANSITIONS.items() for b in successors}
    assert declared - seen == set(), "declared transitions no case exercises"
    assert seen - declared == set()


def test_the_documented_table_matches_the_transition_map() -> None:
    readme = (Path(__file__).resolve().parents[2] / "docs" / "sessions.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|$", readme, re.M))
    table = {p: {x.strip(" `") for x in rows[p].split(",")} for p in TRANSITIONS if p in rows}
    assert table == TRANSITIONS


def test_a_pod_that_cannot_be_read_is_not_a_transition() -> None:
    """Junk in the progress annotation is no report at all, never a crash."""
    junk = PodState("s-1", "u", "Running", True, {"shoal.dev/progress": "{not json"})
    step = run(Case("junk", RUNNING, "Running", pod=junk))
    assert step.status["phase"] == "Running" and "metrics" not in step.status


def test_only_what_shapes_the_pod_changes_its_hash() -> None:
    base = spec_hash(TrainingSessionSpec.model_validate(BASE))
    shaping: list[dict[str, Any]] = [
        {"learningRate": 0.01},
        {"resources": {"cpu": "4"}},
        {"env": [{"name": "A"}]},
        {"securityContext": {"runAsNonRoot": False}},
        {"workers": 2},
    ]
    others: list[dict[str, Any]] = [{"priority": 5}, {"runState": "Paused"}, {"checkpointRequest": 2}]
    for edit in shaping:
        assert spec_hash(TrainingSessionSpec.model_validate({**BASE, **edit})) != base, edit
    for edit in [*others, {"stopMode": "Immediate"}]:
        assert spec_hash(TrainingSessionSpec.model_validate({**BASE, **edit})) == base, edit
    # A field added later counts only when set: a pod made before it existed keeps its hash (and runs on).
    before = TrainingSessionSpec.model_validate(BASE).model_dump(
        mode="json", include=POD_FIELDS - set(LATER_FIELDS)
    )
    assert base == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12]
