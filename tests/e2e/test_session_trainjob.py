"""A session with workers: 2 where Kubeflow Trainer is installed: a TrainJob, end to end.

The Trainer v2 and JobSet controllers built from their modules run against the test bed for this module
only (testbed/kubeflow.py); every other test sees a cluster that serves no TrainJobs. The TrainJob's
pods, which the Trainer and JobSet render from the session's own TrainingRuntime, run here as real
processes (shoal-agent, torchrun with the Trainer's static rendezvous, the DDP example over gloo).
Pause suspends the TrainJob, whose pods end with SIGTERM through the local kubelet's grace period as
through a kubelet's; resume unsuspends the same TrainJob from that checkpoint; a lost worker fails the
TrainJob and the gang restarts as a new one; a stop while paused removes the suspended TrainJob. The
operator runs with only its chart's permissions.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.agent.proctree import ProcessTree
from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, kind_path, pods_path
from testbed import kubeflow
from testbed.kubelet import LocalKubelet
from tests.e2e.conftest import ChartAccount, OperatorProcess
from tests.e2e.test_session_gang import GANG_ENV, ddp_session, progress_of, progress_of_ended, running_gang
from tests.e2e.util import apply, events_where, phase_is, wait_until

JOBSET = "/apis/jobset.x-k8s.io/v1alpha2"


@pytest.fixture(scope="module")
def trainer(cluster: Path) -> Iterator[None]:
    kubeflow.up()
    yield
    kubeflow.down()


@pytest.fixture
def chart_operator(operator: OperatorProcess, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator with only what its chart grants (cluster-wide, its defaults): a verb the chart
    forgot for TrainJobs or runtimes shows as a denial in its log."""
    operator.stop()  # the admin operator stands down; the next running_operator restarts it
    chart = ChartAccount(namespace)
    env = {"SHOAL_LEASE_NAMESPACE": namespace, "SHOAL_LEASE_NAME": chart.account}
    op = OperatorProcess(chart.kubeconfig(tmp_path / "chart.kubeconfig"), tmp_path, **env)
    with chart.serving(op):
        yield op


@pytest.fixture
def graceful_kubelet(kube: Kube, namespace: str) -> Iterator[LocalKubelet]:
    kubelet = LocalKubelet(kube, namespace, env=GANG_ENV, graceful=True).start()
    yield kubelet
    kubelet.stop()


