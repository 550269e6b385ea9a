"""What the session lifecycle reads (Inputs: the observed pod, a claim's outcome) and what it asks
for (the actions of a Step). Plain data, no I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shoal.api.session import TrainingSessionSpec
from shoal.claims.holders import ClaimOutcome as ClaimOutcome
from shoal.sessions.admission import Verdict
from shoal.sessions.progress import stuck_container
from shoal.times import parse_time
from shoal.vocab import ANN_PROGRESS, CONFIG_KEYS

# What the pod is made from: a change to any of them while a pod runs restarts it from its checkpoint.
POD_FIELDS = {
    *CONFIG_KEYS,  # the trainer's config
    *("image", "command", "args", "env", "resources", "poolRef", "nodeSelector", "tolerations", "affinity"),
    *("securityContext", "workers"),
}
# Fields added since sessions first ran, with the value that means "as before": counted only when set
# otherwise, so a pod from before keeps its hash.
LATER_FIELDS: dict[str, Any] = {"securityContext": None, "workers": 1}


PENDING_RECHECK = 3.0  # a waiting session looks again this often


# --- what decide() reads ----------------------------------------------------------------------------------


# A Starting session's reasons that are progress; any other (Unschedulable, a kubelet reason such as
# ErrImagePull) holds the start, and its Event is a Warning.
STARTING_WELL = frozenset({"PodCreated", "PodStarting", "ClaimedWarmPod"})


@dataclass(frozen=True)
class PodState:
    name: str
    uid: str
    phase: str = "Pending"
    ready: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict)
    created: datetime | None = None
    unschedulable: str | None = None  # the scheduler's message, while it cannot place the pod
    # (kubelet reason, message) of a container that waits for something other than its start: an
    # image that cannot be pulled, a config error, a crash loop. It will not start by itself soon, so
    # the session says so at once, not after startTimeoutSeconds.
    stuck: tuple[str, str] | None = None

    @staticmethod
    def of(pod: Mapping[str, Any]) -> PodState:
        meta, st = pod["metadata"], pod.get("status") or {}
        conds = {c.get("type"): c for c in st.get("conditions") or []}
        ready = conds.get("Ready", {}).get("status") == "True"
        sched = conds.get("PodScheduled", {})
        unschedulable = (
            str(sched.get("message") or "no node fits")[:512]
            if sched.get("status") == "False" and sched.get("reason") == "Unschedulable"
            else None
        )
        return PodState(
            meta["name"],
            meta.get("uid", ""),
            st.get("phase", "Pending"),
            ready,
            meta.get("annotations") or {},
            parse_time(meta.get("creationTimestamp")),
            unschedulable,
            stuck_container(st),
        )

    @property
    def progress(self) -> dict[str, Any]:
        try:
            data = json.loads(self.annotations.get(ANN_PROGRESS, "{}"))
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Inputs:
    name: str
    spec: TrainingSessionSpec
    status: Mapping[str, Any]
    pod: PodState | None
    now: datetime
    admission: Verdict | None = None
    claim: ClaimOutcome | None = None


# --- what decide() asks for ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatePod:
    name: str
    resume_from: str | None


@dataclass(frozen=True)
class SendCommand:
    pod: str
    verb: str
    id: int


@dataclass(frozen=True)
class LetGo:
    """A claimed pod goes back to its pool; the session's own pod is deleted (unless `keep`: logs)."""

    pod: str
    uid: str
    to_pool: bool
    keep: bool = False


@dataclass(frozen=True)
class Preempt:
    victim: str


@dataclass(frozen=True)
class EnsureService:
    pass


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


Action = CreatePod | SendCommand | LetGo | Preempt | EnsureService | Event


@dataclass
class Step:
    status: dict[str, Any]
    actions: list[Action] = field(default_factory=list)
    requeue: float | None = None
    needs: str | None = None  # "admission" or "claim": call again with it


def spec_hash(spec: TrainingSessionSpec) -> str:
    fields = {
        k: v
        for k, v in spec.model_dump(mode="json", include=POD_FIELDS).items()
        if k not in LATER_FIELDS or v != LATER_FIELDS[k]
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
