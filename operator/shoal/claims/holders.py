"""Who holds a pool pod, and the patches that claim and release it: plain data, no IO.

Two kinds hold pool pods through the same machinery (reconcile/claimer.py): a TrainingSession with
`poolRef` and a ContainerClaim (any workload's request for a warm pod). The pod says who holds it in
`shoal.dev/claimed-by` (a session's name, or `containerclaim/<name>`: names cannot contain a slash,
so the two never collide) and in a label a selector can use (`shoal.dev/session` or `shoal.dev/claim`).
A pod of a pool with claimsPerPod above 1 is shared by ContainerClaims: its `shoal.dev/claimed-by`
lists them, separated by commas, and no holder label names one of them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shoal.pool.jobs import signature_text as signature_text
from shoal.pool.jobs import with_job
from shoal.pool.pods import PodView, holders_of
from shoal.times import format_time
from shoal.vocab import (
    ANN_CLAIMED_BY,
    ANN_CLAIMS,
    ANN_COMMAND,
    ANN_COMMAND_ID,
    ANN_HISTORY,
    ANN_JOB_OUTCOME,
    ANN_LAST_CLAIMED,
    ANN_LAST_RELEASED,
    ANN_LAST_SIGNATURE,
    ANN_PROGRESS,
    ANN_SESSION_CONFIG,
    ANN_SIGNATURE,
    CLAIMED,
    HEALTHY,
    LABEL_CLAIM,
    LABEL_LOAD_STATE,
    LABEL_SESSION,
    LABEL_STATE,
    UNCLAIMED,
)

CLAIM_PREFIX = "containerclaim/"
FINAL_SESSION = ("Succeeded", "Failed", "Stopped")
FINAL_CLAIM = ("Expired", "Lost")

HolderKind = Literal["TrainingSession", "ContainerClaim"]
SESSION: HolderKind = "TrainingSession"
CONTAINER_CLAIM: HolderKind = "ContainerClaim"


@dataclass(frozen=True)
class Holder:
    kind: HolderKind
    name: str

    @property
    def claimed_by(self) -> str:
        return self.name if self.kind == SESSION else CLAIM_PREFIX + self.name

    @property
    def label(self) -> str:
        return LABEL_SESSION if self.kind == SESSION else LABEL_CLAIM


@dataclass(frozen=True)
class ClaimOutcome:
    pod: str | None  # the claimed pod, None when no idle pod (or no pool)
    pool: str
    reason: str = "NoIdlePod"  # why not, when pod is None: NoIdlePod | NoFittingPod | PoolNotFound
    latency_ms: float = 0.0
    message: str = ""  # the details of NoFittingPod
    pod_ip: str | None = None
    node: str | None = None


def holder_of(claimed_by: str) -> Holder:
    if claimed_by.startswith(CLAIM_PREFIX):
        return Holder(CONTAINER_CLAIM, claimed_by[len(CLAIM_PREFIX) :])
    return Holder(SESSION, claimed_by)


def claim_patch(
    pod: PodView,
    resource_version: str,
    holder: Holder,
    signature: str | None,
    annotations: Mapping[str, str | None],
    now: datetime,
    shared: bool = False,
) -> dict[str, Any]:
    """The merge patch that claims `pod` for `holder`; `annotations`: what the holder hands the pod;
    `shared`: the pool's pods serve several claims at once (claimsPerPod above 1)."""
    labels = {LABEL_STATE: CLAIMED} if shared else {LABEL_STATE: CLAIMED, holder.label: holder.name}
    if not pod.claimed:
        labels[LABEL_LOAD_STATE] = HEALTHY  # in the claim's own write; the pool corrects it by live load
    if holder.claimed_by in pod.holders:
        # Adopting a claim made earlier (its record lost): whatever runs in the pod may be working
        # already, so what it was handed stays. Guarded all the same: a view older than a release
        # and someone else's claim must not take the pod back (the claimer re-reads on a 409).
        return {"metadata": {"resourceVersion": resource_version, "labels": labels}}
    if pod.holders:  # joining the claims a shared pod serves: what it runs for them stays
        joined = {
            ANN_CLAIMED_BY: ",".join((*pod.holders, holder.claimed_by)),
            ANN_CLAIMS: str(pod.claims + 1),
            ANN_LAST_CLAIMED: format_time(now),
            **annotations,
        }
        return {"metadata": {"resourceVersion": resource_version, "labels": labels, "annotations": joined}}
    return {
        "metadata": {
            "resourceVersion": resource_version,  # lose the race cleanly, never double-claim
            "labels": labels,
            "annotations": {
                ANN_CLAIMED_BY: holder.claimed_by,
                ANN_CLAIMS: str(pod.claims + 1),
                ANN_LAST_CLAIMED: format_time(now),
                ANN_SIGNATURE: signature,
                ANN_COMMAND: None,
                ANN_COMMAND_ID: None,
                ANN_PROGRESS: None,
                **annotations,
            },
        }
    }


