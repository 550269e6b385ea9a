"""Operator start-up and shutdown."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from prometheus_client import start_http_server

from shoal import telemetry
from shoal.config import Settings
from shoal.k8s.client import Kube, load_config
from shoal.reconcile.pool import PoolReconciler
from shoal.reconcile.scaler import ScalerReconciler
from shoal.reconcile.session import SessionReconciler
from shoal.runtime import operator
from shoal.sources import default_sources

log = logging.getLogger("shoal")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    cfg = Settings.from_env()
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    kube = Kube(load_config(pool_size=cfg.workers * 3 + 4), async_events=True)
    runtime = operator.OperatorRuntime(cfg, kube)
    runtime.register("ContainerPool", "containerpools", PoolReconciler(kube, cfg).reconcile)
    sessions = SessionReconciler(kube, cfg, index=runtime.index)
    runtime.register("TrainingSession", "trainingsessions", sessions.reconcile, relevant=sessions.relevant)
    scalers = ScalerReconciler(kube, cfg, default_sources(cfg.prometheus))
    runtime.register("WorkerScaler", "workerscalers", scalers.reconcile, relevant=scalers.relevant)
    operator.install(runtime)
    for source in ("Resource", "Prometheus"):
        telemetry.SOURCE_FAILURES.labels(source)
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port)
    runtime.start()
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
