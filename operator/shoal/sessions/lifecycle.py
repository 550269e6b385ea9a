"""A TrainingSession's phases as a pure function: what the session should become, and what to do.

`decide(Inputs)` takes the spec, the status, the observed pod and its agent's progress and `now`, and
returns the new status, the actions that get there and when to look again. No I/O: the reconciler
(`reconcile/session.py`) reads the world, calls it and carries the actions out. Two answers need the
world first; `decide` then says so in `Step.needs`, and the reconciler calls it again with them:
`admission` (whether capacity admits a start) and `claim` (the result of claiming a warm pod).

    Pending --admitted--> Starting --pod ready--> Running --trainer done--> Succeeded
       ^  \\--poolRef: admitted at its pool, claim--> Running
       |                      Running --pause/stop/preempt--> Stopping --ack--> Paused | Stopped | Pending
       \\--backoff-- Pending <--pod failed (restarts left)--  Running --no restarts left--> Failed
"""

from __future__ import annotations

from datetime import timedelta

from shoal.sessions.admission import backoff_seconds
from shoal.sessions.commands import ENDING, checkpoint_on_demand, stop
from shoal.sessions.commands import as_int as _int
from shoal.sessions.progress import apply_progress
from shoal.sessions.steps import (
    PENDING_RECHECK,
    Action,
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
    spec_hash,
)
from shoal.sessions.warm import REFUSALS
from shoal.times import format_time, parse_time
from shoal.vocab import ANN_CLAIMED_BY, ANN_COMMAND, ANN_COMMAND_ID, ANN_PROGRESS

CLAIM_RECHECK = 1.0
__all__ = [
    "ANN_COMMAND",
    "ANN_COMMAND_ID",
    "ANN_PROGRESS",
    "Action",
    "ClaimOutcome",
    "CreatePod",
    "EnsureService",
    "Event",
    "Inputs",
    "LetGo",
    "PodState",
    "Preempt",
    "SendCommand",
    "Step",
    "decide",
    "spec_hash",
]
ACTIVE = ("Starting", "Running", "Stopping")
FINAL = ("Succeeded", "Failed", "Stopped")
# Every phase and the phases decide() may move it to; tests walk this against the code.
TRANSITIONS: dict[str, set[str]] = {
    "Pending": {"Pending", "Starting", "Running", "Paused", "Stopped"},
    "Starting": {"Starting", "Running", "Stopping", "Succeeded", "Failed", "Pending"},
    # Running to Paused or Stopped: the command's own status write was lost (see _with_pod).
    "Running": {"Running", "Starting", "Stopping", "Succeeded", "Failed", "Pending", "Paused", "Stopped"},
    "Stopping": {"Stopping", "Paused", "Stopped", "Pending", "Succeeded", "Failed"},
    "Paused": {"Paused", "Pending", "Starting", "Running", "Stopped"},
    "Succeeded": {"Succeeded"},
    "Failed": {"Failed"},
    "Stopped": {"Stopped"},
}


# --- the machine ----------------------------------------------------------------------------------------


def decide(inp: Inputs) -> Step:
    new = dict(inp.status)
    phase = new.get("phase") or "Pending"
    if phase in FINAL:
        return Step(new)  # the record is kept; nothing runs any more
    new["phase"] = phase
    pod, gone = inp.pod, "pod deleted"
    if pod is not None and new.get("claimedFromPool") and pod.annotations.get(ANN_CLAIMED_BY) != inp.name:
        # Given back and maybe claimed by someone else since: what runs there is not this session's.
        gone = f"pod {pod.name} is no longer claimed for it"
        pod = None
    if pod is not None and pod.progress:
        before = new.get("lastCheckpoint")
        apply_progress(new, pod.progress, inp.spec.totalTimesteps)
        if new.get("claimedFromPool") and new.get("lastCheckpoint") != before:
            new["checkpointPod"] = pod.name  # a warm pod's own volume may be the only one that has it
    want_run = inp.spec.runState == "Running" and not new.get("preemptedBy")
    step = Step(new)
    if pod is not None:
        _with_pod(inp, step, pod, want_run)
    else:
        _without_pod(inp, step, want_run, gone)
    return step


