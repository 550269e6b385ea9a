"""TrainingSession (short name tsess): one ML training run with checkpoints, queueing and warm starts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from shoal.api.common import Condition, Model, NonNegativeInt, PositiveInt, Quantity, cel, validations

RunState = Literal["Running", "Paused", "Stopped"]
Phase = Literal["Pending", "Starting", "Running", "Paused", "Stopping", "Stopped", "Succeeded", "Failed"]


class SessionResources(Model):
    cpu: Quantity | None = None
    memory: Quantity | None = None
    gpu: NonNegativeInt | None = Field(default=None, le=64)
    gpuMemory: Quantity | None = Field(
        default=None, description="Maps to the operator's GPU-memory resource, if configured"
    )
    disk: Quantity | None = Field(default=None, description="Ephemeral storage")


class PoolRef(Model):
    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class RestartPolicy(Model):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.initialBackoffSeconds <= self.maxBackoffSeconds",
                "initialBackoffSeconds must not exceed maxBackoffSeconds",
                ".initialBackoffSeconds",
            ),
        )
    )
    backoffLimit: NonNegativeInt = Field(default=3, le=100)
    initialBackoffSeconds: PositiveInt = Field(default=10, le=3600)
    maxBackoffSeconds: PositiveInt = Field(default=300, le=86400)


class CheckpointSpec(Model):
    size: Quantity = Field(default="1Gi", description="Size of the checkpoint PersistentVolumeClaim")
    storageClassName: str | None = Field(default=None, max_length=253)
    ackDeadlineSeconds: PositiveInt = Field(
        default=120, le=3600, description="How long a pause waits for the checkpoint"
    )


class EnvVar(Model):
    name: str = Field(min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str = Field(default="", max_length=32768)


class TrainingSessionSpec(Model):
    game: str = Field(min_length=1, max_length=128, examples=["CartPole-v1"])
    algorithm: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", examples=["PPO"])
    totalTimesteps: PositiveInt = Field(le=10**12)
    vecEnvs: PositiveInt = Field(default=1, le=1024)
    learningRate: float = Field(default=3e-4, gt=0, le=10)
    checkpointEverySec: PositiveInt = Field(default=300, le=86400)
    videoRecording: bool = False
    image: str = Field(min_length=1, max_length=1024)
    command: list[str] | None = Field(default=None, max_length=64)
    args: list[str] | None = Field(default=None, max_length=256)
    env: list[EnvVar] = Field(default_factory=list, max_length=128)
    resources: SessionResources = Field(default_factory=SessionResources)
    poolRef: PoolRef | None = None
    runState: RunState = "Running"
    priority: int = Field(default=0, ge=-1000000, le=1000000)
    restartPolicy: RestartPolicy = Field(default_factory=RestartPolicy)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)


class TrainingMetrics(Model):
    timesteps: int = Field(default=0, description="Environment steps trained so far")
    episodes: int = Field(default=0, description="Episodes finished so far")
    meanReward: float | None = Field(default=None, description="Mean reward of the last 100 episodes")
    loss: float | None = Field(default=None, description="Last training loss the algorithm logged")
    fps: float | None = Field(default=None, description="Timesteps per second over the last report")
    gpuUtilization: float | None = Field(default=None, description="Mean GPU utilization, percent (NVML)")
    gpuMemoryUsedBytes: int | None = Field(default=None, description="GPU memory in use, bytes (NVML)")
    device: str | None = Field(default=None, description="Where the trainer runs: cpu or cuda")


class Endpoints(Model):
    tensorboard: str | None = None
    video: str | None = None


class TrainingSessionStatus(Model):
    observedGeneration: int | None = None
    phase: Phase = "Pending"
    reason: str | None = None
    message: str | None = None
    podName: str | None = None
    claimedFromPool: str | None = None
    startTime: datetime | None = None
    endTime: datetime | None = None
    restarts: int = 0
    nextRestartTime: datetime | None = None
    lastCheckpoint: str | None = None
    videos: list[str] | None = Field(
        default=None,
        max_length=10,
        description="Recorded episode videos in the checkpoint volume's videos/ folder, newest last",
    )
    progress: str | None = Field(default=None, description="timesteps / totalTimesteps, as a percentage")
    metrics: TrainingMetrics | None = None
    endpoints: Endpoints | None = None
    attempts: int = Field(default=0, description="Pods created for this session so far")
    commandId: int = 0
    command: str | None = Field(
        default=None, description="Last command sent to the agent: checkpoint, pause, stop"
    )
    commandTime: datetime | None = None
    preemptedBy: str | None = None
    conditions: list[Condition] = Field(default_factory=list)


class TrainingSession(Model):
    spec: TrainingSessionSpec
    status: TrainingSessionStatus | None = None


KIND = {
    "kind": "TrainingSession",
    "plural": "trainingsessions",
    "singular": "trainingsession",
    "shortNames": ["tsess"],
    "categories": ["shoal"],
    "model": TrainingSession,
    "printerColumns": [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Game", "type": "string", "jsonPath": ".spec.game"},
        {"name": "Algorithm", "type": "string", "jsonPath": ".spec.algorithm"},
        {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
        {"name": "Reward", "type": "number", "jsonPath": ".status.metrics.meanReward"},
        {"name": "FPS", "type": "number", "jsonPath": ".status.metrics.fps", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}
