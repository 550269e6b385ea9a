"""What a warm pool pod can give a TrainingSession, pure. A pod that already runs keeps its image,
command, placement and resources: the CRD's CEL refuses what needs no pool to judge (command, args,
placement, checkpoint storage with poolRef), and `refusal` what needs the pool (an agent to train
with, the image, the resources). The rest of the spec reaches the pod with the claim (`handed`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from shoal.api.pool import ContainerPoolSpec
from shoal.api.session import TrainingSessionSpec
from shoal.claims.selection import ClaimRequest, missing_devices
from shoal.pool.pods import PodView
from shoal.sessions.admission import SessionView
from shoal.times import parse_time

# Reasons of a session its pool can never serve as the spec stands (a False Admitted condition).
REFUSALS = ("NoSessionAgent", "ImageMismatch", "ResourcesUnfit")


def refusal(
    spec: TrainingSessionSpec, pool: ContainerPoolSpec, template: PodView, req: ClaimRequest
) -> tuple[str, str] | None:
    """Why no pod of `pool` (as its template makes them: `template`) can run the session; None: they can."""
    if pool.sessionAgent is None:
        return (
            "NoSessionAgent",
            "its pods run no agent to train with (no spec.sessionAgent): add one to the pool, or drop "
            "the session's poolRef",
        )
    theirs = pool.template.spec.containers[0].image
    if spec.image and spec.image != theirs:
        return (
            "ImageMismatch",
            f"spec.image {spec.image} is not the image its pods run ({theirs}), and a running pod cannot "
            "change its image: drop spec.image, or name a pool of that image",
        )
    short = missing_devices(template, req)
    if short:
        have = dict(template.requests)
        asked = ", ".join(f"{k} {v}" for k, v in sorted(short.items()))
        offered = ", ".join(f"{k} {have.get(k, 'none')}" for k in sorted(short))
        return (
            "ResourcesUnfit",
            f"spec.resources asks for {asked}; its pods have {offered}, and a running pod's resources "
            "cannot change",
        )
    return None


def pinned(pool: ContainerPoolSpec, checkpoint_pod: str | None) -> str | None:
    """The pod a resuming session must claim while it exists: the one whose emptyDir holds its
    checkpoint. None on a pool whose checkpoints are on a shared claim (any pod reads them)."""
    shared = pool.sessionAgent is not None and pool.sessionAgent.checkpointClaimName
    return None if shared else checkpoint_pod


ACTIVE = ("Starting", "Running", "Stopping")


class PoolTurns(NamedTuple):
    """What a warm session's turn at its pool depends on, from the watches (Claimer.pool_turns)."""

    idle: int
    can_grow: bool
    pins: bool  # its pods keep checkpoints to themselves: a resume waits for its own pod
    holders: frozenset[str] = frozenset()  # the sessions holding its pods, as the pods say


def queue_at(
    sessions: list[dict[str, Any]],
    me: str,
    pool: str,
    pins: bool,
    now: datetime,
    holders: frozenset[str] = frozenset(),
) -> tuple[list[SessionView], list[SessionView]]:
    """The other sessions of a namespace that wait for a pod of `pool` (their turn comes by priority,
    then age) and those holding one (preemptible when of lower priority). Not waiting in turn: those
    the pool refused, those in backoff, and (`pins`: checkpoints stay on their pod) a resume held to
    the pod with its checkpoint. `holders` (the pool's pods' holders) hold, whatever their status says
    yet."""
    waiting, holding = [], []
    for obj in sessions:
        meta, st = obj.get("metadata") or {}, obj.get("status") or {}
        if meta.get("name") == me:
            continue
        # Read raw, not validated: this runs over every session of the namespace on each turn asked.
        spec = obj.get("spec") or {}
        try:
            priority = int(spec.get("priority") or 0)
        except (TypeError, ValueError):
            continue
        created = parse_time(meta.get("creationTimestamp"))
        view = SessionView(
            str(meta.get("name")),
            priority,
            created.timestamp() if created else 0.0,
            {},
            preempting=bool(st.get("preemptedBy")),
        )
        if view.name in holders or (st.get("claimedFromPool") == pool and st.get("phase") in ACTIVE):
            holding.append(view)
            continue
        restart_at = parse_time(st.get("nextRestartTime"))
        if (
            (spec.get("poolRef") or {}).get("name") == pool
            and spec.get("runState", "Running") == "Running"
            and st.get("phase", "Pending") == "Pending"
            and st.get("reason") not in (*REFUSALS, "PoolNotFound")
            and not (restart_at and restart_at > now)
            and not (pins and st.get("checkpointPod") and st.get("lastCheckpoint"))
        ):
            waiting.append(view)
    return waiting, holding
