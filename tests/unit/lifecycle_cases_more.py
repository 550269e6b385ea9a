"""The session lifecycle's table, second half: stopping, a lost status write, warm pods, checkpoints on demand,
forced stops, spec edits, placement and the paused and final phases. test_session_lifecycle runs them."""

from __future__ import annotations

from datetime import timedelta

from shoal.sessions.lifecycle import (
    ClaimOutcome,
    CreatePod,
    EnsureService,
    Event,
    LetGo,
    PodState,
    SendCommand,
)
from shoal.times import format_time
from tests.unit.lifecycle_cases import (
    ADMIT,
    CHECKPOINTING,
    CKPT,
    CLAIMED,
    FULL,
    NOW,
    PAUSED,
    RUNNING,
    Case,
    pod,
    stopping,
)

COMMANDS_AND_AFTER = [
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
