"""What a claim hands a warm pod's agent (the session-config annotation), and what the agent checks
before it starts a trainer on it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.agent.checkpoints import CheckpointError


@dataclass(frozen=True)
class Handover:
    config: dict[str, Any]  # the trainer's config (protocol.CONFIG_KEYS)
    checkpoints: Path  # this session's directory under the pod's checkpoint volume
    resume_from: str | None  # the checkpoint the session last recorded, if any
    env: dict[str, str] = field(default_factory=dict)  # the session's spec.env, for its trainer only

    @staticmethod
    def of(annotation: str, pod_checkpoints: Path, session: str) -> Handover:
        body = json.loads(annotation)
        env = body.pop("env", None) or {}
        resume = body.pop("resumeFrom", None)
        # A directory per session: the next session in this pod must not resume this one's checkpoint.
        return Handover(body, pod_checkpoints / session, str(resume) if resume else None, dict(env))


def unreachable(resume_from: str | None, volume: Path, warm: bool) -> CheckpointError | None:
    """A checkpoint to resume from that is not on this pod's checkpoint `volume`: starting anyway would
    train from step 0 as if nothing were lost, so the session fails with this instead. Only a path
    is judged (a trainer may name its checkpoints otherwise, as a URL: that is its own business), and
    only on the volume, since that is all a pod can see of another's files."""
    if not resume_from or not resume_from.startswith("/"):
        return None
    path = Path(resume_from)
    if path.resolve().is_relative_to(volume.resolve()) and path.exists():
        return None
    why = (
        "a warm pool without sessionAgent.checkpointClaimName keeps each session's checkpoints on the pod "
        "that wrote them, which is gone or serving another session; give the pool a ReadWriteMany claim "
        "so checkpoints outlive their pod"
        if warm
        else "the session's checkpoint claim no longer holds it (deleted and made anew?)"
    )
    return CheckpointError(
        "CheckpointUnreachable", f"the checkpoint to resume from, {resume_from}, is not on this pod: {why}"
    )
