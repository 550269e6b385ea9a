"""An agent's progress report as TrainingSession status: metrics, progress, checkpoint, videos."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shoal.times import format_time

MAX_VIDEOS = 10
# What a report says of training so far, as opposed to what the session's lifecycle acts on (an
# acknowledgement, an exit, an error, a checkpoint, the first report at all).
METRIC_KEYS = ("timesteps", "episodes", "meanReward", "loss", "fps", "gpu", "device", "times")


# What a container waits with while it is being started: progress, not a problem.
STARTING = frozenset({"ContainerCreating", "PodInitializing"})


def stuck_container(status: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first (init) container waiting with a kubelet reason that is not progress."""
    for c in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (c.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason and reason not in STARTING:
            why = f"container {c.get('name')} {reason}" + (
                f": {waiting['message']}" if waiting.get("message") else ""
            )
            return str(reason), why[:512]
    return None


def lifecycle_view(pod: Mapping[str, Any], progress_annotation: str) -> tuple[Any, ...]:
    """What of a session's pod its lifecycle reads: a pod event that changes only the metrics of its
    progress report is bookkeeping (its reconcile may wait behind new sessions), any other is not."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ann = dict(meta.get("annotations") or {})
    raw = ann.pop(progress_annotation, None)
    try:
        progress = json.loads(raw) if raw else None
    except ValueError:
        progress = raw
    if isinstance(progress, dict):
        progress = json.dumps({k: v for k, v in progress.items() if k not in METRIC_KEYS}, sort_keys=True)
    conditions = sorted(
        (str(c.get("type")), str(c.get("status")), str(c.get("reason")))
        for c in status.get("conditions") or []
    )
    return (
        meta.get("uid"),
        meta.get("deletionTimestamp"),
        status.get("phase"),
        tuple(conditions),
        json.dumps(ann, sort_keys=True),
        progress,
        stuck_container(status),  # a container the kubelet holds (ErrImagePull while still Pending)
    )


def metrics_of(progress: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's report as status.metrics: numbers only, each kept only when reported."""

    def num(key: str, cast: Any = float) -> Any:
        value = progress.get(key)
        try:
            return None if value is None else cast(value)
        except (TypeError, ValueError):
            return None

    gpus = [g for g in progress.get("gpu") or [] if isinstance(g, dict)]
    out = {
        "timesteps": num("timesteps", int) or 0,
        "episodes": num("episodes", int) or 0,
        "meanReward": num("meanReward"),
        "loss": num("loss"),
        "fps": num("fps"),
        "gpuUtilization": round(sum(float(g.get("utilization", 0)) for g in gpus) / len(gpus), 1)
        if gpus
        else None,
        "gpuMemoryUsedBytes": int(sum(float(g.get("memoryUsed", 0)) for g in gpus)) if gpus else None,
        "device": str(progress["device"])[:32] if progress.get("device") else None,
    }
    return {k: v for k, v in out.items() if v is not None}


def apply_progress(new: dict[str, Any], progress: Mapping[str, Any], total: int) -> None:
    if "timesteps" in progress or not new.get("metrics"):
        # A report without training figures (an agent that refused the claim, a trainer not yet
        # started) keeps those of the last one: a resumed session never shows a false step 0.
        new["metrics"] = metrics_of(progress)
        steps = new["metrics"].get("timesteps", 0)
        # Rounded down, as a progress bar: 100% only once every step is done (99.6% rounded was 100%).
        new["progress"] = f"{min(100, int(100 * steps // total))}%"
    last = progress.get("lastCheckpoint") or {}
    if isinstance(last, dict) and last.get("path"):
        new["lastCheckpoint"] = last["path"]
        with contextlib.suppress(TypeError, ValueError, OverflowError, OSError):  # no time, or junk
            new["lastCheckpointTime"] = format_time(datetime.fromtimestamp(float(last.get("time", "")), UTC))
    videos = progress.get("videos")
    if isinstance(videos, list):
        new["videos"] = [str(v)[:253] for v in videos[-MAX_VIDEOS:]] or None
