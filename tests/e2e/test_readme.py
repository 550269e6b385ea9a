"""The README's (and docs/') commands, run as a user would (those that need Docker or take minutes are CI's or bench's)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from testbed import cluster as testbed
from tests.e2e.util import DOCS, ROOT, kubectl, sh_blocks, wait_until


def test_readme_names_the_two_commands_first() -> None:
    first = sh_blocks()[0]
    assert first.splitlines()[0].startswith("make run") and "make test" in first


def test_testbed_commands(cluster: Path) -> None:
    env = {**os.environ, "PATH": os.environ.get("PATH", "")}
    status = subprocess.run(
        [sys.executable, "testbed/cluster.py", "status"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert status.returncode == 0 and "kube-apiserver" in status.stdout and "healthy" in status.stdout
    out = subprocess.run(
        [sys.executable, "testbed/cluster.py", "env"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.stdout.strip() == f"export KUBECONFIG={testbed.KUBECONFIG}"


def monitoring_crds() -> str:
    """Schema-less stand-ins for the Prometheus Operator's ServiceMonitor and PrometheusRule kinds."""
    items = []
    for kind, plural in (("ServiceMonitor", "servicemonitors"), ("PrometheusRule", "prometheusrules")):
        items.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.monitoring.coreos.com"},
                "spec": {
                    "group": "monitoring.coreos.com",
                    "scope": "Namespaced",
                    "names": {
                        "kind": kind,
                        "plural": plural,
                        "singular": kind.lower(),
                        "listKind": f"{kind}List",
                    },
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    ],
                },
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def test_helm_install_command_against_the_test_bed(cluster: Path) -> None:
    kubectl("apply", "--server-side", "-f", "-", stdin=monitoring_crds())
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
        "--timeout=60s",
    )
    block = next(b for b in sh_blocks() if "helm install" in b)
    args = shlex.split(block.replace("\\\n", " "))
    version = testbed.versions()["HELM_VERSION"]
    helm = str(testbed.CACHE / "bin" / f"helm-{version}" / "helm")
    result = subprocess.run(
        [helm, *args[1:], "--dry-run=server", "--kubeconfig", str(cluster)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "kind: Deployment" in result.stdout and "kind: PrometheusRule" in result.stdout


def test_usage_annotation_command(namespace: str) -> None:
    kubectl("run", "-n", namespace, "probe", "--image=registry.example/x:1", "--restart=Never")
    line = next(x for x in DOCS.splitlines() if x.startswith("kubectl annotate pod NAME"))
    args = shlex.split(line.replace("NAME", "probe"))
    kubectl(*args[1:], "-n", namespace)
    pod = kubectl("get", "pod", "probe", "-n", namespace, "-o", "jsonpath={.metadata.annotations}").stdout
    assert '"kwok.x-k8s.io/usage-cpu":"750m"' in pod


@pytest.mark.parametrize("which", ["test bed", "your cluster"])
def test_make_run_starts_the_operator_against_the_configured_cluster(
    cluster: Path, tmp_path: Path, which: str
) -> None:
    """The test bed's own kubeconfig gets the demo (Prometheus, demo queue, local session pods);
    any other kubeconfig, here a copy naming the same server, only the CRDs and the operator."""
    kubeconfig = cluster
    if which == "your cluster":
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(cluster.read_text())
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "SHOAL_METRICS_PORT": "0",
        "SHOAL_HEALTH_PORT": "0",
        "SHOAL_LEASE_NAME": f"readme-run-{which.replace(' ', '-')}",
        "SHOAL_LOG_FORMAT": "text",
    }
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None

        def started() -> bool:
            line = proc.stdout.readline() if proc.stdout else ""
            lines.append(line)
            return "shoal started" in line

        # The first run against your cluster builds the operator's own environment (a minute or two).
        wait_until(started, 300, "make run to start the operator", interval=0)
        text = "".join(lines)
        if which == "your cluster":
            assert "using the cluster of your current kubeconfig" in text
            assert "demo queue" not in text
            # The operator runs from its own environment, which has none of the trainer's packages.
            python = ROOT / ".venv-operator" / "bin" / "python"
            commands = [" ".join(p.cmdline()) for p in psutil.Process(proc.pid).children(recursive=True)]
            assert any(".venv-operator/bin/python -m shoal" in c for c in commands), commands
            missing = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
            assert "No module named 'torch'" in missing.stderr
        else:
            assert "the local test bed" in text and 'job_queue_depth{queue="functions"}' in text
            assert f"Prometheus http://127.0.0.1:{testbed.PORTS['prometheus']}" in text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
