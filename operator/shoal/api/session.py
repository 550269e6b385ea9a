"""TrainingSession (short name tsess): one ML training run with checkpoints, queueing and warm starts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from shoal.api.common import Condition, Model, Quantity, cel, validations

RunState = Literal["Running", "Paused", "Stopped"]
Phase = Literal["Pending", "Starting", "Running", "Paused", "Stopping", "Stopped", "Succeeded", "Failed"]


class SessionResources(Model):
    """Requests and limits (equal) of the session's pod."""

    cpu: Quantity | None = Field(default=None, description="CPU, e.g. 4")
    memory: Quantity | None = Field(default=None, description="Memory, e.g. 16Gi")
    gpu: int | None = Field(
        default=None, ge=0, le=64, description="GPU count, as the operator's GPU resource (nvidia.com/gpu)"
    )
    gpuMemory: Quantity | None = Field(
        default=None,
        description="As the operator's GPU-memory resource; with none configured it is not enforced (GpuMemoryEnforced=False)",
    )
    disk: Quantity | None = Field(default=None, description="Ephemeral storage")


class SessionSecurity(Model):
    """Who the session's own pod runs as. Left out: a non-root user the image names, which Pod Security
    "restricted" requires; runAsNonRoot false (for images built to run as root, as many PyTorch images
    are) meets "baseline" instead. Either way the container keeps no capabilities, no privilege
    escalation and the runtime's default seccomp profile."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.runAsUser) || self.runAsUser != 0 || (has(self.runAsNonRoot) && !self.runAsNonRoot)",
                "runAsUser 0 is root: set runAsNonRoot to false as well (the pod then meets Pod Security "
                "baseline, not restricted)",
                ".runAsUser",
            )
        )
    )

    runAsNonRoot: bool = Field(
        default=True,
        description="false lets the image's user (or runAsUser 0) be root: the pod then meets Pod Security "
        "baseline, not restricted, and a namespace that enforces restricted refuses it",
    )
    runAsUser: int | None = Field(default=None, ge=0, le=2**31 - 1, description="The user id to run as")
    runAsGroup: int | None = Field(default=None, ge=0, le=2**31 - 1, description="The primary group id")
    fsGroup: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="Group that owns the checkpoint volume's files"
    )


class PoolRef(Model):
    """A ContainerPool in the session's namespace to claim a warm pod from."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The pool's name",
    )


class Toleration(Model):
    """As a pod's toleration: lets the session's pod onto nodes with a matching taint."""

    key: str | None = Field(default=None, max_length=317, description="The taint key; empty with Exists: all")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal")
    value: str | None = Field(default=None, max_length=63, description="The taint value, with Equal")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint effect to tolerate; empty: all"
    )
    tolerationSeconds: int | None = Field(
        default=None, ge=0, description="With NoExecute: how long the pod stays after the taint appears"
    )


class RestartPolicy(Model):
    """Restarts of a failed pod, from the last checkpoint, with exponential backoff."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.initialBackoffSeconds <= self.maxBackoffSeconds",
                "initialBackoffSeconds must not exceed maxBackoffSeconds",
                ".initialBackoffSeconds",
            ),
        )
    )
    backoffLimit: int = Field(default=3, ge=0, le=100, description="Restarts allowed before Failed")
    initialBackoffSeconds: int = Field(
        default=10, ge=1, le=3600, description="Wait before the first restart; doubles each time"
    )
    maxBackoffSeconds: int = Field(default=300, ge=1, le=86400, description="Longest wait between restarts")


class CheckpointSpec(Model):
    """The session's checkpoint volume, kept across restarts and pauses."""

    size: Quantity | None = Field(
        default=None, description="Size of the checkpoint PersistentVolumeClaim (1Gi if unset)"
    )
    storageClassName: str | None = Field(
        default=None, max_length=253, description="StorageClass of the claim (the cluster default if unset)"
    )
    ackDeadlineSeconds: int = Field(
        default=120, ge=1, le=3600, description="How long a pause waits for the checkpoint"
    )


class EnvVar(Model):
    name: str = Field(
        min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Variable name"
    )
    value: str = Field(default="", max_length=32768, description="Its value")


