"""ContainerPool (short name cpool): a pool of identical pods with warm capacity."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shoal.api.common import Condition, Model, NonNegativeInt, PositiveInt, Quantity, cel, validations

SelectionStrategy = Literal["LeastRecentlyUsed", "RoundRobin", "LeastLoaded", "ResourceAware", "Affinity"]
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class ContainerTemplate(BaseModel):
    """A container of the pod template; fields other than name and image pass through unchanged."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    image: str = Field(min_length=1, max_length=1024)


class PodSpecTemplate(BaseModel):
    model_config = ConfigDict(extra="allow")
    containers: list[ContainerTemplate] = Field(min_length=1, max_length=64)


class PodTemplate(Model):
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: PodSpecTemplate


class Resources(Model):
    """Applied as requests and limits to the first container when that container sets none."""

    cpu: Quantity | None = None
    memory: Quantity | None = None
    gpu: NonNegativeInt | None = Field(default=None, description="GPU count (operator's GPU resource name)")
    ephemeralStorage: Quantity | None = None


class Warm(Model):
    minIdle: NonNegativeInt = Field(default=0, description="Idle, ready pods kept on top of the claimed ones")


class Recycle(Model):
    maxAgeSeconds: PositiveInt | None = Field(default=None, description="Replace pods older than this")
    maxClaims: PositiveInt | None = Field(default=None, description="Replace pods claimed this many times")
    onUnhealthy: Literal["Replace", "Keep"] = Field(
        default="Replace",
        description="Replace failed, crash-looping or never-ready pods, or keep them for debugging",
    )
    unhealthyAfterSeconds: PositiveInt = Field(
        default=300, description="A pod not ready this long after creation counts as unhealthy"
    )


class ContainerPoolSpec(Model):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                "minReplicas must be less than or equal to maxReplicas",
                ".minReplicas",
            ),
            cel("self.replicas >= self.minReplicas", "replicas must be at least minReplicas", ".replicas"),
            cel(
                "!has(self.maxReplicas) || self.replicas <= self.maxReplicas",
                "replicas must not exceed maxReplicas",
                ".replicas",
            ),
            cel(
                "!has(self.maxReplicas) || !has(self.warm) || self.warm.minIdle <= self.maxReplicas",
                "warm.minIdle must not exceed maxReplicas",
                ".warm.minIdle",
            ),
        )
    )
    template: PodTemplate
    resources: Resources | None = None
    replicas: NonNegativeInt = Field(default=1, description="Target size; the scale subresource writes it")
    minReplicas: NonNegativeInt = 0
    maxReplicas: NonNegativeInt | None = None
    warm: Warm | None = None
    recycle: Recycle | None = None
    selection: SelectionStrategy = Field(
        default="LeastRecentlyUsed", description="How an idle pod is picked for a claim"
    )


class ContainerPoolStatus(Model):
    observedGeneration: int | None = None
    replicas: int = 0
    desiredReplicas: int = 0
    readyReplicas: int = 0
    idleReplicas: int = 0
    claimedReplicas: int = 0
    selector: str = ""
    utilization: float = Field(default=0.0, description="Claimed pods / pods")
    lastScaleTime: datetime | None = None
    conditions: list[Condition] = Field(default_factory=list)


class ContainerPool(Model):
    """The kind as a whole, as crdgen renders it."""

    spec: ContainerPoolSpec
    status: ContainerPoolStatus | None = None


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
        {"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Idle", "type": "integer", "jsonPath": ".status.idleReplicas"},
        {"name": "Claimed", "type": "integer", "jsonPath": ".status.claimedReplicas"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}
