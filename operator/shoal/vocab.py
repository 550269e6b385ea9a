"""Every name that crosses a process or object boundary: the labels, annotations, finalizers and
environment variables that the operator, the agent, trainers, pods' own workloads (a runner's job
hook) and users (`kubectl get -l`, `kubectl annotate`) share.

The ground floor: it imports nothing, and every package takes these names from here, so no package
imports another only for a string.
"""

from __future__ import annotations

# --- labels -------------------------------------------------------------------------------------------
# On every pod Shoal creates (pool and session pods): the operator's one pod watch selects on it in
# the API server, so no other pod's event ever reaches the operator.
LABEL_MANAGED = "shoal.dev/managed"
MANAGED = f"{LABEL_MANAGED}=true"
LABEL_POOL = "shoal.dev/pool"  # a pool's pods (its scale subresource's selector)
LABEL_STATE = "shoal.dev/state"  # a pool pod's state, one of STATE_LABELS
LABEL_TEMPLATE_HASH = "shoal.dev/template-hash"  # the pool template a pod was made from
LABEL_SESSION = "shoal.dev/session"  # a session's own pod, or the pool pod it claimed
LABEL_CLAIM = "shoal.dev/claim"  # the pool pod a ContainerClaim holds
LABEL_SCALER_HISTORY = "shoal.dev/scaler-history"  # a scaler's learned demand (a ConfigMap)

# Pod states of the pool's state machine: counted in the pool's status and metrics.
PENDING, WARMING, IDLE, CLAIMED, DRAINING, FAILED = (
    "Pending",
    "Warming",
    "Idle",
    "Claimed",
    "Draining",
    "Failed",
)
STATES = (PENDING, WARMING, IDLE, CLAIMED, DRAINING, FAILED)
# What the LABEL_STATE label says. Pending, Warming and Idle fold into one value: whether an unclaimed
# pod is ready, its Ready condition already tells, and writing each step costs a request per pod (a
# pool's largest cost after creating it). A pod being deleted keeps its label (its deletionTimestamp
# says it is draining).
UNCLAIMED = "Unclaimed"
STATE_LABELS = (UNCLAIMED, CLAIMED, FAILED)
# On a claimed pool pod (a claim holds it or its workload marked it busy): how it bears its load, from
# the pod's own shoal.dev/load or its CPU in use over its request. An unclaimed pod has no such label.
LABEL_LOAD_STATE = "shoal.dev/load-state"
HEALTHY, OVERLOADED = "Healthy", "Overloaded"

# --- annotations of pool pods -------------------------------------------------------------------------
ANN_BUSY = "shoal.dev/busy"  # "true" while the pod's workload runs a job (set by the workload)
ANN_LOAD = "shoal.dev/load"  # the pod's own report of its load (0-1), written by its workload
ANN_WEIGHT = (
    "shoal.dev/weight"  # the pod's capacity against its pool's others (WeightedRoundRobin), by its workload
)
ANN_JOB_OUTCOME = "shoal.dev/job-outcome"  # Succeeded | Failed: set by the job itself (ownPodAccess)
ANN_CLAIMED_BY = "shoal.dev/claimed-by"  # who holds the pod: a session's name or containerclaim/<name>
ANN_CLAIMS = "shoal.dev/claims"  # how many times the pod was claimed (recycle.maxClaims)
ANN_LAST_RELEASED = "shoal.dev/last-released"
ANN_LAST_SIGNATURE = "shoal.dev/last-signature"
ANN_LAST_CLAIMED = "shoal.dev/last-claimed"  # when the pod was last claimed: RoundRobin's cursor
ANN_SIGNATURE = "shoal.dev/signature"  # the holder's job signature, remembered as last-signature on release
ANN_HISTORY = "shoal.dev/history"  # the last jobs the pod served (Affinity)
# Kubernetes' own: the ReplicaSet controller deletes the pods with the lowest cost first.
ANN_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"

# --- annotations the agent and the operator both read or write on the agent's pod ---------------------
ANN_COMMAND = "shoal.dev/command"
ANN_COMMAND_ID = "shoal.dev/command-id"
ANN_PROGRESS = "shoal.dev/progress"
ANN_SESSION_CONFIG = "shoal.dev/session-config"
ANN_RESUME_FROM = "shoal.dev/resume-from"  # on a session: the checkpoint its next pod starts from
ANN_SPEC_HASH = (
    "shoal.dev/spec-hash"  # on a TrainJob: the session spec it was made for (resumed only if unchanged)
)
ANN_STARTED = "shoal.dev/started"  # on a TrainJob: when it was made or last unsuspended (the gang's start)

# --- finalizers -------------------------------------------------------------------------------------
# Earlier versions put this finalizer on every session; it is taken off on sight. Shoal sets no
# finalizer: a session's own pod and objects go by owner references, a pool claim is released by its
# pool when no session holds it, so nothing waits on the operator and an uninstall always finishes.
FORMER_FINALIZER = "shoal.dev/session-cleanup"

# --- environment of the pods Shoal builds, read by the agent and trainers -----------------------------
ENV_POD_NAME = "POD_NAME"
ENV_POD_NAMESPACE = "POD_NAMESPACE"
ENV_WORKDIR = "SHOAL_WORKDIR"
ENV_CHECKPOINT_DIR = "SHOAL_CHECKPOINT_DIR"
ENV_CONFIG_FILE = "SHOAL_CONFIG_FILE"
ENV_RESUME_FROM = "SHOAL_RESUME_FROM"
ENV_GAME = "SHOAL_GAME"
ENV_ALGORITHM = "SHOAL_ALGORITHM"
ENV_STANDBY = "SHOAL_STANDBY"
# A gang (workers > 1): how many, and which this pod is (its agent reports only at index 0).
ENV_WORKERS = "SHOAL_WORKERS"
ENV_WORKER_INDEX = "SHOAL_WORKER_INDEX"
ENV_STANDBY_FD = "SHOAL_STANDBY_FD"  # where a trainer in standby answers the agent (shoal.agent.standby)
# What a claim hands a trainer started in standby: where its session's config and checkpoints are.
HANDED_ENV = (ENV_CONFIG_FILE, ENV_CHECKPOINT_DIR, ENV_RESUME_FROM)

# --- the trainer's config file (ANN_SESSION_CONFIG, ENV_CONFIG_FILE): the keys a session sets -------
CONFIG_KEYS = (
    "game",
    "algorithm",
    "totalTimesteps",
    "vecEnvs",
    "learningRate",
    "checkpointEverySec",
    "videoRecording",
)

# --- the agent's metrics endpoint ---------------------------------------------------------------------
# Every pod whose first container runs shoal-agent (a session's own pod, a sessionAgent pool's pods)
# declares this port by this name; the chart's opt-in PodMonitor scrapes pods by it.
AGENT_METRICS_PORT = 9400
AGENT_METRICS_PORT_NAME = "shoal-metrics"