def trainjob(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    return kube.get_if_exists(kind_path("TrainJob", ns, name))


def running(kube: Kube, ns: str, tj: str, steps: int, kubelet: LocalKubelet) -> dict[str, Any]:
    return running_gang(kube, ns, tj, steps, kubelet, 150, lambda: f"trainjob: {trainjob(kube, ns, tj)}")


def test_a_trainjob_trains_pauses_by_suspension_resumes_exactly_and_restarts_when_a_worker_is_lost(
    kube: Kube,
    namespace: str,
    trainer: None,
    chart_operator: OperatorProcess,
    graceful_kubelet: LocalKubelet,
) -> None:
    ns = namespace
    apply(ddp_session(), ns)
    st = running(kube, ns, "ddp-1", 5, graceful_kubelet)
    assert st["gangKind"] == "TrainJob"
    assert kube.get_if_exists(kind_path("Job", ns, "ddp-1")) is None  # not Shoal's own Indexed Job
    runtime = kube.get(kind_path("TrainingRuntime", ns, "ddp"))
    assert runtime["spec"]["mlPolicy"]["numNodes"] == 2
    leader, follower = st["workerPods"]
    pod = kube.get(pods_path(ns, leader))
    labels = pod["metadata"]["labels"]
    assert labels["jobset.sigs.k8s.io/jobset-name"] == "ddp-1"
    # What the session's Service selects (its endpoints are worker 0's) and the operator watches.
    assert (labels["shoal.dev/session"], labels["batch.kubernetes.io/job-completion-index"]) == ("ddp", "0")
    # The Trainer's torch plugin set torchrun's variables: static rendezvous at node 0 of the JobSet.
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]}
    assert env["PET_NNODES"] == "2" and env["PET_MASTER_ADDR"] == "ddp-1-node-0-0.ddp-1", env
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True  # the session's own pod security
    first = progress_of(kube, ns, leader)
    assert first["workers"] == 2

    def past(steps: int) -> dict[str, Any]:
        now = progress_of(kube, ns, leader)
        return now if now.get("episodes", 0) >= steps else {}

    later = wait_until(lambda: past(first["episodes"] + 40), 120, "40 more steps")
    assert later["loss"] < 0.5 * later["firstLoss"], later

    # Pause: the TrainJob is suspended; the agents checkpoint on their pods' SIGTERM; it stays.
    kube.merge_patch(custom_path("trainingsessions", ns, "ddp"), {"spec": {"runState": "Paused"}})
    paused = wait_until(lambda: phase_is(kube, ns, "ddp", "Paused"), 120, "session Paused")
    assert paused["message"].startswith("checkpoint acknowledged"), paused
    saved = json.loads((Path(paused["lastCheckpoint"]).parent / "latest.json").read_text())
    assert saved["path"] == paused["lastCheckpoint"]
    held = trainjob(kube, ns, "ddp-1")
    assert held is not None and held["spec"]["suspend"] is True
    wait_until(
        lambda: kube.get(f"{JOBSET}/namespaces/{ns}/jobsets/ddp-1")["spec"].get("suspend") is True,
        30,
        "the JobSet suspended",
    )
    ended = [graceful_kubelet.pod(leader), graceful_kubelet.pod(follower)]
    wait_until(lambda: all(p and p.proc and p.proc.poll() is not None for p in ended), 60, "both ended")
    digest = progress_of_ended(ended[0])

    # Resume: the same TrainJob, unsuspended, from the pause's checkpoint and parameters.
    kube.merge_patch(custom_path("trainingsessions", ns, "ddp"), {"spec": {"runState": "Running"}})
    st = running(kube, ns, "ddp-1", 1, graceful_kubelet)
    assert st["workerPods"][0] != leader  # new pods of the same TrainJob
    resumed = wait_until(
        lambda: (
            (p := progress_of(kube, ns, st["workerPods"][0])).get("timesteps", 0) > saved["timesteps"] and p
        ),
        60,
        "training on past the checkpoint",
    )
    assert resumed["firstLoss"] == first["firstLoss"]
    events_where(
        kube,
        ns,
        lambda e: (
            e["involvedObject"].get("name") == "ddp" and "resumed TrainJob ddp-1" in e.get("message", "")
        ),
        "the resume's Event",
    )

    # A worker lost: its training process SIGKILLed; the Job, the JobSet and the TrainJob fail, and
    # the gang restarts once from the checkpoint as a new TrainJob (attempt 3: made, resumed, restarted).
    follower_run = graceful_kubelet.pod(st["workerPods"][1])
    assert follower_run is not None and follower_run.proc is not None
    tree = ProcessTree(follower_run.proc.pid).pids()
    assert len(tree) >= 3, tree
    for pid in tree[2:]:
        os.kill(pid, signal.SIGKILL)
    restarted = running(kube, ns, "ddp-3", 1, graceful_kubelet)
    assert restarted["restarts"] == 1
    wait_until(lambda: trainjob(kube, ns, "ddp-1") is None, 60, "the failed TrainJob deleted")
    for p in (st["workerPods"][0], restarted["workerPods"][0]):
        run = graceful_kubelet.pod(p)
        assert run is not None, p
        assert f"resumed from {paused['lastCheckpoint']} at step" in run.output(), run.output()[-2000:]
        assert f"(parameters {digest})" in run.output()

    # Paused again, then stopped: nothing will resume the suspended TrainJob, so it goes.
    kube.merge_patch(custom_path("trainingsessions", ns, "ddp"), {"spec": {"runState": "Paused"}})
    wait_until(lambda: phase_is(kube, ns, "ddp", "Paused"), 120, "session Paused again")
    assert (trainjob(kube, ns, "ddp-3") or {}).get("spec", {}).get("suspend") is True
    kube.merge_patch(custom_path("trainingsessions", ns, "ddp"), {"spec": {"runState": "Stopped"}})
    wait_until(lambda: phase_is(kube, ns, "ddp", "Stopped"), 60, "session Stopped")
    wait_until(lambda: trainjob(kube, ns, "ddp-3") is None, 60, "the suspended TrainJob deleted")
    log = "".join(p.read_text(errors="replace") for p in chart_operator.logdir.glob("operator-*.log"))
    denied = [
        line for line in log.splitlines() if "is forbidden: User" in line or "Not enough permissions" in line
    ]
    assert denied == [], denied[:5]
