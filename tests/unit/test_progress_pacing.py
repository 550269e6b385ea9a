"""A session's figures-only progress reports: at most one reconcile (so one status write) per
SHOAL_PROGRESS_STATUS_SECONDS, while acknowledgements, checkpoints and exits go through at once."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, cast

import pytest

from shoal.config import Settings, SettingsError
from shoal.handlers import session as handler
from shoal.k8s.client import Kube
from shoal.runtime import operator
from shoal.runtime.operator import OperatorRuntime
from shoal.runtime.pacer import Pacer


def test_the_first_report_goes_at_once_the_next_wait_for_the_interval_and_become_one() -> None:
    p = Pacer(5.0)
    assert p.delay("s", 100.0) == 0.0
    assert p.delay("s", 101.0) == 4.0  # scheduled at 105
    assert p.delay("s", 102.0) is None  # the one at 105 reads it
    assert p.delay("s", 104.9) is None
    assert p.delay("s", 106.0) == 4.0  # after the 105 one: the next at 110
    assert p.delay("s", 121.0) == 0.0  # a quiet interval: at once again
    assert p.delay("other", 121.0) == 0.0  # per key


def test_a_reconcile_for_another_reason_starts_the_interval() -> None:
    p = Pacer(5.0)
    p.ran("s", 100.0)
    assert p.delay("s", 101.0) == 4.0
    p.forget("s")
    assert p.delay("s", 103.0) == 0.0


def test_a_report_after_a_reconcile_that_took_a_scheduled_slot_is_not_lost() -> None:
    """The work queue keeps only a key's earliest pending re-add: the pacer's 105 was dropped for a
    requeue at 102, which ran. A report at 103 must still get a reconcile of its own."""
    p = Pacer(5.0)
    assert p.delay("s", 100.0) == 0.0
    assert p.delay("s", 101.0) == 4.0  # asked for at 105; the queue kept its pending 102 instead
    p.ran("s", 102.0)  # the 102 one taken by a worker: it read up to here
    assert p.delay("s", 103.0) == 4.0  # not None: nothing pending would read this report


def test_the_interval_is_a_setting_checked_at_start() -> None:
    assert Settings.from_env({}).progress_status_seconds == 5.0
    assert Settings.from_env({"SHOAL_PROGRESS_STATUS_SECONDS": "0.5"}).progress_status_seconds == 0.5
    with pytest.raises(SettingsError, match="SHOAL_PROGRESS_STATUS_SECONDS"):
        Settings.from_env({"SHOAL_PROGRESS_STATUS_SECONDS": "-1"})


def pod(progress: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "warm-1",
            "uid": "u1",
            "labels": {"shoal.dev/session": "s"},
            "annotations": {"shoal.dev/progress": json.dumps(progress)},
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_a_report_a_second_for_ten_seconds_is_three_reconciles_and_an_ack_is_never_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the handler's clock (asyncio's too)
    runtime = OperatorRuntime(Settings(leader_election=False), cast(Kube, None))
    runtime.register("TrainingSession", "trainingsessions", lambda ns, name: None)
    operator.install(runtime)
    calls: list[tuple[str, float]] = []
    monkeypatch.setattr(
        runtime,
        "enqueue",
        lambda k, ns, n, urgent=False: calls.append(("urgent" if urgent else "now", now[0])),
    )
    monkeypatch.setattr(runtime, "enqueue_after", lambda k, ns, n, d: calls.append(("after", now[0] + d)))

    async def scenario() -> None:
        handler.session_pod_event("ns", {"shoal.dev/session": "s"}, "ADDED", pod({"ack": 0}))
        for t in range(1, 11):  # the trainer's figures, one report a second
            now[0] = 1000.0 + t
            handler.session_pod_event(
                "ns", {"shoal.dev/session": "s"}, "MODIFIED", pod({"ack": 0, "timesteps": t})
            )
        now[0] = 1010.5
        ack = pod({"ack": 1, "timesteps": 10})
        handler.session_pod_event("ns", {"shoal.dev/session": "s"}, "MODIFIED", ack)

    asyncio.run(scenario())
    # The pod's first sight is urgent; the figures after it: one reconcile at 1005 and one at 1010
    # (each reading the latest report), not ten; the acknowledgement at once.
    assert calls == [("urgent", 1000.0), ("after", 1005.0), ("after", 1010.0), ("urgent", 1010.5)]
