#!/usr/bin/env python3
"""A real Kubernetes control plane run as local processes, loopback only.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the real binaries built by
``build.sh``; KWOK simulates nodes and pods (and their CPU/memory usage); metrics-server serves
``metrics.k8s.io``; Prometheus (Debian's package) scrapes the cluster and a file-based target
directory that tests drop their own exporters into.

Usage: cluster.py up | down | status | env | stop COMPONENT | start COMPONENT

Only the standard library is used, so this runs before the project's dependencies are installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("SHOAL_CACHE", Path.home() / ".cache" / "shoal"))
STATE = Path(os.environ.get("SHOAL_TESTBED_DIR", CACHE / "testbed"))
PKI = STATE / "pki"
LOGS = STATE / "logs"
PIDS = STATE / "pids"
KUBECONFIG = STATE / "kubeconfig"
PROM_TARGETS = STATE / "prometheus" / "targets"
HOST = "127.0.0.1"

# Ports sit away from the defaults so that a developer's own cluster (kind, minikube) does not clash.
PORTS = {
    "etcd": 12379,
    "etcd-peer": 12380,
    "kube-apiserver": 16443,
    "kube-controller-manager": 20257,
    "kube-scheduler": 20259,
    "kwok": 20247,
    "metrics-server": 20443,
    "prometheus": 19090,
}
for _name in list(PORTS):
    _override = os.environ.get("SHOAL_PORT_" + _name.upper().replace("-", "_"))
    if _override:
        PORTS[_name] = int(_override)


def log(msg: str) -> None:
    print(f"[testbed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class TestbedError(RuntimeError):
    pass


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def binary(component: str) -> Path:
    v = versions()
    dirs = {
        "etcd": f"etcd-{v['ETCD_VERSION']}",
        "kwok": f"kwok-{v['KWOK_VERSION']}",
        "metrics-server": f"metrics-server-{v['METRICS_SERVER_VERSION']}",
    }
    path = CACHE / "bin" / dirs.get(component, f"kubernetes-{v['KUBERNETES_VERSION']}") / component
    if component == "prometheus":
        found = shutil.which("prometheus") or "/usr/bin/prometheus"
        path = Path(found)
    if not path.exists():
        hint = "apt-get install prometheus" if component == "prometheus" else "make testbed-build"
        raise TestbedError(f"{component} binary not found at {path}; run `{hint}` first")
    return path


def kwok_assets() -> Path:
    return CACHE / "bin" / f"kwok-{versions()['KWOK_VERSION']}" / "assets"


# --- certificates -------------------------------------------------------------------------------


def ensure_pki() -> None:
    """One CA and one admin certificate (system:masters) used as server, client and front-proxy cert.

    metrics-server authenticates the API server's proxied requests by the client CA, so the
    front-proxy client certificate can be the admin one (no separate request-header CA needed).
    """
    if (PKI / "admin.crt").exists():
        return
    PKI.mkdir(parents=True, exist_ok=True)
    log("generating certificates")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, cwd=PKI, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=shoal-testbed-ca",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "admin.key",
        "-out",
        "admin.csr",
        "-subj",
        "/O=system:masters/CN=kubernetes-admin",
    )
    (PKI / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "admin.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "admin.crt",
        "-days",
        "3650",
        "-extfile",
        "ext.cnf",
    )


def write_kubeconfig() -> None:
    KUBECONFIG.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: shoal-testbed
  cluster:
    server: https://{HOST}:{PORTS["kube-apiserver"]}
    certificate-authority: {PKI / "ca.crt"}
users:
- name: shoal-testbed-admin
  user:
    client-certificate: {PKI / "admin.crt"}
    client-key: {PKI / "admin.key"}
contexts:
- name: shoal-testbed
  context: {{cluster: shoal-testbed, user: shoal-testbed-admin}}
current-context: shoal-testbed
"""
    )


# --- components -----------------------------------------------------------------------------------


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    return ctx


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
BY_NAME = {c.name: c for c in COMPONENTS}


