"""sessions/starts.py: a start's moments from the operator and the agent's report, and its stages."""

from __future__ import annotations

from shoal.sessions import starts

OPERATOR = {"seen": 100.0, "admitted": 100.01, "started": 100.05}
AGENT = {"configSeen": 100.25, "trainerStarted": 100.26, "firstProgress": 100.5, "reported": 100.52}


def test_no_record_until_the_report_carries_the_trainers_first_progress() -> None:
    acked_only = {"ack": 0, "times": {"configSeen": 100.25, "trainerStarted": 100.26}}
    assert starts.timeline(OPERATOR, acked_only, 100.6) is None
    assert starts.timeline(OPERATOR, {"ack": 0}, 100.6) is None  # an agent that sends no times
    assert starts.timeline(OPERATOR, None, 100.6) is None
    # a start this process did not see begin (e.g. after a restart) has no record either
    assert starts.timeline({"seen": 100.0}, {"times": AGENT}, 100.6) is None
    # nor one whose admission was not recorded
    assert starts.timeline({"seen": 100.0, "started": 100.05}, {"times": AGENT}, 100.6) is None


def test_each_stage_runs_from_the_one_before_and_the_total_from_seen() -> None:
    moments = starts.timeline(OPERATOR, {"ack": 0, "times": AGENT}, 100.6)
    assert moments is not None
    assert list(moments) == list(starts.STAGES)
    spent = starts.durations(moments)
    assert spent == {
        "admitted": 0.01,
        "started": 0.04,
        "configSeen": 0.2,
        "trainerStarted": 0.01,
        "firstProgress": 0.24,
        "reported": 0.02,
        "status": 0.08,
        "total": 0.6,
    }
    assert round(sum(v for k, v in spent.items() if k != "total"), 4) == spent["total"]


def test_junk_times_are_ignored_not_raised() -> None:
    junk = {"times": {**AGENT, "firstProgress": "soon", "reported": None}}
    assert starts.agent_times(junk) == {"configSeen": 100.25, "trainerStarted": 100.26}
    assert starts.agent_times({"times": "x"}) == {}
    assert starts.timeline(OPERATOR, junk, 101.0) is None
