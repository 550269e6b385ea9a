"""Operator settings, from the environment (the Helm chart sets these)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _seconds(value: str | None) -> float | None:
    return float(value) if value else None


class SettingsError(ValueError):
    """A setting the operator cannot start with; the message names it."""


PEER_KEYS = {"namespaceSelector", "podSelector", "ipBlock"}


def _peers(value: str | None) -> tuple[dict[str, Any], ...] | None:
    """SHOAL_SESSION_INGRESS_FROM: a JSON list of NetworkPolicy peers, as a policy's `from` takes them."""
    if value is None or not value.strip():
        return None
    try:
        peers = json.loads(value)
    except ValueError as exc:
        raise SettingsError(f"SHOAL_SESSION_INGRESS_FROM is not JSON: {exc}") from None
    if not isinstance(peers, list) or not all(
        isinstance(p, dict) and p and set(p) <= PEER_KEYS and all(isinstance(v, dict) for v in p.values())
        for p in peers
    ):
        raise SettingsError(
            "SHOAL_SESSION_INGRESS_FROM must be a JSON list of NetworkPolicy peers, each an object of "
            f"{', '.join(sorted(PEER_KEYS))}"
        )
    return tuple(peers)


def _non_negative(env: dict[str, str], name: str, default: float = 0.0) -> float:
    try:
        value = float(env.get(name) or default)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {env.get(name)!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative")
    return value


@dataclass(frozen=True)
class PrometheusAccess:
    """How the operator reaches its Prometheus. Credentials are files (mounted Secrets), read on every
    request so that rotated tokens and certificates are picked up; their contents are never logged."""

    url: str = ""
    bearer_token_file: str = ""
    basic_auth_username_file: str = ""
    basic_auth_password_file: str = ""
    ca_file: str = ""  # empty: the system's CAs
    cert_file: str = ""  # client certificate (with key_file)
    key_file: str = ""
    headers: tuple[tuple[str, str], ...] = ()  # e.g. X-Scope-OrgID for a Mimir, Cortex or Thanos tenant
    namespace_label: str = ""  # non-empty: every query limited to the scaler's namespace by this label

    @classmethod
    def from_env(cls, e: dict[str, str]) -> PrometheusAccess:
        try:
            headers = json.loads(e.get("SHOAL_PROMETHEUS_HEADERS") or "{}")
        except ValueError as exc:
            raise SettingsError(f"SHOAL_PROMETHEUS_HEADERS is not a JSON object: {exc}") from None
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise SettingsError("SHOAL_PROMETHEUS_HEADERS must be a JSON object of strings")
        access = cls(
            url=e.get("SHOAL_PROMETHEUS_URL", "").rstrip("/"),
            bearer_token_file=e.get("SHOAL_PROMETHEUS_BEARER_TOKEN_FILE", ""),
            basic_auth_username_file=e.get("SHOAL_PROMETHEUS_BASIC_AUTH_USERNAME_FILE", ""),
            basic_auth_password_file=e.get("SHOAL_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE", ""),
            ca_file=e.get("SHOAL_PROMETHEUS_CA_FILE", ""),
            cert_file=e.get("SHOAL_PROMETHEUS_CERT_FILE", ""),
            key_file=e.get("SHOAL_PROMETHEUS_KEY_FILE", ""),
            headers=tuple(sorted(headers.items())),
            namespace_label=e.get("SHOAL_PROMETHEUS_NAMESPACE_LABEL", "").strip(),
        )
        access.check()
        return access

    def check(self) -> None:
        url = urlsplit(self.url)
        if self.url and (url.scheme not in ("http", "https") or not url.hostname):
            raise SettingsError(
                f"SHOAL_PROMETHEUS_URL must be an http:// or https:// address, not {self.url!r}"
            )
        if url.username or url.password:
            raise SettingsError("SHOAL_PROMETHEUS_URL carries credentials; give them as basic-auth files")
        if self.bearer_token_file and self.basic_auth_username_file:
            raise SettingsError("a bearer token and basic auth exclude each other; set one")
        if bool(self.basic_auth_username_file) != bool(self.basic_auth_password_file):
            raise SettingsError("basic auth needs both a username file and a password file")
        if bool(self.cert_file) != bool(self.key_file):
            raise SettingsError("a client certificate needs both a certificate file and a key file")
        if (self.ca_file or self.cert_file) and url.scheme != "https":
            raise SettingsError("a CA or client certificate is set but SHOAL_PROMETHEUS_URL is not https://")
        if any(k.lower() == "authorization" for k, _ in self.headers):
            raise SettingsError("give credentials as a bearer token or basic-auth file, not as a header")


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    prometheus: PrometheusAccess = PrometheusAccess()
    gpu_resource: str = "nvidia.com/gpu"
    gpu_memory_resource: str = ""
    metrics_port: int = 8080
    health_port: int = 8081
    workers: int = 4
    # ContainerClaim binds at once: each is two API round trips and next to no CPU, so a burst of 100
    # at 4 would queue for 25 rounds of them.
    claim_workers: int = 16
    # A session's status.progress and metrics follow its agent's reports at most this often: a report
    # that changes only figures is one status write per interval, not one per report (acknowledgements,
    # checkpoints, errors and exits are written at once).
    progress_status_seconds: float = 5.0
    kube_api_qps: float = 0.0  # client-side request limit, as kube-controller-manager's; 0: none
    kube_api_burst: int = 0  # 0 with a qps: 1.5 x qps, client-go's proportion for kcm (20 / 30)
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
    # NetworkPolicy peers admitted to each session's endpoints; None: no policy (the namespace's own
    # policies, if any, apply)
    session_ingress_from: tuple[dict[str, Any], ...] | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        ns = tuple(n.strip() for n in e.get("SHOAL_NAMESPACES", "").split(",") if n.strip())
        return cls(
            namespaces=ns,
            prometheus=PrometheusAccess.from_env(e),
            gpu_resource=e.get("SHOAL_GPU_RESOURCE", "nvidia.com/gpu"),
            gpu_memory_resource=e.get("SHOAL_GPU_MEMORY_RESOURCE", ""),
            metrics_port=int(e.get("SHOAL_METRICS_PORT", "8080")),
            health_port=int(e.get("SHOAL_HEALTH_PORT", "8081")),
            workers=max(1, int(e.get("SHOAL_WORKERS", "4"))),
            claim_workers=max(1, int(e.get("SHOAL_CLAIM_WORKERS", "16"))),
            progress_status_seconds=_non_negative(e, "SHOAL_PROGRESS_STATUS_SECONDS", 5.0),
            kube_api_qps=_non_negative(e, "SHOAL_KUBE_API_QPS"),
            kube_api_burst=int(_non_negative(e, "SHOAL_KUBE_API_BURST")),
            log_level=e.get("SHOAL_LOG_LEVEL", "INFO").upper(),
            log_format=e.get("SHOAL_LOG_FORMAT", "json"),
            leader_election=_bool(e.get("SHOAL_LEADER_ELECTION", "true")),
            lease_name=e.get("SHOAL_LEASE_NAME", "shoal-operator"),
            lease_namespace=e.get("SHOAL_LEASE_NAMESPACE", e.get("POD_NAMESPACE", "default")),
            lease_duration=float(e.get("SHOAL_LEASE_DURATION_SECONDS", "15")),
            lease_renew_deadline=_seconds(e.get("SHOAL_LEASE_RENEW_DEADLINE_SECONDS")),
            lease_retry_period=_seconds(e.get("SHOAL_LEASE_RETRY_PERIOD_SECONDS")),
            session_ingress_from=_peers(e.get("SHOAL_SESSION_INGRESS_FROM")),
        )