def leave_patch(
    pod: PodView,
    leaving: Collection[str],
    now: datetime,
    signature: str | None = None,
    ok: bool | None = None,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """The holders `leaving` (claimed-by values) give `pod` back: the whole release when no one else
    holds it, else their names off the shared pod, with the job into its history (its duration
    counted from the pod's latest claim, which a shared pod's holders share). Guarded like a release."""
    staying = [h for h in pod.holders if h not in leaving]
    if not staying:
        return release_patch(now, signature, pod, ok, resource_version)
    annotations: dict[str, str | None] = {
        ANN_CLAIMED_BY: ",".join(staying),
        ANN_LAST_RELEASED: format_time(now),
    }
    if signature:
        _add_job(annotations, pod, signature, ok, now)
    return _guarded({"annotations": annotations}, resource_version)


def _add_job(
    annotations: dict[str, str | None], pod: PodView, signature: str, ok: bool | None, now: datetime
) -> None:
    """The job a holder ran, into the pod's history (Affinity): `ok` as the holder's end says, else what
    the job said of itself on the pod (shoal.dev/job-outcome)."""
    told = ok if ok is not None else pod.job_outcome
    history = with_job(pod.history, signature, told, pod.last_claimed, now)
    if history:
        annotations[ANN_HISTORY] = history


def _guarded(meta: dict[str, Any], resource_version: str | None) -> dict[str, Any]:
    """A patch of `meta`, guarded by the pod's resourceVersion when one is given."""
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"metadata": meta}


def release_patch(
    now: datetime,
    signature: str | None = None,
    pod: PodView | None = None,
    ok: bool | None = None,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """Back to the pool, clean: no holder label, config, command, progress or signature left. With the
    pod as it is (`pod`), the job is added to its history: `ok` as the holder's end says, else what the
    job said of itself on the pod (shoal.dev/job-outcome). `resource_version`: of the pod as read, so
    a release decided on a read older than someone else's claim fails (409) instead of undoing it."""
    annotations: dict[str, str | None] = {
        ANN_CLAIMED_BY: None,
        ANN_LAST_RELEASED: format_time(now),
        ANN_SESSION_CONFIG: None,
        ANN_PROGRESS: None,
        ANN_COMMAND: None,
        ANN_COMMAND_ID: None,
        ANN_SIGNATURE: None,
        ANN_JOB_OUTCOME: None,
    }
    labels: dict[str, str | None] = {LABEL_SESSION: None, LABEL_CLAIM: None, LABEL_LOAD_STATE: None}
    if pod is not None and not pod.deleting and not pod.busy and pod.phase not in ("Failed", "Succeeded"):
        labels[LABEL_STATE] = UNCLAIMED  # what the pool would relabel it to next: one write, not two
    if signature:
        annotations[ANN_LAST_SIGNATURE] = signature
        if pod is not None:
            _add_job(annotations, pod, signature, ok, now)
    return _guarded({"labels": labels, "annotations": annotations}, resource_version)


def held_signature(pod: Mapping[str, Any]) -> str | None:
    """The job signature of whoever holds `pod`: what Affinity remembers of a claim given back after
    its holder is gone. Pods claimed before the signature annotation existed: from the session config."""
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    if ann.get(ANN_SIGNATURE):
        return str(ann[ANN_SIGNATURE])
    try:
        config = json.loads(ann.get(ANN_SESSION_CONFIG) or "{}")
    except ValueError:
        return None
    if not isinstance(config, dict) or not config.get("game") or not config.get("algorithm"):
        return None
    return signature_text({"game": str(config["game"]), "algorithm": str(config["algorithm"])})


def stranded_holders(
    claims: Mapping[str, str],
    sessions: list[dict[str, Any]],
    container_claims: list[dict[str, Any]] | None = None,
) -> dict[str, list[str]]:
    """Per pod (of `claims`: pod -> claimed-by), the holders no live holder object stands behind any
    more: the holder is gone or finished, holds another pod, or (a session) holds none and does not
    want to run. One that wants a pod and holds none adopts its claim on its next pass (its claim
    landed, its status write did not, or not yet): that claim stays."""

    def live(items: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
        return {o["metadata"]["name"]: o for o in items or [] if not o["metadata"].get("deletionTimestamp")}

    by_kind = {SESSION: live(sessions), CONTAINER_CLAIM: live(container_claims)}
    out: dict[str, list[str]] = {}
    for pod, claimed_by in sorted(claims.items()):
        for each in holders_of(claimed_by):
            holder = holder_of(each)
            obj = by_kind[holder.kind].get(holder.name)
            st = (obj or {}).get("status") or {}
            holds = st.get("podName")
            if holder.kind == SESSION:
                finished = st.get("phase") in FINAL_SESSION
                wants = ((obj or {}).get("spec") or {}).get("runState", "Running") == "Running"
            else:
                finished, wants = st.get("phase") in FINAL_CLAIM, True
            if obj is None or finished or (holds and holds != pod) or (not holds and not wants):
                out.setdefault(pod, []).append(each)
    return out


def stranded(
    claims: Mapping[str, str],
    sessions: list[dict[str, Any]],
    container_claims: list[dict[str, Any]] | None = None,
) -> list[str]:
    """The pods (of `claims`) with a holder no live holder object stands behind (stranded_holders)."""
    return sorted(stranded_holders(claims, sessions, container_claims))
