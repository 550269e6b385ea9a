"""Types shared by the kinds: quantities, conditions, and the schema hooks crdgen reads."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

# Kubernetes' quantity grammar without a sign: negative resources are never meaningful here.
QUANTITY_PATTERN = (
    r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def _check_quantity(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("must be a quantity such as 500m, 2 or 4Gi")
    text = str(value)
    if not _QUANTITY_RE.match(text):
        raise ValueError(f"{text!r} is not a valid quantity (examples: 500m, 2, 4Gi)")
    return text


def parse_quantity(text: str | int | float) -> Decimal:
    """The numeric value of a Kubernetes quantity ('500m' -> 0.5, '1Ki' -> 1024)."""
    s = _check_quantity(text)
    for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"):
        if s.endswith(suffix) and not re.search(r"[eE][+-]?[0-9.]*$", s):
            return Decimal(s[: -len(suffix)]) * _SUFFIX[suffix]
    return Decimal(s)


def quantity(text: str | None) -> float | None:
    """An optional quantity field as a float; None when unset."""
    return float(parse_quantity(text)) if text is not None else None


# Accepts `cpu: 2` as well as `cpu: "500m"`, as Kubernetes resource fields do.
Quantity = Annotated[
    str,
    BeforeValidator(_check_quantity),
    # The only anyOf a structural schema allows; `pattern` applies to the string form only.
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-validations": [
                {"rule": "type(self) != int || self >= 0", "message": "must not be negative"}
            ],
        }
    ),
]


class Model(BaseModel):
    """Base for API objects: camelCase fields as written in YAML, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Condition(Model):
    """A Kubernetes-style condition: the state of one aspect of the object, and why."""

    type: str = Field(description="What the condition is about (Ready, Scaling, ScalingActive, ...)")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown")
    reason: str = Field(default="", description="One CamelCase word: why the status is what it is")
    message: str = Field(default="", description="Details for people")
    lastTransitionTime: datetime | None = Field(default=None, description="When the status last changed")
    observedGeneration: int | None = Field(
        default=None, description="The metadata.generation this condition was computed from"
    )


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """An x-kubernetes-validations entry: the API server evaluates it and answers `message`."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


# For fields with no bounds of their own: the alias's ge/le win over a Field()'s (pydantic), so a
# field with its own bounds is a plain int with all of them (tests/unit/test_api.py checks).
PositiveInt = Annotated[int, Field(ge=1, le=2**31 - 1)]
NonNegativeInt = Annotated[int, Field(ge=0, le=2**31 - 1)]


class Wants(Protocol):
    """What a session or a ContainerClaim asks for (SessionResources, ClaimResources)."""

    cpu: str | None
    memory: str | None
    gpu: int | None
    gpuMemory: str | None
    disk: str | None


def gpu_memory_mapping(gpu_memory: str | None, gpu_memory_resource: str) -> tuple[bool, str, str] | None:
    """What became of a `resources.gpuMemory` ask, as a GpuMemoryEnforced condition (status, reason,
    message): requested as the operator's GPU-memory resource, or left out because it has none.
    None when nothing was asked."""
    if not gpu_memory:
        return None
    if gpu_memory_resource:
        return True, "MappedToResource", f"requested as {gpu_memory_resource}: {gpu_memory}"
    return (
        False,
        "NoGpuMemoryResource",
        f"spec.resources.gpuMemory {gpu_memory} is not enforced: the operator has no GPU-memory resource "
        "to request it as (Helm value gpu.memoryResource, SHOAL_GPU_MEMORY_RESOURCE)",
    )


def resource_names(r: Wants, gpu_resource: str, gpu_memory_resource: str = "") -> dict[str, str]:
    """Kubernetes resource names and quantities, with the operator's names for GPUs and GPU memory."""
    out: dict[str, str | None] = {"cpu": r.cpu, "memory": r.memory, "ephemeral-storage": r.disk}
    if r.gpu:
        out[gpu_resource] = str(r.gpu)
    if r.gpuMemory and gpu_memory_resource:
        out[gpu_memory_resource] = r.gpuMemory
    return {k: v for k, v in out.items() if v is not None}
