"""A WorkerScaler's manual override (spec.override), pure: the engine sets the person's size at once
and says why, reads the metrics all the same, and hands back to them at the expiry; the record posts
one Event when an override starts and one when it ends."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from shoal import conditions
from shoal.api.scaler import WorkerScalerSpec
from shoal.scaling import record
from shoal.scaling.engine import config, decide
from shoal.scaling.types import (
    Decision,
    EngineConfig,
    History,
    MetricReading,
    Observation,
    OverrideRule,
    Rules,
)

WALL = 1_800_000_000.0  # UTC seconds: 2027-01-15T08:00:00Z
NOW = 5_000.0  # the monotonic clock
CALM = Rules(30, 0, 1, None, 60)  # one pod a minute at most, 30 s cooldown


def queue(value: float) -> MetricReading:
    return MetricReading("queue", "Prometheus", value=value, target_per_replica=10.0)


def evaluate(
    c: EngineConfig,
    current: int,
    value: float,
    history: History | None = None,
    now: float = NOW,
    wall: float = WALL,
) -> tuple[Decision, History]:
    return decide(c, Observation(current, (queue(value),)), history or History(), now, wall)


def test_an_override_sets_its_size_in_one_step_and_says_why() -> None:
    c = EngineConfig(
        min_replicas=1, max_replicas=50, up=CALM, override=OverrideRule(30, "launch day", WALL + 600)
    )
    # The queue asks for 2; the override wins, past the step limit and a cooldown just begun.
    just_scaled = History(events=((NOW - 5, 1, 2),))
    d, h = evaluate(c, 2, 20, just_scaled)
    assert (d.desired, d.reason, d.scaling_active) == (30, "Override", False)
    assert d.message == "manual override to 30 until 2027-01-15T08:10:00Z: launch day"
    assert [p.replicas for p in d.proposals] == [2]  # still read, and shown in status
    assert h.events[-1] == (NOW, 2, 30)  # a scaling like any other: cooldowns after the override see it
    same, h2 = evaluate(c, 30, 20, h, now=NOW + 15, wall=WALL + 15)
    assert (same.desired, same.changed, same.reason) == (30, False, "Override")
    assert h2.events == h.events


def test_at_its_expiry_the_metrics_decide_again_with_the_usual_rules() -> None:
    ov = OverrideRule(30, "launch day", WALL + 600)
    c = EngineConfig(min_replicas=1, max_replicas=50, down=Rules(0, 0, None, 100, 15), override=ov)
    held, h = evaluate(c, 30, 20, wall=WALL + 599.9)
    assert held.reason == "Override"
    after, _ = evaluate(c, 30, 20, h, now=NOW + 600, wall=WALL + 600)
    assert (after.reason, after.desired, after.scaling_active) == ("ScaleDown", 2, True)
    # Without an expiry it holds until removed.
    forever = replace(c, override=OverrideRule(30, "pinned", None))
    assert evaluate(forever, 30, 20, wall=WALL + 10**7)[0].reason == "Override"


def test_the_forecaster_keeps_learning_while_overridden() -> None:
    c = EngineConfig(min_replicas=1, max_replicas=50, predictive=True, override=OverrideRule(10, "x", None))
    h = History()
    for i in range(4):
        _, h = evaluate(c, 10, 40 + i, h, now=NOW + 15 * i, wall=WALL + 15 * i)
    assert h.fit is not None and h.fit.n == 4


def test_the_spec_becomes_the_rule_with_its_expiry_in_utc_seconds() -> None:
    base = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "maxReplicas": 50,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 50}}],
    }
    spec = WorkerScalerSpec.model_validate(
        {**base, "override": {"replicas": 30, "reason": "launch day", "expiresAt": "2027-01-15T08:10:00Z"}}
    )
    assert config(spec).override == OverrideRule(30, "launch day", WALL + 600)
    assert config(WorkerScalerSpec.model_validate(base)).override is None


def status_after(decision: Decision) -> dict[str, object]:
    """What the evaluation wrote: the conditions its decision implies."""
    now = datetime.fromtimestamp(WALL, tz=UTC)
    return {"conditions": conditions.merge(None, record.conditions_of(decision), 1, now)}


def test_an_override_posts_one_event_as_it_starts_and_one_as_it_ends() -> None:
    c = EngineConfig(min_replicas=1, max_replicas=50, override=OverrideRule(30, "launch day", None))
    on, _ = evaluate(c, 2, 20)
    assert record.override_event({}, on, expired=False) == ("Normal", "OverrideStarted", on.message)
    written = status_after(on)
    assert record.override_event(written, on, expired=False) is None  # the next poll, or a restart
    off, _ = evaluate(replace(c, override=None), 30, 20)
    ended = record.override_event(written, off, expired=True)
    assert ended is not None and ended[:2] == ("Normal", "OverrideEnded")
    assert ended[2].startswith("the override expired: the metrics decide again")
    removed = record.override_event(written, off, expired=False)
    assert removed is not None and "the override was removed" in removed[2]
    assert record.override_event(status_after(off), off, expired=False) is None
