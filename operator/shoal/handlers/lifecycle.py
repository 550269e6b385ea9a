"""Operator start-up and shutdown."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from prometheus_client import start_http_server

from shoal import telemetry
from shoal.config import Settings
from shoal.handlers.pods import watch_pods
from shoal.handlers.storage import NoDiffBase, NoProgress
from shoal.k8s.client import Kube, load_config
from shoal.k8s.ratelimit import TokenBucket
from shoal.reconcile.claim import ClaimReconciler
from shoal.reconcile.pool import PoolReconciler
from shoal.reconcile.poolpods import prime as prime_pool_cache
from shoal.reconcile.scaler import ScalerReconciler
from shoal.reconcile.session import SessionReconciler
from shoal.runtime import operator
from shoal.sources import default_sources

log = logging.getLogger("shoal")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    cfg = Settings.from_env()
    settings.posting.level = logging.WARNING
    settings.persistence.diffbase_storage = NoDiffBase()  # only event handlers: nothing to diff
    settings.persistence.progress_storage = NoProgress()
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    # Per worker: its requests and a claim's; plus the pod creators (reconcile/pool.WRITERS).
    kube = Kube(load_config(pool_size=cfg.workers * 3 + cfg.claim_workers + 12), async_events=True)
    if cfg.kube_api_qps > 0:
        burst = cfg.kube_api_burst or max(1, round(cfg.kube_api_qps * 1.5))
        kube.limiter = TokenBucket(cfg.kube_api_qps, burst)
    runtime = operator.OperatorRuntime(cfg, kube)
    sessions = SessionReconciler(kube, cfg, index=runtime.index, pods=runtime.session_pods)
    runtime.register("TrainingSession", "trainingsessions", sessions.reconcile, relevant=sessions.relevant)
    claims = ClaimReconciler(kube, cfg, index=runtime.index)
    pools = PoolReconciler(
        kube,
        cfg,
        index=runtime.index,
        claims_cache=claims.cached,
        sessions_cache=sessions.cached,
        usage=claims.claimer.usage,  # one read of a pool's pod metrics per 5 s serves both
    )
    runtime.primer = lambda: prime_pool_cache(kube, runtime.index, cfg.namespaces)
    runtime.register("ContainerPool", "containerpools", pools.reconcile)
    runtime.register(
        "ContainerClaim",
        "containerclaims",
        claims.reconcile,
        relevant=claims.relevant,
        workers=cfg.claim_workers,
    )
    scalers = ScalerReconciler(
        kube, cfg, default_sources(cfg.prometheus, runtime.index.pool_view), pools=runtime.index.pool_view
    )
    runtime.register("WorkerScaler", "workerscalers", scalers.reconcile, relevant=scalers.relevant)
    operator.install(runtime)
    for owner in ("shoal", "foreign"):
        telemetry.POD_WATCH_EVENTS.labels(owner)  # zero from the start, for rate() and alerts
    for source in ("Resource", "Prometheus"):
        telemetry.SOURCE_FAILURES.labels(source)
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port)
    runtime.start()
    runtime.reflectors = watch_pods(kube, cfg.namespaces)
    log.info(
        "shoal started: namespaces=%s workers=%d leader_election=%s",
        ",".join(cfg.namespaces) or "*",
        cfg.workers,
        cfg.leader_election,
    )


@kopf.on.probe(id="shoal")
def health(**_: Any) -> dict[str, Any]:
    """Served in /healthz by kopf; a raise makes it answer 500 (the liveness probe restarts the pod)."""
    return operator.get().health()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    await operator.get().stop()
