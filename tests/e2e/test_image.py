"""The operator image as a cluster would run it: `make image` builds the OCI archive from Debian's
packages and PyPI (no Docker, no registry), the archive is unpacked by umoci, and its entrypoint runs
from the image's own root filesystem, as the image's user, with a service account token of the chart's
RBAC where the kubelet would mount it. It keeps a pool and follows a scaler."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path
from testbed import image
from tests.e2e.conftest import ChartAccount, Exporter, OperatorProcess, pool_manifest, scaler_manifest
from tests.e2e.util import ROOT, PodHistory, apply, live_pods, sh_blocks, wait_until


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> image.Bundle:
    return image.unpack(image.build("operator"), tmp_path_factory.mktemp("image"))


@pytest.fixture
def image_operator(
    bundle: image.Bundle, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    operator.stop()  # one leader at a time; the next running_operator restarts the shared one
    chart = ChartAccount(namespace)
    env = {
        **bundle.service_account(chart.token, namespace),
        "SHOAL_LEASE_NAMESPACE": namespace,
        "SHOAL_LEASE_NAME": chart.account,
    }
    op = OperatorProcess(tmp_path / "unused.kubeconfig", tmp_path, **env)
    op.command = bundle.command()  # the image's entrypoint instead of this checkout's python -m shoal
    with chart.serving(op):
        yield op
    assert bundle.processes() == []  # nothing of the image left running after a stop


def _image_process(op: OperatorProcess) -> int:
    """The entrypoint's process: the child of `unshare` (which forks it into its PID namespace)."""
    assert op.proc is not None
    children = Path(f"/proc/{op.proc.pid}/task/{op.proc.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_the_image_runs_as_its_own_user_from_its_own_root_and_keeps_a_pool_a_scaler_resizes(
    kube: Kube, namespace: str, bundle: image.Bundle, image_operator: OperatorProcess, exporter: Exporter
) -> None:
    pid = _image_process(image_operator)
    assert os.readlink(f"/proc/{pid}/root") == str(bundle.rootfs)  # not this machine's files
    assert os.readlink(f"/proc/{pid}/exe").startswith(str(bundle.rootfs))  # the image's Python
    uids = next(
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
    )
    assert uids.split()[1:] == ["10001"] * 4  # the image's user, not root

    history = PodHistory(kube, namespace, "shoal.dev/pool=img-pool")
    apply(pool_manifest("img-pool", 2), namespace)
    wait_until(
        lambda: len(live_pods(kube, namespace, "shoal.dev/pool=img-pool")) == 2, 60, "the pool's 2 pods"
    )

    exporter.set(40)
    target = {"apiVersion": "shoal.dev/v1alpha1", "kind": "ContainerPool", "name": "img-pool"}
    metric = [{"type": "Prometheus", "prometheus": {"query": exporter.query, "targetPerReplica": 10}}]
    apply(scaler_manifest("img-scaler", target, metric), namespace)
    pool_path = custom_path("containerpools", namespace, "img-pool")
    wait_until(lambda: kube.get(pool_path)["spec"]["replicas"] == 4, 90, "the scaler's 4 replicas")
    wait_until(lambda: len(live_pods(kube, namespace, "shoal.dev/pool=img-pool")) == 4, 60, "4 pods")
    # Exactly the pods asked for: 2, then 2 more, none made twice nor lost and replaced.
    assert len(history.created) == 4 and not history.gone, (history.created, history.gone)
    log = image_operator.log_path.read_text(errors="replace")
    assert "is forbidden: User" not in log and "Not enough permissions" not in log
    assert image_operator.healthy()


def test_the_docs_command_for_kind_turns_the_archive_into_one_that_kind_loads(bundle: image.Bundle) -> None:
    """`kind load image-archive` takes what `docker save` writes; the docs' skopeo line makes it, with
    the name the chart pulls by default and the image's entrypoint and user."""
    block = next(b for b in sh_blocks() if "kind load image-archive" in b)
    convert = next(line for line in block.splitlines() if line.startswith("skopeo copy"))
    args = shlex.split(convert)
    out = ROOT / args[-1].split(":")[1]
    try:
        subprocess.run(args, cwd=ROOT, check=True, timeout=300)
        inspect = subprocess.run(
            ["skopeo", "inspect", "--config", f"docker-archive:{out}"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        config = json.loads(inspect.stdout)["config"]
        assert config["Entrypoint"] == ["/opt/shoal/bin/shoal"] and config["User"] == "10001:10001"
        names = subprocess.run(["tar", "-xOf", str(out), "manifest.json"], check=True, capture_output=True)
        assert json.loads(names.stdout)[0]["RepoTags"] == [f"ghcr.io/shoal-dev/shoal:{image.version()}"]
    finally:
        out.unlink(missing_ok=True)