def pid_of(name: str) -> int | None:
    try:
        pid = int((PIDS / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        # A PID file from an earlier boot may name a recycled PID: check it is still our binary.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return None
    return pid if Path(cmdline).name == name else None


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def start(name: str) -> None:
    comp = BY_NAME[name]
    if pid_of(name):
        log(f"{name}: already running")
        return
    busy = [f"{p} ({PORTS[p]})" for p in comp.port_names if not port_free(PORTS[p])]
    if busy:
        raise TestbedError(
            f"cannot start {name}: port(s) {', '.join(busy)} already in use by another process; "
            f"stop it or set SHOAL_PORT_<NAME> to move the test bed"
        )
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    logfile = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [str(binary(name)), *comp.args()],
        stdout=logfile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=STATE,
    )
    (PIDS / f"{name}.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + comp.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (LOGS / f"{name}.log").read_text(errors="replace")[-3000:]
            raise TestbedError(f"{name} exited with code {proc.returncode}; log tail:\n{tail}")
        if comp.health():
            log(f"{name}: ready (pid {proc.pid})")
            return
        time.sleep(0.25)
    raise TestbedError(f"{name} not healthy after {comp.start_timeout:.0f}s; see {LOGS / (name + '.log')}")


def stop(name: str, timeout: float = 20.0) -> None:
    pid = pid_of(name)
    if pid is None:
        (PIDS / f"{name}.pid").unlink(missing_ok=True)
        return
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_of(name):
        time.sleep(0.1)
    if pid_of(name):
        os.killpg(pid, signal.SIGKILL)
        while pid_of(name):
            time.sleep(0.05)
    (PIDS / f"{name}.pid").unlink(missing_ok=True)
    log(f"{name}: stopped")


# --- cluster objects ----------------------------------------------------------------------------


def kubectl(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(binary("kubectl")), f"--kubeconfig={KUBECONFIG}", *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise TestbedError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def write_kwok_config() -> None:
    """Stages and metrics come from the pinned KWOK release (copied to the cache by build.sh)."""
    assets = kwok_assets()
    parts = [p.read_text() for p in sorted(assets.glob("*.yaml"))]
    if not parts:
        raise TestbedError(f"no KWOK stage/metric files under {assets}; run `make testbed-build`")
    (STATE / "kwok.yaml").write_text("\n---\n".join(parts))


def write_prometheus_config() -> None:
    prom = STATE / "prometheus"
    PROM_TARGETS.mkdir(parents=True, exist_ok=True)
    (prom / "prometheus.yml").write_text(
        f"""global:
  scrape_interval: 2s
  evaluation_interval: 2s
scrape_configs:
# The control plane's own /metrics are large; every 2 s would cost this small box a tenth of a core.
- job_name: kube-apiserver
  scrape_interval: 15s
  scheme: https
  tls_config:
    ca_file: {PKI / "ca.crt"}
    cert_file: {PKI / "admin.crt"}
    key_file: {PKI / "admin.key"}
  static_configs:
  - targets: ['{HOST}:{PORTS["kube-apiserver"]}']
- job_name: kwok
  scrape_interval: 15s
  scheme: https
  tls_config:
    insecure_skip_verify: true
  static_configs:
  - targets: ['{HOST}:{PORTS["kwok"]}']
# Tests register their own exporters by writing JSON target files here.
- job_name: file
  file_sd_configs:
  - files: ['{PROM_TARGETS}/*.json']
    refresh_interval: 1s
"""
    )


NODES = [  # (name, cpu, memory, pods, gpus)
    *[(f"kwok-cpu-{i}", "64", "256Gi", "2000", 0) for i in range(4)],
    *[(f"kwok-gpu-{i}", "32", "256Gi", "110", 8) for i in range(2)],
]


def node_manifests() -> str:
    docs = []
    for name, cpu, memory, pods, gpus in NODES:
        alloc = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "1Ti"}
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"}
        if gpus:
            alloc["nvidia.com/gpu"] = str(gpus)
            labels["nvidia.com/gpu.present"] = "true"
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": labels,
                    "annotations": {
                        "kwok.x-k8s.io/node": "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                        # metrics-server reads a node's resource metrics from this path on KWOK's server.
                        "metrics.k8s.io/resource-metrics-path": f"/metrics/nodes/{name}/metrics/resource",
                    },
                },
                "status": {"allocatable": alloc, "capacity": alloc},
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


def storage_manifests() -> str:
    return json.dumps(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": "standard",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "kubernetes.io/host-path",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
    )


def metrics_api_manifests() -> str:
    items = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "metrics-server", "namespace": "kube-system"},
            # The aggregator resolves ExternalName services itself: no kube-proxy needed.
            "spec": {
                "type": "ExternalName",
                "externalName": "localhost",
                "ports": [{"port": PORTS["metrics-server"], "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "service": {
                    "name": "metrics-server",
                    "namespace": "kube-system",
                    "port": PORTS["metrics-server"],
                },
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


# --- commands -----------------------------------------------------------------------------------


def running() -> bool:
    return pid_of("kube-apiserver") is not None and BY_NAME["kube-apiserver"].health()


def up() -> None:
    t0 = time.monotonic()
    if running() and all(pid_of(c.name) for c in COMPONENTS):
        log(f"already running; KUBECONFIG={KUBECONFIG}")
        return
    for c in COMPONENTS:
        binary(c.name)  # fail early with a clear message when a binary is missing
    binary("kubectl")
    if not any(pid_of(c.name) for c in COMPONENTS):
        # A fresh cluster each time: stale etcd data would leak objects between test runs.
        for d in ("etcd", "prometheus/data"):
            shutil.rmtree(STATE / d, ignore_errors=True)
        for f in PROM_TARGETS.glob("*.json") if PROM_TARGETS.exists() else []:
            f.unlink()
    STATE.mkdir(parents=True, exist_ok=True)
    ensure_pki()
    write_kubeconfig()
    write_kwok_config()
    write_prometheus_config()
    for c in COMPONENTS[:4]:
        start(c.name)
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=node_manifests())
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=storage_manifests())
    start("kwok")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=metrics_api_manifests())
    start("metrics-server")
    start("prometheus")
    wait_for(lambda: "kwok-gpu-1" in kubectl("get", "nodes", "--no-headers"), 60, "nodes registered")
    wait_for(nodes_ready, 60, "all nodes Ready")
    log(f"cluster up in {time.monotonic() - t0:.1f}s; export KUBECONFIG={KUBECONFIG}")