# What only a pod the session creates can have: a warm pod is already running, placed by its pool.
WARM_REFUSED = (
    cel(
        "has(self.image) || has(self.poolRef)",
        "image is required, unless poolRef names a warm pool (whose pods bring their own)",
        ".image",
    ),
    cel(
        "!has(self.poolRef) || (!has(self.command) && !has(self.args))",
        "command and args cannot reach a warm pod, whose container already runs: set them in the "
        "ContainerPool's template, or drop poolRef",
        ".poolRef",
    ),
    cel(
        "!has(self.poolRef) || (!has(self.nodeSelector) && !has(self.tolerations) && !has(self.affinity))",
        "nodeSelector, tolerations and affinity place a pod the session creates; a warm pod was placed by "
        "its pool: set them in the ContainerPool's template, or drop poolRef",
        ".poolRef",
    ),
    cel(
        "!has(self.poolRef) || !has(self.checkpoint) || "
        "(!has(self.checkpoint.size) && !has(self.checkpoint.storageClassName))",
        "checkpoint.size and checkpoint.storageClassName shape the claim of a pod the session creates; a "
        "warm pod checkpoints to its pool's sessionAgent.checkpointClaimName (or its own emptyDir)",
        ".poolRef",
    ),
    cel(
        "!has(self.poolRef) || !has(self.securityContext)",
        "securityContext shapes a pod the session creates; a warm pod runs as its pool's template says: "
        "set it there, or drop poolRef",
        ".poolRef",
    ),
)
# More than one worker is a gang of the user's own torch program under torchrun (builders/gang.py).
GANG_RULES = (
    cel(
        "!has(self.workers) || self.workers == 1 || has(self.command)",
        "workers > 1 runs your own torch trainer under torchrun (command: [shoal-agent, --, torchrun, ...]): "
        "the built-in Stable-Baselines3 trainer trains on one node only (SB3 has no multi-node training)",
        ".workers",
    ),
    cel(
        "!has(self.workers) || self.workers == 1 || !has(self.poolRef)",
        "workers > 1 starts a gang of pods the session creates; a warm pool's pods each run alone: drop poolRef",
        ".workers",
    ),
)


