"""The operator's own Prometheus metrics (served on /metrics)."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

from shoal.vocab import STATES

RECONCILE_SECONDS = Histogram(
    "shoal_reconcile_duration_seconds",
    "Time spent in one reconcile",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RECONCILE_ERRORS = Counter("shoal_reconcile_errors_total", "Reconciles that raised", ["kind"])
POOL_PODS = Gauge("shoal_pool_pods", "Pods of a pool by state", ["namespace", "pool", "state"])
POOL_DESIRED = Gauge("shoal_pool_desired_replicas", "Desired pods of a pool", ["namespace", "pool"])
POOL_EVENTS = Counter(
    "shoal_pool_pod_changes_total", "Pods created or deleted, by reason", ["action", "reason"]
)
EXPECTATIONS_EXPIRED = Counter(
    "shoal_pool_expectations_expired_total",
    "Pools that planned again before the watch showed their own creates or deletes (the record expired)",
)
POOL_PASSES_HELD = Counter(
    "shoal_pool_passes_held_total",
    "Pool passes that created and deleted nothing because their own earlier writes were not yet seen",
)
SESSION_POD_EVENTS = Counter(
    "shoal_session_pod_events_total",
    "Session pod events by lane: urgent (the lifecycle reads the change) or bookkeeping (metrics only)",
    ["lane"],
)
POD_EVENTS = Counter(
    "shoal_pod_events_total",
    "Pod watch events the operator handled, by the watch (pool, session, claim)",
    ["watch"],
)
POD_WATCH_EVENTS = Counter(
    "shoal_pod_watch_events_total",
    "Pod watch events that reached the operator: ours, or foreign (none with the server-side selector)",
    ["owner"],
)
CLIENT_THROTTLE_SECONDS = Counter(
    "shoal_client_throttle_seconds_total",
    "Seconds API requests waited for the client-side rate limit (SHOAL_KUBE_API_QPS; 0 when off)",
)
API_REQUESTS = Counter(
    "shoal_api_requests_total",
    "API requests the operator's own client sent, by verb and answer code (as client-go's "
    "rest_client_requests_total; kopf's watch connections are not among them)",
    ["method", "code"],
)
QUEUE_DEPTH = Gauge("shoal_workqueue_depth", "Keys waiting in the work queue", ["kind"])
LEADER = Gauge("shoal_leader", "1 while this replica holds the leader lease")
POOL_WAITING = Gauge(
    "shoal_pool_waiting_claims", "Claims and sessions waiting for a pod of a pool", ["namespace", "pool"]
)
POOL_OVERLOADED = Gauge(
    "shoal_pool_overloaded_pods", "Claimed pods of a pool at load 0.9 or more", ["namespace", "pool"]
)


def forget_pool(namespace: str, pool: str) -> None:
    """A deleted pool's series go with it."""
    for state in STATES:
        with contextlib.suppress(KeyError):
            POOL_PODS.remove(namespace, pool, state)
    for gauge in (POOL_DESIRED, POOL_WAITING, POOL_OVERLOADED):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, pool)


SCALER_REPLICAS = Gauge(
    "shoal_scaler_replicas",
    "Current and desired replicas of a scaler's target",
    ["namespace", "scaler", "kind"],
)
SCALER_DECISIONS = Counter("shoal_scaler_scalings_total", "Scalings applied, by reason", ["reason"])
CLAIM_SECONDS = Histogram(
    "shoal_claim_latency_seconds",
    "From a session first seen to bound to a warm pod",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SESSION_START_SECONDS = Histogram(
    "shoal_session_start_stage_seconds",
    "Time a session's start spent in each stage (sessions/starts.py), warm (a pool's pod) or cold",
    ["start", "stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
QUEUE_WAIT_SECONDS = Histogram(
    "shoal_workqueue_wait_seconds",
    "Time a key waited in the work queue before a worker took it",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SOURCE_SECONDS = Histogram(
    "shoal_metric_source_duration_seconds",
    "Time to read one metric",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SOURCE_FAILURES = Counter("shoal_metric_source_failures_total", "Metric reads that failed", ["source"])
SCALER_AT_MAX = Gauge(
    "shoal_scaler_at_max", "1 while a scaler wants more than maxReplicas", ["namespace", "scaler"]
)


def forget_scaler(namespace: str, scaler: str) -> None:
    """A deleted scaler's series go with it (new names under churn would otherwise pile up)."""
    for kind in ("current", "desired"):
        with contextlib.suppress(KeyError):
            SCALER_REPLICAS.remove(namespace, scaler, kind)
    with contextlib.suppress(KeyError):
        SCALER_AT_MAX.remove(namespace, scaler)


SESSION_QUEUED_SINCE = Gauge(
    "shoal_session_queued_since_timestamp_seconds",
    "When a waiting session started waiting",
    ["namespace", "session"],
)


def forget_session(namespace: str, session: str) -> None:
    """A session no longer waiting (admitted, or deleted while queued) has no queued-since series."""
    with contextlib.suppress(KeyError):
        SESSION_QUEUED_SINCE.remove(namespace, session)


# What the leader says of the pools, scalers and sessions it reconciles. A replica that loses the lease
# stops updating them, so it stops exporting them too: with two replicas scraped, only the leader's
# figures are current, and a stale copy would double a sum or hold an alert.
WORKLOAD_GAUGES = (
    POOL_PODS,
    POOL_DESIRED,
    POOL_WAITING,
    POOL_OVERLOADED,
    SCALER_REPLICAS,
    SCALER_AT_MAX,
    SESSION_QUEUED_SINCE,
)


def forget_workloads() -> None:
    for gauge in WORKLOAD_GAUGES:
        gauge.clear()
