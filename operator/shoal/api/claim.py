"""ContainerClaim (short name cclaim): any workload's request for an idle warm pod of a ContainerPool.

A CI dispatcher, a function router or a batch queue creates one, reads `status.podName`/`podIP`
once it is Bound, sends its job there, and deletes the claim to give the pod back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from shoal.api.common import Condition, Model, Quantity, cel, validations
from shoal.api.session import PoolRef

ClaimPhase = Literal["Pending", "Bound", "Expired", "Lost"]
SIGNATURE_KEY = r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$"
MAX_HOLD_SECONDS = 7 * 86400


class ClaimResources(Model):
    """What the job needs of the pod. Devices (GPUs, GPU memory) must be covered by the pod's requests;
    CPU, memory and disk, which a pod may use beyond its request, are weighed by ResourceAware."""

    cpu: Quantity | None = Field(default=None, description="CPU, e.g. 500m or 2")
    memory: Quantity | None = Field(default=None, description="Memory, e.g. 4Gi")
    gpu: int | None = Field(
        default=None, ge=0, le=64, description="GPU count, as the operator's GPU resource (nvidia.com/gpu)"
    )
    gpuMemory: Quantity | None = Field(
        default=None,
        description="As the operator's GPU-memory resource; with none configured it is not fitted (GpuMemoryEnforced=False)",
    )
    disk: Quantity | None = Field(default=None, description="Ephemeral storage")


class ContainerClaimSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.poolRef == oldSelf.poolRef",
                "poolRef cannot change: delete the claim and create one for the other pool",
                ".poolRef",
            ),
            cel(
                "has(self.resources) == has(oldSelf.resources)"
                " && (!has(self.resources) || self.resources == oldSelf.resources)",
                "resources cannot change: the pod was chosen for them",
                ".resources",
            ),
            cel(
                "has(self.signature) == has(oldSelf.signature)"
                " && (!has(self.signature) || self.signature == oldSelf.signature)",
                "signature cannot change: the pod was chosen for it",
                ".signature",
            ),
        )
    )
    poolRef: PoolRef = Field(description="The ContainerPool in this namespace to take an idle pod from")
    resources: ClaimResources | None = Field(
        default=None, description="Only a pod whose requests cover the devices asked for here is handed out"
    )
    signature: dict[str, str] | None = Field(
        default=None,
        max_length=16,
        json_schema_extra={
            "additionalProperties": {"type": "string", "maxLength": 253},
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(k, size(k) <= 63 && k.matches('" + SIGNATURE_KEY + "'))",
                    "message": "signature keys are 1-63 characters: letters, digits, '-', '_', '.', '/'",
                }
            ],
        },
        description="The job's signature (e.g. repo, toolchain): Affinity prefers the pod whose past jobs "
        "had the most similar signatures (then the most successful, then the fastest); kept on the pod "
        "while it is held (shoal.dev/signature) and in its job history after",
    )
    holdSeconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_HOLD_SECONDS,
        description="Give the pod back this long after it was bound, even if the claim is not deleted "
        "(phase Expired); may be changed while bound",
    )


class ContainerClaimStatus(Model):
    observedGeneration: int | None = Field(default=None, description="The generation this status describes")
    phase: ClaimPhase = Field(
        default="Pending",
        description="Pending (waiting for an idle pod), Bound (the pod is the claim's until it is "
        "deleted), Expired (holdSeconds passed: the pod went back), Lost (the pod went away while bound)",
    )
    podName: str | None = Field(default=None, description="The claimed pod")
    podIP: str | None = Field(default=None, description="The claimed pod's IP, to send the job to")
    nodeName: str | None = Field(default=None, description="The node the claimed pod runs on")
    boundTime: datetime | None = Field(default=None, description="When the pod was claimed")
    expiryTime: datetime | None = Field(
        default=None, description="When a hold ends (boundTime + holdSeconds)"
    )
    waitingSince: datetime | None = Field(default=None, description="When the claim started waiting")
    bindMilliseconds: float | None = Field(
        default=None, description="From the claim's creation to its pod being claimed"
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Bound: True when a pod is held; False with NoIdlePod, NoFittingPod, PoolNotFound, "
        "HoldExpired or PodLost",
    )


class ContainerClaim(Model):
    """A request for one warm pod of a ContainerPool: bound to an idle pod that fits, held until the claim is deleted or its holdSeconds run out, then given back to the pool."""

    spec: ContainerClaimSpec = Field(
        description="Which pool to claim from, what the pod must fit (resources), the job's signature for affinity, and how long to hold the pod"
    )
    status: ContainerClaimStatus | None = Field(
        default=None,
        description="The claim's phase, the pod it holds and its address, and the Bound condition saying why it waits",
    )


KIND = {
    "kind": "ContainerClaim",
    "plural": "containerclaims",
    "singular": "containerclaim",
    "shortNames": ["cclaim"],
    "categories": ["shoal"],
    "model": ContainerClaim,
    "printerColumns": [
        {"name": "Pool", "type": "string", "jsonPath": ".spec.poolRef.name"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Pod", "type": "string", "jsonPath": ".status.podName"},
        {"name": "IP", "type": "string", "jsonPath": ".status.podIP"},
        {
            "name": "Reason",
            "type": "string",
            "jsonPath": ".status.conditions[?(@.type=='Bound')].reason",
            "priority": 1,
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}
