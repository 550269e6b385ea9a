"""The session lifecycle's table, first half: the Case kit, and the cases from admission to a running
trainer and its end (pod ready, crashes, restarts, preemption). test_session_lifecycle
runs them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shoal.api.session import TrainingSessionSpec
from shoal.sessions.admission import Verdict
from shoal.sessions.lifecycle import (
    ClaimOutcome,
    CreatePod,
    EnsureService,
    Event,
    Inputs,
    LetGo,
    PodState,
    Preempt,
    SendCommand,
    Step,
    decide,
    spec_hash,
)
from shoal.times import format_time

BASE = {"game": "CartPole-v1", "algorithm": "PPO", "image": "x", "totalTimesteps": 1000}
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
AGO = format_time(NOW - timedelta(seconds=30))
CKPT = "/checkpoints/ckpt-000000004096.npz"
ADMIT = Verdict(True, reason="Admitted")
FULL = Verdict(False, reason="InsufficientCapacity", message="cpu needs 2 (free 1)")
PREEMPT = Verdict(False, preempt=("low",), reason="Preempting", message="pausing low")


def pod(
    phase: str = "Running",
    ready: bool = True,
    command: tuple[str, int] | None = None,
    claimed_by: str = "s",
    **progress: Any,
) -> PodState:
    ann = {"shoal.dev/claimed-by": claimed_by}  # a pool pod's holder (the session "s"); own pods ignore it
    if progress:
        ann["shoal.dev/progress"] = json.dumps(progress)
    if command:
        ann |= {"shoal.dev/command": command[0], "shoal.dev/command-id": str(command[1])}
    return PodState("s-1", "uid-1", phase, ready, ann)


def stopping(verb: str = "pause", since: str = AGO, **st: Any) -> dict[str, Any]:
    return {
        "phase": "Stopping",
        "podName": "s-1",
        "command": verb,
        "commandId": 1,
        "commandTime": since,
        **st,
    }


RUNNING = {"phase": "Running", "podName": "s-1", "attempts": 1}
CLAIMED = {**RUNNING, "claimedFromPool": "warm"}
# A checkpoint asked of the pod 30 s ago for spec.checkpointRequest 1, not answered yet.
CHECKPOINTING = {"command": "checkpoint", "commandId": 1, "commandTime": AGO, "checkpointRequestPending": 1}
PAUSED = {"phase": "Paused", "lastCheckpoint": CKPT, "attempts": 1}


@dataclass
class Case:
    id: str
    status: dict[str, Any]
    want: str  # the phase after
    pod: PodState | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    admission: Verdict | None = None
    claim: ClaimOutcome | None = None
    actions: list[type] = field(default_factory=list)
    reason: str | None = None
    check: Any = None  # more to assert on the Step


def run(case: Case) -> Step:
    spec = TrainingSessionSpec.model_validate({**BASE, **case.spec})
    return decide(Inputs("s", spec, case.status, case.pod, NOW, case.admission, case.claim))


STARTING_AND_RUNNING = [
    # The agent reports the trainer's exit before the kubelet ends the pod: that report is the end.
    Case(
        "the-agent-reports-the-crash-before-the-kubelet",
        RUNNING,
        "Pending",
        pod=pod(exitCode=137),
        actions=[LetGo, Event],
        reason="BackoffRestart",
    ),
    Case("new-needs-admission", {}, "Pending", check=lambda s: s.needs == "admission"),
    Case(
        "admitted",
        {},
        "Starting",
        admission=ADMIT,
        actions=[CreatePod],
        reason="PodCreated",
        check=lambda s: s.status["specHash"] == spec_hash(TrainingSessionSpec.model_validate(BASE)),
    ),
    Case(
        "queued",
        {"phase": "Pending"},
        "Pending",
        admission=FULL,
        reason="InsufficientCapacity",
        check=lambda s: s.requeue == 3.0 and "cpu needs 2" in s.status["message"],
    ),
    Case("preempts", {}, "Pending", admission=PREEMPT, actions=[Preempt], reason="Preempting"),
    Case(
        "claims-a-warm-pod",
        {},
        "Running",
        spec={"poolRef": {"name": "warm"}},
        admission=ADMIT,
        claim=ClaimOutcome("warm-x", "warm", latency_ms=12),
        actions=[EnsureService],  # its Event is the phase change's, with this message
        reason="ClaimedWarmPod",
        check=lambda s: (
            s.status["podName"] == "warm-x"
            and s.status["commandId"] == 0
            and s.status["message"] == "bound to warm pod warm-x of pool warm in 12 ms"
        ),
    ),
    Case(
        "warm-pod-running-keeps-its-bind-record",
        {**CLAIMED, "reason": "ClaimedWarmPod", "message": "bound", "startTime": AGO},
        "Running",
        pod=pod(),
        reason="ClaimedWarmPod",
        check=lambda s: s.status["message"] == "bound" and not s.actions,
    ),
    Case(
        "warm-pod-unready-is-starting-again",
        {**CLAIMED, "reason": "ClaimedWarmPod", "message": "bound", "startTime": AGO},
        "Starting",
        pod=pod(ready=False),
        reason="PodStarting",
    ),
    Case(
        "warm-asks-its-turn-first",
        {},
        "Pending",
        spec={"poolRef": {"name": "warm"}},
        check=lambda s: s.needs == "admission" and not s.actions,
    ),
    Case(
        "warm-waits-its-turn",
        {},
        "Pending",
        spec={"poolRef": {"name": "warm"}},
        admission=Verdict(False, reason="NoIdlePod", message="the pool is at maxReplicas"),
        reason="NoIdlePod",
        check=lambda s: s.needs is None and s.requeue == 3.0,  # no claim tried
    ),
    Case(
        "warm-preempts",
        {},
        "Pending",
        spec={"poolRef": {"name": "warm"}},
        admission=PREEMPT,
        actions=[Preempt],
        reason="Preempting",
        check=lambda s: s.needs is None,
    ),
    Case(
        "no-idle-pod",
        {},
        "Pending",
        spec={"poolRef": {"name": "warm"}},
        admission=ADMIT,
        claim=ClaimOutcome(None, "warm"),
        reason="NoIdlePod",
        check=lambda s: s.requeue == 1.0,
    ),
    Case(
        "pool-missing",
        {},
        "Pending",
        spec={"poolRef": {"name": "gone"}},
        admission=ADMIT,
        claim=ClaimOutcome(None, "gone", "PoolNotFound"),
        reason="PoolNotFound",
    ),
    Case(
        "pool-cannot-train",
        {},
        "Pending",
        spec={"poolRef": {"name": "plain"}},
        admission=ADMIT,
        claim=ClaimOutcome(None, "plain", "NoSessionAgent", message="its pods run no agent to train with"),
        reason="NoSessionAgent",
        # Refused until the pool or the spec is edited: looked at again every few seconds, not every one.
        check=lambda s: (
            s.requeue == 3.0 and s.status["message"] == "pool plain: its pods run no agent to train with"
        ),
    ),
    Case("paused-before-it-ran", {}, "Paused", spec={"runState": "Paused"}, reason="Paused"),
    Case("stopped-before-it-ran", {}, "Stopped", spec={"runState": "Stopped"}, reason="Stopped"),
    Case(
        "waits-out-its-backoff",
        {"phase": "Pending", "nextRestartTime": format_time(NOW + timedelta(seconds=8))},
        "Pending",
        check=lambda s: s.requeue == 8.0 and not s.actions,
    ),
    Case(
        "pod-starting",
        {"phase": "Starting", "podName": "s-1"},
        "Starting",
        pod=pod("Pending", False),
        reason="PodStarting",
    ),
    Case("pod-ready", {"phase": "Starting", "podName": "s-1"}, "Running", pod=pod(), reason="PodRunning"),
    Case(
        "pause-while-starting",
        {"phase": "Starting", "podName": "s-1"},
        "Stopping",
        pod=pod("Pending", False),
        spec={"runState": "Paused"},
        actions=[SendCommand],
        reason="Checkpointing",
    ),
    Case(
        "done-while-starting",
        {"phase": "Starting", "podName": "s-1"},
        "Succeeded",
        pod=pod("Succeeded", timesteps=1000, done=True),
        actions=[LetGo],
    ),
    Case(
        "bad-config-while-starting",
        {"phase": "Starting", "podName": "s-1"},
        "Failed",
        pod=pod(error={"reason": "InvalidGame", "message": "spec.game: no such game"}),
        actions=[LetGo],
        reason="InvalidGame",
        check=lambda s: s.actions[0].keep,
    ),
    Case(
        "crash-while-starting",
        {"phase": "Starting", "podName": "s-1"},
        "Pending",
        pod=pod("Failed"),
        actions=[LetGo, Event],
        reason="BackoffRestart",
    ),
    Case(
        "reports-progress",
        RUNNING,
        "Running",
        pod=pod(timesteps=500, meanReward=9.5, lastCheckpoint={"path": CKPT}),
        check=lambda s: (
            s.status["progress"] == "50%"
            and s.status["lastCheckpoint"] == CKPT
            and s.status["metrics"]["meanReward"] == 9.5
            and "checkpointPod" not in s.status  # an own pod's checkpoints are on the session's claim
        ),
    ),
    Case(
        "warm-checkpoint-names-its-pod",
        CLAIMED,
        "Running",
        pod=pod(timesteps=500, lastCheckpoint={"path": CKPT}),
        check=lambda s: s.status["checkpointPod"] == "s-1",
    ),
    Case(
        "a-report-without-figures-keeps-the-last",
        {**CLAIMED, "metrics": {"timesteps": 700}, "progress": "70%"},
        "Failed",
        pod=pod(error={"reason": "CheckpointUnreachable", "message": "gone"}, exitCode=3),
        actions=[LetGo],
        reason="CheckpointUnreachable",
        check=lambda s: s.status["metrics"] == {"timesteps": 700} and s.status["progress"] == "70%",
    ),
    Case("pod-not-ready-again", RUNNING, "Starting", pod=pod(ready=False)),
    Case(
        "pause",
        RUNNING,
        "Stopping",
        pod=pod(),
        spec={"runState": "Paused"},
        actions=[SendCommand],
        check=lambda s: s.actions[0] == SendCommand("s-1", "pause", 1) and s.requeue == 120.0,
    ),
    Case(
        "finished",
        RUNNING,
        "Succeeded",
        pod=pod("Succeeded", timesteps=1000, done=True),
        actions=[LetGo],
        check=lambda s: s.status["progress"] == "100%" and not s.actions[0].to_pool,
    ),
    Case(
        "exit-0-without-done-restarts",
        RUNNING,
        "Pending",
        pod=pod("Succeeded", timesteps=10, done=False),
        actions=[LetGo, Event],
        reason="BackoffRestart",
    ),
    Case(
        "exit-0-of-a-trainer-that-never-says-done",
        RUNNING,
        "Succeeded",
        pod=pod("Succeeded", timesteps=10),
        actions=[LetGo],
    ),
    Case(
        "crash-restarts-from-the-checkpoint",
        {**RUNNING, "lastCheckpoint": CKPT},
        "Pending",
        pod=pod("Failed"),
        actions=[LetGo, Event],
        reason="BackoffRestart",
        check=lambda s: (
            s.actions[1].message == f"pod s-1 failed; restart 1/3 in 10s from {CKPT}"
            and s.status["nextRestartTime"] == format_time(NOW + timedelta(seconds=10))
            and s.requeue == 10.0
        ),
    ),
    Case(
        "no-restarts-left",
        {**RUNNING, "restarts": 3},
        "Failed",
        pod=pod("Failed"),
        actions=[LetGo],
        reason="BackoffLimitExceeded",
    ),
    Case(
        "pod-deleted-by-someone",
        RUNNING,
        "Pending",
        actions=[Event],
        reason="BackoffRestart",
        check=lambda s: s.status["message"].startswith("pod deleted"),
    ),
]