class TrainingSessionSpec(Model):
    model_config = ConfigDict(json_schema_extra=validations(*WARM_REFUSED, *GANG_RULES))

    game: str = Field(
        min_length=1,
        max_length=128,
        examples=["CartPole-v1"],
        description="A registered gymnasium environment id (ALE/Breakout-v5 and other ALE ids included), or an Atari game's short name (breakout, pong)",
    )
    algorithm: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        examples=["PPO"],
        description="Stable-Baselines3 algorithm: A2C, DDPG, DQN, PPO, SAC or TD3 (any case)",
    )
    totalTimesteps: int = Field(ge=1, le=10**12, description="Environment steps to train for")
    vecEnvs: int = Field(default=1, ge=1, le=1024, description="Environments stepped together")
    learningRate: float = Field(default=3e-4, gt=0, le=10, description="The optimizer's learning rate")
    checkpointEverySec: int = Field(
        default=300,
        ge=1,
        le=86400,
        description="Seconds between periodic checkpoints (also on pause and at the end)",
    )
    videoRecording: bool = Field(
        default=False, description="Serve a live MJPEG stream on :8000 and record episode videos"
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="The trainer image (entrypoint shoal-agent); with poolRef optional, and if given it "
        "must be the image the pool's pods run",
    )
    command: list[str] | None = Field(
        default=None, max_length=64, description="Replaces the image's entrypoint, as in a container"
    )
    args: list[str] | None = Field(default=None, max_length=256, description="Arguments, as in a container")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=128,
        description="Extra environment variables of the trainer (a warm pod's get them with the claim)",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Pods training together, each with resources: more than one runs your own torch trainer "
        "under torchrun, with c10d rendezvous at worker 0, as an Indexed Job admitted as a gang (the "
        "checkpoint claim is then ReadWriteMany)",
    )
    resources: SessionResources = Field(
        default_factory=SessionResources, description="Each pod's resources (each worker's with workers > 1)"
    )
    poolRef: PoolRef | None = Field(
        default=None,
        description="Claim an idle warm pod of this ContainerPool (one with sessionAgent) instead of creating "
        "a pod; the pod must fit resources",
    )
    runState: RunState = Field(
        default="Running",
        description="Running; Paused (checkpoint, then free the pod; Running resumes); Stopped (final)",
    )
    priority: int = Field(
        default=0,
        ge=-1000000,
        le=1000000,
        description="Higher starts first when capacity is short, and may pause lower-priority sessions",
    )
    stopMode: Literal["Checkpoint", "Immediate"] = Field(
        default="Checkpoint",
        description="How Paused, Stopped and a preemption end the pod: Checkpoint (the agent checkpoints "
        "first, within checkpoint.ackDeadlineSeconds) or Immediate (no checkpoint: a resume starts from "
        "the last one)",
    )
    checkpointRequest: int = Field(
        default=0,
        ge=0,
        le=2**31 - 1,
        description="Raise it to ask for a checkpoint now (kubectl patch); status.checkpointRequestServed "
        "says which request the last on-demand checkpoint answered",
    )
    nodeSelector: dict[str, str] | None = Field(
        default=None, max_length=64, description="Node labels the pod requires, as a pod's nodeSelector"
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=64, description="Taints the pod tolerates, as a pod's tolerations"
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="The pod's affinity (nodeAffinity, podAffinity, podAntiAffinity), as in a pod spec",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    securityContext: SessionSecurity | None = Field(
        default=None,
        description="Who the session's own pod runs as (a warm pod's is its pool template's); left out: "
        "non-root, as Pod Security restricted requires",
    )
    startTimeoutSeconds: int = Field(
        default=600,
        ge=10,
        le=86400,
        description="A pod the session creates not running this long after its creation (unschedulable, "
        "image not pulled) counts as a failure: restarted within restartPolicy, then Failed (a warm pod "
        "runs already)",
    )
    restartPolicy: RestartPolicy = Field(default_factory=RestartPolicy, description="Restarts after failures")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Checkpoint storage")


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
    """Addresses of the session's Service."""

    tensorboard: str | None = Field(default=None, description="TensorBoard over the session's event files")
    video: str | None = Field(default=None, description="The live MJPEG stream (videoRecording only)")


class TrainingSessionStatus(Model):
    observedGeneration: int | None = Field(default=None, description="The generation this status describes")
    phase: Phase = Field(
        default="Pending",
        description="Pending (queued), Starting, Running, Stopping, Paused, Stopped, Succeeded or Failed",
    )
    reason: str | None = Field(
        default=None, description="Why the session is in its phase (one CamelCase word)"
    )
    message: str | None = Field(default=None, description="Details for people")
    podName: str | None = Field(
        default=None,
        description="The pod running the session now (with workers > 1: the gang's Indexed Job or TrainJob)",
    )
    workerPods: list[str] | None = Field(
        default=None,
        max_length=64,
        description="With workers > 1: the gang's pods by worker index; worker 0 reports and serves the endpoints",
    )
    readyWorkers: int | None = Field(default=None, description="With workers > 1: how many workers run ready")
    gangKind: Literal["Job", "TrainJob"] | None = Field(
        default=None,
        description="With workers > 1: what runs the gang, chosen as it is made: a Kubeflow Trainer TrainJob "
        "where the cluster serves that kind (paused by suspending it), else an Indexed Job",
    )
    claimedFromPool: str | None = Field(default=None, description="The pool the pod was claimed from")
    startTime: datetime | None = Field(default=None, description="When training first started")
    endTime: datetime | None = Field(default=None, description="When the session ended")
    restarts: int = Field(default=0, description="Restarts after failures so far")
    nextRestartTime: datetime | None = Field(default=None, description="When the backoff ends")
    lastCheckpoint: str | None = Field(
        default=None, description="Path of the latest checkpoint in the volume"
    )
    videos: list[str] | None = Field(
        default=None,
        max_length=10,
        description="Recorded episode videos in the checkpoint volume's videos/ folder, newest last",
    )
    progress: str | None = Field(default=None, description="timesteps / totalTimesteps, as a percentage")
    metrics: TrainingMetrics | None = Field(default=None, description="The agent's last report")
    endpoints: Endpoints | None = Field(default=None, description="TensorBoard and stream addresses")
    attempts: int = Field(default=0, description="Pods created for this session so far")
    checkpointPod: str | None = Field(
        default=None,
        description="The warm pod that wrote lastCheckpoint: on a pool without a shared checkpoint claim "
        "it alone has it, so a resume claims that pod (waiting while it serves another session)",
    )
    lastCheckpointTime: datetime | None = Field(default=None, description="When lastCheckpoint was written")
    specHash: str | None = Field(
        default=None,
        description="Hash of the spec fields the current pod was made from; a change restarts the pod "
        "from its checkpoint (reason SpecChanged)",
    )
    checkpointRequestServed: int = Field(
        default=0, description="The spec.checkpointRequest the last on-demand checkpoint answered"
    )
    checkpointRequestPending: int | None = Field(
        default=None, description="The spec.checkpointRequest the outstanding checkpoint command answers"
    )
    commandId: int = Field(default=0, description="Id of the last command sent to the agent")
    command: str | None = Field(
        default=None, description="Last command sent to the agent: checkpoint, pause, stop, kill"
    )
    commandTime: datetime | None = Field(default=None, description="When the last command was sent")
    preemptedBy: str | None = Field(
        default=None, description="The higher-priority session this one is being paused for"
    )
    conditions: list[Condition] = Field(default_factory=list, description="Admitted, Running, Checkpointed")


class TrainingSession(Model):
    """One reinforcement-learning training run: a pod (its own, or claimed warm from a pool) running the trainer under shoal-agent, with checkpoints, pause and resume, restarts and TensorBoard."""

    spec: TrainingSessionSpec = Field(
        description="What to train (game, algorithm, timesteps), on what resources and image, from which pool, and how to checkpoint, restart and be admitted"
    )
    status: TrainingSessionStatus | None = Field(
        default=None,
        description="The session's phase, its pod and endpoints, training progress and metrics, checkpoints and the conditions of each step",
    )


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
        {"name": "Workers", "type": "integer", "jsonPath": ".spec.workers", "priority": 1},
        {"name": "Ready-Workers", "type": "integer", "jsonPath": ".status.readyWorkers", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}
