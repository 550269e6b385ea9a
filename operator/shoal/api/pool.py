"""ContainerPool (short name cpool): a pool of identical pods with warm capacity."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shoal.api.common import Condition, Model, NonNegativeInt, PositiveInt, Quantity, cel, validations

SelectionStrategy = Literal[
    "LeastRecentlyUsed",
    "RoundRobin",
    "LeastLoaded",
    "ResourceAware",
    "Affinity",
    "LeastConnections",
    "WeightedRoundRobin",
]
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class ContainerTemplate(BaseModel):
    """A container of the pod template; fields other than name and image pass through unchanged."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(
        min_length=1, max_length=63, pattern=DNS_LABEL, description="Container name (a DNS label)"
    )
    image: str = Field(min_length=1, max_length=1024, description="Container image")


class PodSpecTemplate(BaseModel):
    """A pod spec, as in a Deployment's template; Shoal adds a restricted security context when it sets none."""

    model_config = ConfigDict(extra="allow")
    containers: list[ContainerTemplate] = Field(
        min_length=1, max_length=64, description="The pod's containers; resources apply to the first"
    )


class PodTemplate(Model):
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Labels and annotations copied to every pod of the pool"
    )
    spec: PodSpecTemplate = Field(description="The pods' spec")


class Resources(Model):
    """Applied as requests and limits to the first container when that container sets none."""

    cpu: Quantity | None = Field(default=None, description="CPU, e.g. 500m or 2")
    memory: Quantity | None = Field(default=None, description="Memory, e.g. 512Mi or 4Gi")
    gpu: NonNegativeInt | None = Field(default=None, description="GPU count (operator's GPU resource name)")
    ephemeralStorage: Quantity | None = Field(default=None, description="Local scratch disk, e.g. 10Gi")


class Warm(Model):
    """Idle capacity kept ready for claims."""

    minIdle: NonNegativeInt = Field(
        default=0,
        description="Idle, ready pods kept on top of the claimed ones (with claimsPerPod above 1: that many "
        "pods' worth of free slots)",
    )


class Recycle(Model):
    """When pods are replaced; a claimed or busy pod only after its claim ends."""

    maxAgeSeconds: PositiveInt | None = Field(default=None, description="Replace pods older than this")
    maxClaims: PositiveInt | None = Field(default=None, description="Replace pods claimed this many times")
    onUnhealthy: Literal["Replace", "Keep"] = Field(
        default="Replace",
        description="Replace failed, crash-looping or never-ready pods, or keep them for debugging",
    )
    unhealthyAfterSeconds: PositiveInt = Field(
        default=300, description="A pod not ready this long after creation counts as unhealthy"
    )


class SessionAgent(Model):
    """The pool's pods run shoal-agent for the TrainingSessions that claim them (spec.poolRef)."""

    checkpointClaimName: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_LABEL,
        description="A ReadWriteMany PersistentVolumeClaim mounted at /checkpoints in every pod; each "
        "session checkpoints in a directory of its own there, so its checkpoints outlive the pod. "
        "Without it /checkpoints is an emptyDir: a session's checkpoints go with the pod",
    )


class ContainerPoolSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                "minReplicas must be less than or equal to maxReplicas",
                ".minReplicas",
            ),
            cel(
                "!has(self.maxReplicas) || !has(self.warm) || self.warm.minIdle <= self.maxReplicas",
                "warm.minIdle must not exceed maxReplicas",
                ".warm.minIdle",
            ),
            cel(
                "self.claimsPerPod == 1 || !has(self.sessionAgent)",
                "claimsPerPod above 1 shares pods between ContainerClaims; a TrainingSession takes its pod "
                "to itself: set claimsPerPod to 1 or remove sessionAgent",
                ".claimsPerPod",
            ),
        )
    )
    template: PodTemplate = Field(description="The pod template every pod of the pool is made from")
    resources: Resources | None = Field(
        default=None, description="Requests and limits for the first container, when it sets none"
    )
    # Not refused outside [minReplicas, maxReplicas]: a GitOps manifest may leave replicas to its
    # default while minReplicas is higher, and `kubectl scale` may overshoot. The pool runs the
    # clamped size and says so in the ScalingLimited condition.
    replicas: NonNegativeInt = Field(
        default=1,
        description="Target size (the scale subresource writes it); run clamped to [minReplicas, maxReplicas], "
        "with condition ScalingLimited when outside",
    )
    minReplicas: NonNegativeInt = Field(default=0, description="The pool never runs fewer pods than this")
    maxReplicas: NonNegativeInt | None = Field(
        default=None,
        description="The pool never runs more pods than this, claimed ones and warm.minIdle included",
    )
    warm: Warm | None = Field(default=None, description="Warm capacity: idle, ready pods kept for claims")
    recycle: Recycle | None = Field(default=None, description="When pods are replaced")
    selection: SelectionStrategy = Field(
        default="LeastRecentlyUsed",
        description="How a pod is picked for a claim among those with room (idle ones; with claimsPerPod "
        "above 1, claimed ones with a free slot too). LeastConnections: the fewest claims held; "
        "WeightedRoundRobin: claims served in proportion to each pod's shoal.dev/weight (else its CPU request)",
    )
    claimsPerPod: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="How many ContainerClaims one pod serves at once (function and query workers); 1, the "
        "default, is exclusive. Counts, utilization, growth for waiting claims and warm.minIdle count slots",
    )
    sessionAgent: SessionAgent | None = Field(
        default=None,
        description="Pods run shoal-agent (the first container) for the TrainingSessions that claim "
        "them: each pod gets a ServiceAccount whose Role reaches that pod only, the agent's environment "
        "(POD_NAME, POD_NAMESPACE, SHOAL_*) and /shoal and /checkpoints volumes",
    )
    ownPodAccess: bool = Field(
        default=False,
        description="Each pod gets a ServiceAccount of its own whose Role allows get, watch and patch on "
        "that pod only, and POD_NAME and POD_NAMESPACE in its first container: a CI runner's job hooks "
        "can then set shoal.dev/busy on their own pod (never a neighbour's). Implied by sessionAgent",
    )


class ContainerPoolStatus(Model):
    observedGeneration: int | None = Field(default=None, description="The generation this status describes")
    replicas: int = Field(default=0, description="Pods of the pool, starting and deleting ones included")
    desiredReplicas: int = Field(
        default=0, description="Pods the pool wants: max(replicas, claimed + minIdle), clamped"
    )
    readyReplicas: int = Field(default=0, description="Pods that are Ready")
    idleReplicas: int = Field(default=0, description="Ready pods no one has claimed or marked busy")
    claimedReplicas: int = Field(default=0, description="Pods claimed by a session or marked shoal.dev/busy")
    selector: str = Field(
        default="", description="Label selector of the pool's pods (for the scale subresource)"
    )
    claimedSlots: int = Field(
        default=0,
        description="Claims the pods hold (a pod marked shoal.dev/busy holds all of its claimsPerPod); "
        "equals claimedReplicas when claimsPerPod is 1",
    )
    utilization: float = Field(default=0.0, description="claimedSlots / (pods x claimsPerPod)")
    overloadedReplicas: int = Field(
        default=0,
        description="Claimed pods at load 0.9 or more (their shoal.dev/load, else CPU in use over request; "
        "read for the LeastLoaded and ResourceAware selections), labelled shoal.dev/load-state=Overloaded; "
        "the other claimed pods are Healthy",
    )
    waitingClaims: int = Field(
        default=0,
        description="Claims and sessions waiting for a pod of this pool (a scaler's Pool metric reads it)",
    )
    lastScaleTime: datetime | None = Field(default=None, description="When pods were last created or deleted")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Scaling, ScalingLimited and Degraded"
    )


class ContainerPool(Model):
    """A pool of warm, identical pods: kept at spec.replicas (at least claimed + minIdle), handed to sessions and claims that ask for one, given back and recycled after use."""

    spec: ContainerPoolSpec = Field(
        description="What the pool should be: its size, its pods' template, how warm pods are kept, recycled and chosen"
    )
    status: ContainerPoolStatus | None = Field(
        default=None,
        description="What the operator last observed and decided: pod counts by state, the size it wants, the scale subresource's selector and the conditions Ready, Scaling, ScalingLimited and Degraded",
    )


KIND = {
    "kind": "ContainerPool",
    "plural": "containerpools",
    "singular": "containerpool",
    "shortNames": ["cpool"],
    "categories": ["shoal"],
    "model": ContainerPool,
    "scale": {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    },
    "printerColumns": [
        # What the pool decided (spec.replicas raised to claimed + minIdle, clamped), not the request.
        {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
        {"name": "Current", "type": "integer", "jsonPath": ".status.replicas"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Idle", "type": "integer", "jsonPath": ".status.idleReplicas"},
        {"name": "Claimed", "type": "integer", "jsonPath": ".status.claimedReplicas"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}
