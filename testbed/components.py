"""The test bed's processes: what each runs with and how it is judged ready."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from testbed.config import HOST, KUBECONFIG, PKI, PORTS, STATE
from testbed.pki import tls_context


def http_ok(url: str, insecure: bool = False) -> bool:
    ctx: ssl.SSLContext | None = None
    if url.startswith("https"):
        ctx = tls_context()
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Component:
    name: str
    args: Callable[[], list[str]]
    health: Callable[[], bool]
    port_names: list[str] = field(default_factory=list)
    start_timeout: float = 60.0


def _apiserver_args() -> list[str]:
    p = PKI
    return [
        f"--etcd-servers=http://{HOST}:{PORTS['etcd']}",
        f"--bind-address={HOST}",
        f"--advertise-address={HOST}",
        f"--secure-port={PORTS['kube-apiserver']}",
        f"--tls-cert-file={p / 'admin.crt'}",
        f"--tls-private-key-file={p / 'admin.key'}",
        f"--client-ca-file={p / 'ca.crt'}",
        f"--service-account-key-file={p / 'admin.key'}",
        f"--service-account-signing-key-file={p / 'admin.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--proxy-client-cert-file={p / 'admin.crt'}",
        f"--proxy-client-key-file={p / 'admin.key'}",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def _client_args(port_name: str) -> list[str]:
    kc = str(KUBECONFIG)
    return [
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        f"--bind-address={HOST}",
        f"--secure-port={PORTS[port_name]}",
        "--leader-elect=false",
        # Its own client metrics (rest_client_requests_total, the rate limiter's waits) readable
        # without a token: benchmarks compare them with the operator's.
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
    ]


def _url(port_name: str, path: str, scheme: str = "https") -> str:
    return f"{scheme}://{HOST}:{PORTS[port_name]}{path}"


COMPONENTS: list[Component] = [
    Component(
        "etcd",
        lambda: [
            "--name=default",
            f"--data-dir={STATE / 'etcd'}",
            f"--listen-client-urls=http://{HOST}:{PORTS['etcd']}",
            f"--advertise-client-urls=http://{HOST}:{PORTS['etcd']}",
            f"--listen-peer-urls=http://{HOST}:{PORTS['etcd-peer']}",
            f"--initial-advertise-peer-urls=http://{HOST}:{PORTS['etcd-peer']}",
            f"--initial-cluster=default=http://{HOST}:{PORTS['etcd-peer']}",
            # A throw-away test cluster: durability is not worth the fsync latency on CI disks.
            "--unsafe-no-fsync",
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ],
        lambda: http_ok(_url("etcd", "/health", "http")),
        ["etcd", "etcd-peer"],
    ),
    Component(
        "kube-apiserver",
        _apiserver_args,
        lambda: http_ok(_url("kube-apiserver", "/readyz")),
        ["kube-apiserver"],
        120.0,
    ),
    Component(
        "kube-controller-manager",
        lambda: [
            *_client_args("kube-controller-manager"),
            f"--root-ca-file={PKI / 'ca.crt'}",
            f"--service-account-private-key-file={PKI / 'admin.key'}",
            "--cluster-name=shoal-testbed",
            # Dynamic PersistentVolumes for the test bed (kube's own dev-only provisioner, under /tmp).
            "--enable-hostpath-provisioner=true",
        ],
        lambda: http_ok(_url("kube-controller-manager", "/healthz"), insecure=True),
        ["kube-controller-manager"],
    ),
    Component(
        "kube-scheduler",
        lambda: _client_args("kube-scheduler"),
        lambda: http_ok(_url("kube-scheduler", "/healthz"), insecure=True),
        ["kube-scheduler"],
    ),
    Component(
        "kwok",
        lambda: [
            f"--kubeconfig={KUBECONFIG}",
            f"--config={STATE / 'kwok.yaml'}",
            "--manage-all-nodes=true",
            f"--node-ip={HOST}",
            f"--node-port={PORTS['kwok']}",
            f"--server-address={HOST}:{PORTS['kwok']}",
            f"--tls-cert-file={PKI / 'admin.crt'}",
            f"--tls-private-key-file={PKI / 'admin.key'}",
            "--node-lease-duration-seconds=40",
        ],
        lambda: http_ok(_url("kwok", "/healthz"), insecure=True),
        ["kwok"],
    ),
    Component(
        "metrics-server",
        lambda: [
            f"--kubeconfig={KUBECONFIG}",
            f"--authentication-kubeconfig={KUBECONFIG}",
            f"--authorization-kubeconfig={KUBECONFIG}",
            f"--bind-address={HOST}",
            f"--secure-port={PORTS['metrics-server']}",
            f"--tls-cert-file={PKI / 'admin.crt'}",
            f"--tls-private-key-file={PKI / 'admin.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--kubelet-use-node-status-port",
            "--kubelet-insecure-tls",
            "--metric-resolution=10s",
            "--kubelet-request-timeout=5s",
        ],
        lambda: http_ok(_url("metrics-server", "/livez"), insecure=True),
        ["metrics-server"],
    ),
    Component(
        "prometheus",
        lambda: [
            f"--config.file={STATE / 'prometheus' / 'prometheus.yml'}",
            f"--storage.tsdb.path={STATE / 'prometheus' / 'data'}",
            f"--web.listen-address={HOST}:{PORTS['prometheus']}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=6h",
        ],
        lambda: http_ok(_url("prometheus", "/-/ready", "http")),
        ["prometheus"],
    ),
]
# Started only by testbed/kubeflow.py, for the TrainJob tests: not part of `cluster up`.
KUBEFLOW: list[Component] = [
    Component(
        "jobset",
        lambda: [f"--kubeconfig={KUBECONFIG}", f"--config={STATE / 'jobset.yaml'}"],
        lambda: http_ok(_url("jobset-health", "/healthz", "http")),
        ["jobset-webhook", "jobset-metrics", "jobset-health"],
    ),
    Component(
        "trainer-controller-manager",
        lambda: [
            f"--kubeconfig={KUBECONFIG}",
            f"--webhook-server-port={PORTS['trainer-webhook']}",
            f"--health-probe-bind-address={HOST}:{PORTS['trainer-health']}",
            "--metrics-bind-address=0",
        ],
        # Ready once its certificates are (its readiness check waits for them).
        lambda: http_ok(_url("trainer-health", "/readyz", "http")),
        ["trainer-webhook", "trainer-health"],
    ),
]
BY_NAME = {c.name: c for c in (*COMPONENTS, *KUBEFLOW)}
