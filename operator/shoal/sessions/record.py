"""What a session's status write says, pure: the conditions that follow from the phase, the fields
it clears, and the Event a phase change posts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shoal import conditions
from shoal.api.common import gpu_memory_mapping
from shoal.sessions.steps import STARTING_WELL, Event
from shoal.times import parse_time

# Conditions that say a session's resources are not what it asked for: a Warning Event when one turns False.
RESOURCE_CONDITIONS = ("GpuInUse", "GpuMemoryEnforced")


def complete(
    old: dict[str, Any],
    new: dict[str, Any],
    generation: int | None,
    now: datetime,
    extra: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """`new` with its phase defaulted, observedGeneration, the conditions derived from it, and every
    field of `old` that `new` no longer has set to None: a session's status is replaced, not merged."""
    out = dict(new)
    phase = out["phase"] = out.get("phase") or "Pending"
    out["observedGeneration"] = generation
    out.pop("checkpointAcknowledged", None)  # a step's scratch, not part of the record
    reason, message = out.get("reason") or "", out.get("message") or ""
    conds = [
        conditions.condition("Admitted", phase != "Pending" or reason == "Preempted", reason, message),
        conditions.condition("Running", phase == "Running", reason, message),
    ]
    if out.get("lastCheckpoint"):
        conds.append(conditions.condition("Checkpointed", True, "CheckpointWritten", out["lastCheckpoint"]))
    conds.extend(extra)
    out["conditions"] = conditions.merge(old.get("conditions"), conds, generation, now)
    return {**{k: None for k in old if k not in out}, **out}


def queued_since(status: dict[str, Any]) -> datetime | None:
    """When a waiting session started waiting (for the queue-age gauge); None when it is not waiting."""
    if status.get("phase") != "Pending" or status.get("reason") == "BackoffRestart":
        return None
    admitted = next((c for c in status.get("conditions") or [] if c["type"] == "Admitted"), None)
    return parse_time(admitted["lastTransitionTime"]) if admitted else None


def phase_event(old: dict[str, Any], new: dict[str, Any]) -> Event | None:
    """A phase or reason change is an Event named after the new phase."""
    if old.get("phase", "Pending") == new["phase"] and old.get("reason") == new.get("reason"):
        return None
    trouble = new["phase"] == "Failed" or (
        new["phase"] == "Starting" and new.get("reason") not in STARTING_WELL
    )
    level = "Warning" if trouble else "Normal"
    return Event(level, new["phase"], new.get("message") or new["phase"])


def resource_conditions(
    spec: Mapping[str, Any], metrics: Mapping[str, Any], gpu_memory_resource: str
) -> list[dict[str, Any]]:
    """What became of the session's GPU asks: whether a pod given GPUs trains on one (the trainer
    reports its torch device: SB3's "auto" falls back to the CPU when CUDA does not start), and
    whether gpuMemory reached the pod as a resource or was left out."""
    res = spec.get("resources") or {}
    out = []
    gpus, device = res.get("gpu") or 0, metrics.get("device")
    if gpus and device:
        on_gpu = str(device).startswith("cuda")
        message = (
            f"the trainer runs on {device}"
            if on_gpu
            else f"spec.resources.gpu is {gpus} but the trainer runs on {device}: CUDA did not start in the "
            "pod (no driver or device, or a torch build without CUDA); the trainer's log says why"
        )
        out.append(
            conditions.condition("GpuInUse", on_gpu, "TrainingOnGpu" if on_gpu else "TrainingOnCpu", message)
        )
    mapping = gpu_memory_mapping(res.get("gpuMemory"), gpu_memory_resource)
    if mapping:
        out.append(conditions.condition("GpuMemoryEnforced", *mapping))
    return out


def condition_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """A Warning Event for each resource condition that turned False with this write, once."""
    return [
        Event("Warning", c["reason"], c["message"])
        for c in new.get("conditions") or []
        if c["type"] in RESOURCE_CONDITIONS and conditions.turned_false(old.get("conditions"), c)
    ]
