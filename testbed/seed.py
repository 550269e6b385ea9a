"""What the test bed holds once up: nodes, storage, the metrics API, and the config files of KWOK and Prometheus."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from testbed.config import (
    HOST,
    KUBECONFIG,
    PKI,
    PORTS,
    PROM_TARGETS,
    STATE,
    TestbedError,
    binary,
    kwok_assets,
)

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


def install_crds() -> None:
    """Shoal's CRDs from the repository, established: what the tests and the benchmarks run against."""
    crds = Path(__file__).resolve().parents[1] / "crds"
    kubectl("apply", "--server-side", "--force-conflicts", "-k", str(crds))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")


# KWOK's pod-complete stage ends a Job's pods as soon as they run. A gang's workers (a session's Job)
# run here as real processes (testbed/kubelet.py), whose exit is their end: KWOK leaves them alone.
LOCAL_JOB_PODS = {"key": '.metadata.labels["shoal.dev/session"]', "operator": "DoesNotExist"}
# KWOK's pod-delete stage removes a deleted pod at once. A pod the local kubelet ends gracefully
# (LocalKubelet(graceful=True): a suspended TrainJob's, whose agents checkpoint on SIGTERM) carries
# this label until its process has exited, as a kubelet keeps a pod through its grace period.
GRACEFUL_LABEL = "testbed.shoal.dev/graceful"
GRACEFUL_PODS = {"key": f'.metadata.labels["{GRACEFUL_LABEL}"]', "operator": "DoesNotExist"}


def write_kwok_config() -> None:
    """Stages and metrics come from the pinned KWOK release (copied to the cache by build.sh)."""
    import yaml

    assets = kwok_assets()
    docs = [d for p in sorted(assets.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    if not docs:
        raise TestbedError(f"no KWOK stage/metric files under {assets}; run `make testbed-build`")
    for doc in docs:
        if doc.get("kind") == "Stage" and doc["metadata"]["name"] == "pod-complete":
            doc["spec"]["selector"]["matchExpressions"].append(LOCAL_JOB_PODS)
        if doc.get("kind") == "Stage" and doc["metadata"]["name"] == "pod-delete":
            doc["spec"]["selector"]["matchExpressions"].append(GRACEFUL_PODS)
    (STATE / "kwok.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))


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
                # Both addresses from the start: KWOK's node-initialize stage adds whichever of the
                # two is missing as the whole list, dropping the other, so a node with one of them
                # flips between InternalIP and Hostname at every resync (10 min), and metrics-server,
                # which scrapes by InternalIP, loses every node for ten minutes in twenty.
                "status": {
                    "allocatable": alloc,
                    "capacity": alloc,
                    "addresses": [
                        {"type": "InternalIP", "address": HOST},
                        {"type": "Hostname", "address": name},
                    ],
                },
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
