"""A warm session's turn at its pool (sessions/admission.decide_warm, sessions/warm.queue_at): the
pool's pods are the capacity, one a session, queued by priority then age, preempting lower ones only
when the pool cannot grow. Sessions as the watch delivers them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shoal.sessions.admission import SessionView, Verdict, decide_warm
from shoal.sessions.warm import queue_at
from shoal.times import format_time

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def s(name: str, priority: int = 0, age: int = 0, preempting: bool = False) -> SessionView:
    return SessionView(name, priority, 1000.0 - age, {}, preempting)


ME = s("me", priority=5, age=10)


@pytest.mark.parametrize(
    ("waiting", "holding", "idle", "grow", "want"),
    [
        ([], [], 1, False, Verdict(True, reason="Admitted")),
        ([s("old", 5, age=20)], [], 2, False, Verdict(True, reason="Admitted")),  # one each
        ([s("low", 1, age=99)], [], 1, False, Verdict(True, reason="Admitted")),  # priority before age
        ([s("young", 5, age=1)], [], 1, False, Verdict(True, reason="Admitted")),  # then age
        ([s("vip", 9)], [], 1, True, Verdict(True, reason="Admitted")),  # the pool grows for both
        (
            [],
            [s("low", 1)],
            0,
            False,
            Verdict(False, ("low",), "Preempting", "pausing lower-priority session(s) low"),
        ),
        (
            [],
            [s("low", 1), s("lower", 0)],
            0,
            False,
            Verdict(False, ("lower",), "Preempting", "pausing lower-priority session(s) lower"),
        ),
        (
            [],
            [s("low", 1, preempting=True)],
            0,
            False,
            Verdict(False, (), "WaitingForPreemption", "lower-priority sessions are checkpointing"),
        ),
        ([], [s("low", 1)], 0, True, Verdict(True, reason="Admitted")),  # growing beats pausing anyone
    ],
)
def test_a_warm_sessions_turn(
    waiting: list[SessionView], holding: list[SessionView], idle: int, grow: bool, want: Verdict
) -> None:
    assert decide_warm(ME, waiting, holding, idle, grow) == want


def test_at_max_behind_others_and_above_no_holder_it_waits_saying_why() -> None:
    v = decide_warm(ME, [s("vip", 9), s("older", 5, age=20)], [s("peer", 5)], 1, False)
    assert (v.admit, v.reason, v.preempt) == (False, "NoIdlePod", ())
    assert v.message.startswith("the pool is at maxReplicas with 1 idle pod(s) for 2 session(s) ahead")


def session(name: str, pool: str = "warm", priority: int = 0, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": format_time(NOW - timedelta(minutes=1))},
        "spec": {"poolRef": {"name": pool}, "priority": priority, "runState": "Running"},
        "status": status,
    }


def test_the_queue_at_a_pool_is_read_from_the_sessions_as_watched() -> None:
    later = format_time(NOW + timedelta(seconds=30))
    sessions = [
        session("me"),
        session("new"),  # no status yet: waiting
        session("queued", priority=3, phase="Pending", reason="NoIdlePod"),
        session("holder", priority=1, phase="Running", claimedFromPool="warm"),
        session("pausing", phase="Stopping", claimedFromPool="warm", preemptedBy="vip"),
        session("elsewhere", pool="other", phase="Pending"),
        session("refused", phase="Pending", reason="ImageMismatch"),
        session("backing-off", phase="Pending", reason="BackoffRestart", nextRestartTime=later),
        session("pinned", phase="Pending", reason="NoIdlePod", lastCheckpoint="/c/x", checkpointPod="p-1"),
        {**session("paused"), "spec": {"poolRef": {"name": "warm"}, "runState": "Paused"}},
        session("done", phase="Succeeded"),
    ]
    waiting, holding = queue_at(sessions, "me", "warm", True, NOW)
    assert sorted(w.name for w in waiting) == ["new", "queued"]
    assert {h.name: (h.priority, h.preempting) for h in holding} == {
        "holder": (1, False),
        "pausing": (0, True),
    }
    # On a pool whose checkpoints are on a shared claim any pod will do: the resume takes its turn.
    waiting, _ = queue_at(sessions, "me", "warm", False, NOW)
    assert sorted(w.name for w in waiting) == ["new", "pinned", "queued"]
    # A session that has just claimed holds its pod before its status says so: it waits for nothing,
    # and the pod it took is not counted twice (once missing from the idle ones, once owed to it).
    waiting, holding = queue_at(sessions, "me", "warm", True, NOW, holders=frozenset({"new"}))
    assert [w.name for w in waiting] == ["queued"] and "new" in {h.name for h in holding}
