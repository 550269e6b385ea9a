"""Operator settings, from the environment (the Helm chart sets these)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _seconds(value: str | None) -> float | None:
    return float(value) if value else None


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    prometheus_url: str = ""
    gpu_resource: str = "nvidia.com/gpu"
    gpu_memory_resource: str = ""
    metrics_port: int = 8080
    health_port: int = 8081
    workers: int = 4
    log_level: str = "INFO"
    log_format: str = "json"
    leader_election: bool = True
    lease_name: str = "shoal-operator"
    lease_namespace: str = "default"
    lease_duration: float = 15.0
    # None: client-go's proportions of the lease (15 / 10 / 2), applied by runtime.leader
    lease_renew_deadline: float | None = None
    lease_retry_period: float | None = None
    identity: str = field(default_factory=lambda: os.environ.get("HOSTNAME", "shoal") + f"-{os.getpid()}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        ns = tuple(n.strip() for n in e.get("SHOAL_NAMESPACES", "").split(",") if n.strip())
        return cls(
            namespaces=ns,
            prometheus_url=e.get("SHOAL_PROMETHEUS_URL", ""),
            gpu_resource=e.get("SHOAL_GPU_RESOURCE", "nvidia.com/gpu"),
            gpu_memory_resource=e.get("SHOAL_GPU_MEMORY_RESOURCE", ""),
            metrics_port=int(e.get("SHOAL_METRICS_PORT", "8080")),
            health_port=int(e.get("SHOAL_HEALTH_PORT", "8081")),
            workers=max(1, int(e.get("SHOAL_WORKERS", "4"))),
            log_level=e.get("SHOAL_LOG_LEVEL", "INFO").upper(),
            log_format=e.get("SHOAL_LOG_FORMAT", "json"),
            leader_election=_bool(e.get("SHOAL_LEADER_ELECTION", "true")),
            lease_name=e.get("SHOAL_LEASE_NAME", "shoal-operator"),
            lease_namespace=e.get("SHOAL_LEASE_NAMESPACE", e.get("POD_NAMESPACE", "default")),
            lease_duration=float(e.get("SHOAL_LEASE_DURATION_SECONDS", "15")),
            lease_renew_deadline=_seconds(e.get("SHOAL_LEASE_RENEW_DEADLINE_SECONDS")),
            lease_retry_period=_seconds(e.get("SHOAL_LEASE_RETRY_PERIOD_SECONDS")),
        )