def nodes_ready() -> bool:
    out = kubectl(
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{' '}{end}",
    )
    states = out.split()
    return len(states) == len(NODES) and all(s == "True" for s in states)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except TestbedError:
            pass
        time.sleep(0.5)
    raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what}")


def down() -> None:
    for c in reversed(COMPONENTS):
        stop(c.name)
    log("cluster down")


def status() -> int:
    bad = 0
    for c in COMPONENTS:
        pid = pid_of(c.name)
        healthy = bool(pid) and c.health()
        bad += not healthy
        print(
            f"{c.name:25} {'running' if pid else 'stopped':8} pid={pid or '-':<8} "
            f"port={PORTS[c.port_names[0]]:<6} {'healthy' if healthy else 'unhealthy'}"
        )
    print(f"KUBECONFIG={KUBECONFIG}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "env", "stop", "start"])
    parser.add_argument("component", nargs="?", choices=sorted(BY_NAME))
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        elif args.command == "status":
            return status()
        elif args.command == "env":
            print(f"export KUBECONFIG={KUBECONFIG}")
        elif args.component is None:
            parser.error(f"{args.command} needs a component")
        elif args.command == "stop":
            stop(args.component)
        else:
            start(args.component)
    except TestbedError as exc:
        log(f"ERROR: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
