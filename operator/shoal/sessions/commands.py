"""Asking a session's agent for a checkpoint, a pause, a stop or a kill, and letting its pod go once
it answered (or its deadline passed): the part of the lifecycle that talks to a running trainer. Pure,
called by `lifecycle.decide`; it writes into the Step it is given."""

from __future__ import annotations

from typing import Any

from shoal.sessions.steps import PENDING_RECHECK, Event, Inputs, LetGo, PodState, SendCommand, Step
from shoal.times import format_time, parse_time

ENDING = ("pause", "stop", "kill")  # commands after which the pod goes
RESPEC_RECHECK = 0.5  # its status write is no event for the session's own watch (same generation)


def checkpoint_on_demand(inp: Inputs, step: Step, pod: PodState, acked: bool) -> None:
    """spec.checkpointRequest above status.checkpointRequestServed: one checkpoint command, answered
    in status (the request served, the checkpoint's path and time) and by a Checkpointed Event."""
    new, now, deadline = step.status, inp.now, inp.spec.checkpoint.ackDeadlineSeconds
    if new.get("command") == "checkpoint":
        waited = (now - (parse_time(new.get("commandTime")) or now)).total_seconds()
        if acked:
            served = as_int(new.get("checkpointRequestPending"))
            new.update(command=None, checkpointRequestServed=served, checkpointRequestPending=None)
            step.actions.append(
                Event("Normal", "Checkpointed", f"checkpoint request {served}: {new.get('lastCheckpoint')}")
            )
        elif waited >= deadline:  # asked again below, as the request is still unserved
            new.update(command=None, checkpointRequestPending=None)
            step.actions.append(
                Event("Warning", "CheckpointTimeout", f"no checkpoint within {deadline}s; asking again")
            )
        else:
            step.requeue = max(0.5, deadline - waited)
            return
    wanted = inp.spec.checkpointRequest
    if wanted > as_int(new.get("checkpointRequestServed")) and new.get("command") is None:
        new["commandId"] = as_int(new.get("commandId")) + 1
        new.update(command="checkpoint", commandTime=format_time(now), checkpointRequestPending=wanted)
        step.actions.append(SendCommand(pod.name, "checkpoint", new["commandId"]))
        step.requeue = float(deadline)


def stop(inp: Inputs, step: Step, pod: PodState, acked: bool, pod_phase: str, respec: bool = False) -> None:
    """Paused, Stopped, preempted or respecced: checkpoint first (unless stopMode Immediate), then let
    the pod go."""
    new, now, spec = step.status, inp.now, inp.spec
    claimed = bool(new.get("claimedFromPool"))
    immediate = spec.stopMode == "Immediate"
    verb = "kill" if immediate else ("stop" if spec.runState == "Stopped" else "pause")
    why = " to apply the new spec" if respec else ""
    deadline = spec.checkpoint.ackDeadlineSeconds
    if immediate and not claimed:
        # The pod is deleted at once; the `kill` written first tells its agent, when the deletion's
        # SIGTERM arrives, to kill the trainer rather than pass the signal on (which checkpoints).
        new["commandId"] = as_int(new.get("commandId")) + 1
        new.update(command="kill", commandTime=format_time(now))
        step.actions.append(SendCommand(pod.name, "kill", new["commandId"]))
        resume = new.get("lastCheckpoint") or "the beginning"
        let_go(
            inp,
            step,
            pod,
            f"stopped without a checkpoint (stopMode Immediate); resumes from {resume}",
            respec,
        )
        return
    if new.get("command") not in ENDING:
        new["commandId"] = as_int(new.get("commandId")) + 1
        new.update(command=verb, commandTime=format_time(now))
        step.actions.append(SendCommand(pod.name, verb, new["commandId"]))
        new.update(
            phase="Stopping",
            reason="Stopping" if immediate else "Checkpointing",
            message=f"asked the agent to {'stop the trainer' if immediate else 'checkpoint and ' + verb}"
            f"{why} (command {new['commandId']})",
        )
        step.requeue = float(deadline)
        return
    sent = parse_time(new.get("commandTime")) or now
    waited = (now - sent).total_seconds()
    if not acked and pod_phase != "Succeeded" and waited < deadline:
        step.requeue = max(0.5, deadline - waited)
        return
    if new.get("command") == "kill":
        msg = f"stopped without a checkpoint (stopMode Immediate); resumes from {new.get('lastCheckpoint')}"
    elif acked or pod_phase == "Succeeded":
        msg = f"checkpoint acknowledged: {new.get('lastCheckpoint')}"
    else:
        msg = f"no checkpoint acknowledgement within {deadline}s: released anyway"
        step.actions.append(Event("Warning", "CheckpointTimeout", msg))
    let_go(inp, step, pod, msg, respec)


def let_go(inp: Inputs, step: Step, pod: PodState, msg: str, respec: bool = False) -> None:
    new, now, spec = step.status, inp.now, inp.spec
    step.actions.append(LetGo(pod.name, pod.uid, bool(new.get("claimedFromPool"))))
    preempted = new.get("preemptedBy")
    if respec:
        new.update(phase="Pending", reason="SpecChanged", message=f"restarting with the new spec; {msg}")
        step.actions.append(Event("Normal", "SpecChanged", new["message"]))
        step.requeue = RESPEC_RECHECK
    elif spec.runState == "Stopped":
        new.update(phase="Stopped", reason="Stopped", message=msg, endTime=format_time(now))
    elif preempted:
        new.update(
            phase="Pending", reason="Preempted", message=f"paused for {preempted}; {msg}", preemptedBy=None
        )
        step.requeue = PENDING_RECHECK
    else:
        new.update(phase="Paused", reason="Paused", message=msg)
    new.update(podName=None, command=None, claimedFromPool=None, checkpointRequestPending=None)


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
