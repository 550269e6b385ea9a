"""An agent's progress report as TrainingSession status: metrics, progress, checkpoint, videos."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shoal.times import format_time

MAX_VIDEOS = 10


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
    new["metrics"] = metrics_of(progress)
    steps = new["metrics"].get("timesteps", 0)
    new["progress"] = f"{min(100.0, 100.0 * steps / total):.0f}%"
    last = progress.get("lastCheckpoint") or {}
    if isinstance(last, dict) and last.get("path"):
        new["lastCheckpoint"] = last["path"]
        with contextlib.suppress(TypeError, ValueError, OverflowError, OSError):  # no time, or junk
            new["lastCheckpointTime"] = format_time(datetime.fromtimestamp(float(last.get("time", "")), UTC))
    videos = progress.get("videos")
    if isinstance(videos, list):
        new["videos"] = [str(v)[:253] for v in videos[-MAX_VIDEOS:]] or None
