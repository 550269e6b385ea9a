"""The TrainingSession lifecycle, table-driven: every phase transition the code makes, with the
actions it asks for; and the transition map (lifecycle.TRANSITIONS, the table in docs/sessions.md) walked
against those cases in both directions."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shoal.api.session import TrainingSessionSpec
from shoal.sessions.admission import Verdict
from shoal.sessions.lifecycle import (
    TRANSITIONS,
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
from shoal.sessions.steps import LATER_FIELDS, POD_FIELDS
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


CASES = [
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
    Case(
        "waits-for-the-ack",
        stopping(),
        "Stopping",
        pod=pod(command=("pause", 1)),
        spec={"runState": "Paused"},
        check=lambda s: s.requeue == 90.0 and not s.actions,
    ),
    Case(
        "ack-pauses",
        stopping(),
        "Paused",
        pod=pod(command=("pause", 1), ack=1, lastCheckpoint={"path": CKPT}),
        spec={"runState": "Paused"},
        actions=[LetGo],
        reason="Paused",
        check=lambda s: s.status["lastCheckpoint"] == CKPT and s.status["podName"] is None,
    ),
    Case(
        "ack-stops",
        stopping("stop"),
        "Stopped",
        pod=pod("Succeeded", command=("stop", 1), ack=1, done=False),
        spec={"runState": "Stopped"},
        actions=[LetGo],
        reason="Stopped",
    ),
    Case(
        "ack-of-a-preempted-one",
        stopping(preemptedBy="vip"),
        "Pending",
        pod=pod(command=("pause", 1), ack=1),
        actions=[LetGo],
        reason="Preempted",
        check=lambda s: s.status["preemptedBy"] is None,
    ),
    Case(
        "deadline-passed",
        stopping(since=format_time(NOW - timedelta(seconds=121))),
        "Paused",
        pod=pod(command=("pause", 1)),
        spec={"runState": "Paused"},
        actions=[Event, LetGo],
        check=lambda s: s.actions[0].reason == "CheckpointTimeout",
    ),
    Case(
        "finished-before-the-pause-landed",
        stopping(),
        "Succeeded",
        pod=pod("Succeeded", done=True),
        spec={"runState": "Paused"},
        actions=[LetGo],
    ),
    Case(
        "failed-while-stopping",
        stopping(),
        "Failed",
        pod=pod(error={"reason": "CheckpointCorrupt"}),
        spec={"runState": "Paused"},
        actions=[LetGo],
    ),
    # The pod got the command, the status write did not (operator killed between): the pod's exit 0
    # is the acknowledgement of that command, not the end of training.
    Case(
        "command-recovered-from-the-pod",
        {**RUNNING, "commandId": 0},
        "Paused",
        pod=pod("Succeeded", command=("pause", 1), ack=1, done=False),
        spec={"runState": "Paused"},
        actions=[LetGo],
        check=lambda s: s.status["commandId"] == 1,
    ),
    Case(
        "stop-recovered-from-the-pod",
        {**RUNNING, "commandId": 0},
        "Stopped",
        pod=pod("Succeeded", command=("stop", 1), ack=1, done=False),
        spec={"runState": "Stopped"},
        actions=[LetGo],
    ),
    # A warm pod's agent stays after its trainer: the ack counts once the trainer's exit is reported.
    Case(
        "warm-ack-before-the-exit",
        stopping(claimedFromPool="warm"),
        "Stopping",
        pod=pod(command=("pause", 1), ack=1),
        spec={"runState": "Paused"},
    ),
    Case(
        "warm-ack-and-exit",
        stopping(claimedFromPool="warm"),
        "Paused",
        pod=pod(command=("pause", 1), ack=1, exitCode=0),
        spec={"runState": "Paused"},
        actions=[LetGo],
        check=lambda s: s.actions[0].to_pool and s.status["claimedFromPool"] is None,
    ),
    Case(
        "warm-trainer-crashed",
        CLAIMED,
        "Pending",
        pod=pod(exitCode=137),
        actions=[LetGo, Event],
        check=lambda s: s.actions[0].to_pool,
    ),
    # Checkpoint on demand: spec.checkpointRequest above status.checkpointRequestServed.
    Case(
        "checkpoint-asked",
        RUNNING,
        "Running",
        pod=pod(),
        spec={"checkpointRequest": 2},
        actions=[SendCommand],
        check=lambda s: (
            s.actions[0] == SendCommand("s-1", "checkpoint", 1) and s.status["checkpointRequestPending"] == 2
        ),
    ),
    Case(
        "checkpoint-answered",
        {**RUNNING, **CHECKPOINTING, "checkpointRequestPending": 2},
        "Running",
        spec={"checkpointRequest": 2},
        pod=pod(ack=1, lastCheckpoint={"path": CKPT, "time": 1796126400.0}),
        actions=[Event],
        check=lambda s: (
            s.status["checkpointRequestServed"] == 2
            and s.status["command"] is None
            and s.status["lastCheckpointTime"] == "2026-12-01T12:00:00Z"
            and CKPT in s.actions[0].message
        ),
    ),
    Case(
        "checkpoint-waits",
        {**RUNNING, **CHECKPOINTING},
        "Running",
        spec={"checkpointRequest": 1},
        pod=pod(),
        check=lambda s: s.requeue == 90.0,
    ),
    Case(
        "checkpoint-overdue-asks-again",
        {**RUNNING, **CHECKPOINTING, "commandTime": format_time(NOW - timedelta(seconds=200))},
        "Running",
        spec={"checkpointRequest": 1},
        pod=pod(),
        actions=[Event, SendCommand],
        check=lambda s: s.actions[1].id == 2,
    ),
    Case(
        "served-asks-nothing",
        {**RUNNING, "checkpointRequestServed": 3},
        "Running",
        spec={"checkpointRequest": 3},
        pod=pod(),
    ),
    Case(
        "a-warm-pod-checkpoints-without-exiting",
        {**CLAIMED, **CHECKPOINTING},
        "Running",
        spec={"checkpointRequest": 1},
        pod=pod(ack=1),
        actions=[Event],
    ),
    # A forced stop: no checkpoint. The session's own pod is deleted at once; a warm pod's trainer is
    # killed and the pod released when the agent reports the exit.
    Case(
        "immediate-stop",
        RUNNING,
        "Stopped",
        pod=pod(),
        spec={"runState": "Stopped", "stopMode": "Immediate"},
        actions=[SendCommand, LetGo],  # the kill first: the agent reads it when SIGTERM arrives
        check=lambda s: (
            "without a checkpoint" in s.status["message"]
            and s.actions[0].verb == "kill"
            and not s.actions[1].to_pool
            and not s.actions[1].keep
        ),
    ),
    Case(
        "immediate-warm-kill",
        CLAIMED,
        "Stopping",
        pod=pod(),
        spec={"runState": "Paused", "stopMode": "Immediate"},
        actions=[SendCommand],
        check=lambda s: s.actions[0].verb == "kill",
    ),
    Case(
        "immediate-warm-killed",
        {**CLAIMED, **stopping("kill")},
        "Paused",
        pod=pod(exitCode=-9),
        spec={"runState": "Paused", "stopMode": "Immediate"},
        actions=[LetGo],
        check=lambda s: s.actions[0].to_pool and "without a checkpoint" in s.status["message"],
    ),
    # A spec edit under a running pod: checkpoint, then a new pod made from the new spec.
    Case(
        "spec-edited",
        {**RUNNING, "specHash": "stale"},
        "Stopping",
        pod=pod(),
        actions=[SendCommand],
        check=lambda s: s.actions[0].verb == "pause" and "to apply the new spec" in s.status["message"],
    ),
    Case(
        "spec-edit-acknowledged",
        stopping(specHash="stale"),
        "Pending",
        pod=pod(command=("pause", 1), ack=1),
        actions=[LetGo, Event],
        reason="SpecChanged",
        check=lambda s: s.requeue == 0.5 and s.status["podName"] is None,
    ),
    Case("spec-unchanged", {**RUNNING, "specHash": None}, "Running", pod=pod()),
    # Placement: the scheduler's verdict in status, and a start that never comes is a failure.
    Case(
        "unschedulable",
        {"phase": "Starting", "podName": "s-1"},
        "Starting",
        pod=PodState(
            "s-1",
            "u",
            "Pending",
            created=NOW - timedelta(seconds=60),
            unschedulable="0/3 nodes are available: 3 node(s) didn't match node selector",
        ),
        reason="Unschedulable",
        check=lambda s: "didn't match node selector" in s.status["message"] and s.requeue == 540.0,
    ),
    Case(
        "image-not-pulled",
        {"phase": "Starting", "podName": "s-1", "reason": "PodStarting"},
        "Starting",
        pod=PodState.of(
            {
                "metadata": {
                    "name": "s-1",
                    "uid": "u",
                    "creationTimestamp": format_time(NOW - timedelta(seconds=30)),
                },
                "status": {
                    "phase": "Pending",
                    "initContainerStatuses": [{"name": "setup", "state": {"terminated": {"exitCode": 0}}}],
                    "containerStatuses": [
                        {"name": "agent", "state": {"waiting": {"reason": "ContainerCreating"}}},
                        {
                            "name": "trainer",
                            "state": {
                                "waiting": {
                                    "reason": "ErrImagePull",
                                    "message": 'failed to pull "example/trainer:9": not found',
                                }
                            },
                        },
                    ],
                },
            }
        ),
        reason="ErrImagePull",
        # Said at once, from the first pod status that shows it; the start timeout still runs.
        check=lambda s: (
            s.status["message"]
            == 'pod s-1: container trainer ErrImagePull: failed to pull "example/trainer:9": not found'
            and s.requeue == 570.0
        ),
    ),
    Case(
        "still-creating",
        {"phase": "Starting", "podName": "s-1", "reason": "PodStarting"},
        "Starting",
        pod=PodState.of(
            {
                "metadata": {"name": "s-1", "uid": "u", "creationTimestamp": format_time(NOW)},
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [
                        {"name": "trainer", "state": {"waiting": {"reason": "ContainerCreating"}}}
                    ],
                },
            }
        ),
        reason="PodStarting",
    ),
    Case(
        "never-started",
        {"phase": "Starting", "podName": "s-1"},
        "Pending",
        pod=PodState("s-1", "u", "Pending", created=NOW - timedelta(seconds=601), unschedulable="no GPU"),
        actions=[LetGo, Event],
        reason="BackoffRestart",
        check=lambda s: s.actions[1].message.startswith("pod s-1 did not start within 600s: no GPU"),
    ),
    Case("still-paused", PAUSED, "Paused", spec={"runState": "Paused"}, check=lambda s: not s.actions),
    Case("resume-queued", PAUSED, "Pending", admission=FULL),
    Case(
        "resume",
        PAUSED,
        "Starting",
        admission=ADMIT,
        actions=[CreatePod],
        check=lambda s: s.actions[0] == CreatePod("s-2", CKPT),
    ),
    Case(
        "resume-warm",
        PAUSED,
        "Running",
        spec={"poolRef": {"name": "warm"}},
        admission=ADMIT,
        claim=ClaimOutcome("warm-y", "warm"),
        actions=[EnsureService],
    ),
    Case("stop-while-paused", PAUSED, "Stopped", spec={"runState": "Stopped"}),
    Case(
        # Its warm pod was given back and claimed by another session: not its pod any more, so it
        # restarts (a new claim) and neither reads that session's progress nor gives the pod back.
        "claim-undone",
        CLAIMED,
        "Pending",
        spec={"poolRef": {"name": "warm"}},
        pod=pod(claimed_by="other", timesteps=900, done=True, exitCode=0),
        actions=[Event],
        check=lambda s: (
            "no longer claimed" in s.status["message"]
            and s.status["podName"] is None
            and s.status.get("metrics") is None
        ),
    ),
    *(
        Case(f"{p.lower()}-is-final", {"phase": p}, p, pod=pod("Failed"), check=lambda s: not s.actions)
        for p in ("Succeeded", "Failed", "Stopped")
    ),
]


def run(case: Case) -> Step:
    spec = TrainingSessionSpec.model_validate({**BASE, **case.spec})
    return decide(Inputs("s", spec, case.status, case.pod, NOW, case.admission, case.claim))


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
    ]
    others: list[dict[str, Any]] = [{"priority": 5}, {"runState": "Paused"}, {"checkpointRequest": 2}]
    for edit in shaping:
        assert spec_hash(TrainingSessionSpec.model_validate({**BASE, **edit})) != base, edit
    for edit in [*others, {"stopMode": "Immediate"}]:
        assert spec_hash(TrainingSessionSpec.model_validate({**BASE, **edit})) == base, edit
    # A field added later counts only when set: a pod made before it existed keeps its hash (and runs on).
    before = TrainingSessionSpec.model_validate(BASE).model_dump(
        mode="json", include=POD_FIELDS - LATER_FIELDS
    )
    assert base == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12]