def _with_pod(inp: Inputs, step: Step, pod: PodState, want_run: bool) -> None:
    new, now = step.status, inp.now
    claimed = bool(new.get("claimedFromPool"))
    progress = pod.progress
    on_pod = _int(pod.annotations.get(ANN_COMMAND_ID))
    if on_pod > _int(new.get("commandId")) and pod.annotations.get(ANN_COMMAND):
        # The command reached the pod but its status write did not (a crash in between): the pod is
        # the record. Its deadline counts from now, the first moment this replica knows of it.
        new.update(commandId=on_pod, command=pod.annotations[ANN_COMMAND], commandTime=format_time(now))
    pod_phase = pod.phase
    exit_code = progress.get("exitCode")
    if pod_phase == "Running" and exit_code is not None:
        # The trainer's exit, as its agent reports it, is this session's end of the pod: a warm pod's
        # agent outlives its trainer (it waits for the next claim), and an own pod's phase follows
        # only once the kubelet notices the container's end.
        pod_phase = "Succeeded" if exit_code == 0 else "Failed"
    outstanding = new.get("command") in ENDING
    acked = _int(progress.get("ack")) >= _int(new.get("commandId")) > 0
    if claimed and outstanding and exit_code is None:
        acked = False  # released only once the trainer is gone: no report of it lands after the release

    error = progress.get("error")
    if isinstance(error, dict) and error.get("reason"):
        # The trainer refused its config or checkpoint: restarting would only repeat that.
        step.actions.append(LetGo(pod.name, pod.uid, claimed, keep=True))
        new.update(
            phase="Failed",
            reason=str(error["reason"])[:128],
            message=str(error.get("message") or "")[:1024],
            endTime=format_time(now),
            podName=None,
        )
        return
    # A trainer that says whether it finished is believed; one that does not, by its exit code.
    finished = bool(progress.get("done")) if "done" in progress else not outstanding
    if pod_phase == "Succeeded" and finished:
        step.actions.append(LetGo(pod.name, pod.uid, claimed, keep=True))
        new.update(
            phase="Succeeded",
            reason="Completed",
            message="training finished",
            endTime=format_time(now),
            progress="100%",
        )
        return
    killed = new.get("command") == "kill"  # a forced stop: the trainer's death is the answer
    if (pod_phase == "Failed" and not killed) or (pod_phase == "Succeeded" and not outstanding):
        _restart_or_fail(inp, step, pod, f"pod {pod.name} {pod_phase.lower()}")
        return
    if want_run and new.get("specHash") and new["specHash"] != spec_hash(inp.spec):
        # The spec changed under a running pod: checkpoint, then a new pod with the new spec.
        stop(inp, step, pod, acked, pod_phase, respec=True)
        return
    if want_run:
        running = pod_phase == "Running" and pod.ready
        if not running and not claimed and _start_overdue(inp, step, pod):
            return
        if running and claimed and new.get("reason") == "ClaimedWarmPod":
            # A warm pod runs from its bind on: the bind's record stands (a second write and Event
            # saying "running" would cost every warm start two requests and add nothing).
            new.setdefault("startTime", format_time(now))
            checkpoint_on_demand(inp, step, pod, acked)
            return
        new["phase"] = "Running" if running else "Starting"
        new["reason"] = "PodRunning" if running else "PodStarting"
        new["message"] = f"pod {pod.name} is {pod_phase.lower()}"
        if pod.unschedulable and not running:
            new.update(reason="Unschedulable", message=f"pod {pod.name}: {pod.unschedulable}")
        elif pod.stuck and not running:
            new.update(reason=pod.stuck[0], message=f"pod {pod.name}: {pod.stuck[1]}")
        new.setdefault("startTime", format_time(now))
        checkpoint_on_demand(inp, step, pod, acked)
        return
    stop(inp, step, pod, acked or (killed and pod_phase != "Running"), pod_phase)


def _start_overdue(inp: Inputs, step: Step, pod: PodState) -> bool:
    """A pod not running startTimeoutSeconds after its creation is a failure; else look again then."""
    limit = inp.spec.startTimeoutSeconds
    age = (inp.now - pod.created).total_seconds() if pod.created else 0.0
    if age < limit:
        step.requeue = limit - age
        return False
    cause = pod.unschedulable or (pod.stuck[1] if pod.stuck else None)
    why = f"pod {pod.name} did not start within {limit}s" + (f": {cause}" if cause else "")
    _restart_or_fail(inp, step, pod, why)
    return True


def _restart_or_fail(inp: Inputs, step: Step, pod: PodState | None, why: str) -> None:
    new, now, rp = step.status, inp.now, inp.spec.restartPolicy
    restarts = _int(new.get("restarts"))
    if pod is not None:
        step.actions.append(LetGo(pod.name, pod.uid, bool(new.get("claimedFromPool"))))
    new.update(podName=None, claimedFromPool=None, command=None, checkpointRequestPending=None)
    if restarts >= rp.backoffLimit:
        new.update(
            phase="Failed",
            reason="BackoffLimitExceeded",
            endTime=format_time(now),
            message=f"{why}; {restarts} restarts used of backoffLimit {rp.backoffLimit}",
        )
        return
    delay = backoff_seconds(restarts + 1, rp.initialBackoffSeconds, rp.maxBackoffSeconds)
    new.update(
        restarts=restarts + 1,
        phase="Pending",
        reason="BackoffRestart",
        nextRestartTime=format_time(now + timedelta(seconds=delay)),
        message=f"{why}; restart {restarts + 1}/{rp.backoffLimit} in {delay:.0f}s from "
        f"{new.get('lastCheckpoint') or 'the beginning'}",
    )
    step.actions.append(Event("Warning", "Restarting", new["message"]))
    step.requeue = delay


def _without_pod(inp: Inputs, step: Step, want_run: bool, gone: str = "pod deleted") -> None:
    new, now, spec = step.status, inp.now, inp.spec
    if new.get("podName"):
        # Deleted (or its claim undone) by someone else while running: a failure, restarted from
        # the checkpoint.
        if new.get("phase") in ACTIVE and want_run:
            _restart_or_fail(inp, step, None, gone)
            return
        new.update(podName=None, claimedFromPool=None)
    if not want_run:
        if spec.runState == "Stopped":
            new.update(
                phase="Stopped", reason="Stopped", message="stopped before it ran", endTime=format_time(now)
            )
        elif new.get("phase") != "Paused":  # already Paused: keep what the pause said
            new.update(phase="Paused", reason="Paused", message="paused before it ran")
        new["preemptedBy"] = None
        return
    restart_at = parse_time(new.get("nextRestartTime"))
    if restart_at and restart_at > now:
        step.requeue = (restart_at - now).total_seconds()
        return
    if spec.poolRef and inp.admission is not None and inp.admission.admit:
        _claim(inp, step)  # its turn at the pool (decide_warm): claim a pod
    else:
        _admit(inp, step)


def _claim(inp: Inputs, step: Step) -> None:
    new, claim = step.status, inp.claim
    if claim is None:
        step.needs = "claim"
        return
    if claim.pod is None:
        message = (
            f"ContainerPool {claim.pool} not found"
            if claim.reason == "PoolNotFound"
            else f"pool {claim.pool}: {claim.message}"
            if claim.message
            else f"no idle pod in pool {claim.pool}"
        )
        new.update(phase="Pending", reason=claim.reason, message=message)
        # A missing pool, or one that cannot serve the spec (sessions/warm.py), changes by an edit, not
        # by a pod turning idle: looked at again less often.
        step.requeue = PENDING_RECHECK if claim.reason in ("PoolNotFound", *REFUSALS) else CLAIM_RECHECK
        return
    new.update(
        specHash=spec_hash(inp.spec),
        podName=claim.pod,
        claimedFromPool=claim.pool,
        phase="Running",
        reason="ClaimedWarmPod",
        message=f"bound to warm pod {claim.pod} of pool {claim.pool} in {claim.latency_ms:.0f} ms",
        startTime=format_time(inp.now),
        commandId=0,
        command=None,
        nextRestartTime=None,
    )
    # The bind's Event is the phase change's own (record.phase_event, with this message): a warm start
    # costs one Event, not two saying the same.
    step.actions.append(EnsureService())


def _admit(inp: Inputs, step: Step) -> None:
    """Admission, a warm session's as a cold one's: queued by priority, preempting lower ones."""
    new, verdict = step.status, inp.admission
    if verdict is None:
        step.needs = "admission"
        return
    if not verdict.admit:
        step.actions += [Preempt(v) for v in verdict.preempt]
        if new.get("reason") == "Preempted":
            # Still waiting because it was preempted: say so until it is admitted again.
            first = (new.get("message") or "").split("; waiting:")[0]
            new.update(phase="Pending", message=f"{first}; waiting: {verdict.message or verdict.reason}")
        else:
            new.update(phase="Pending", reason=verdict.reason, message=verdict.message)
        step.requeue = PENDING_RECHECK
        return
    attempt = _int(new.get("attempts")) + 1
    pod_name = f"{inp.name}-{attempt}"
    step.actions.append(CreatePod(pod_name, new.get("lastCheckpoint")))
    new.update(
        specHash=spec_hash(inp.spec),
        attempts=attempt,
        podName=pod_name,
        phase="Starting",
        reason="PodCreated",
        message=f"created pod {pod_name}"
        + (f", resuming from {new['lastCheckpoint']}" if new.get("lastCheckpoint") else ""),
        nextRestartTime=None,
        command=None,
    )
