"""A session with workers: 2 end to end: an Indexed Job of two workers, each a real local process
(shoal-agent, torchrun, the DDP example over gloo), meeting by c10d rendezvous at worker 0 through the
test bed's stand-in for cluster DNS (testbed/kubelet.py). Loss falls, a pause checkpoints and a resume
continues from that checkpoint with the very parameters it saved, and a lost worker restarts the
whole gang from the last checkpoint."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.agent.proctree import ProcessTree
from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, kind_path, pods_path
from shoal.vocab import ANN_PROGRESS
from testbed.kubelet import LocalKubelet
from tests.e2e.conftest import OperatorProcess, session_manifest
from tests.e2e.util import apply, events_where, kubectl, phase_is, status, wait_until

COMMAND = ["shoal-agent", "--", "torchrun", "-m", "shoal.examples.ddp_regression"]
# The pods run their own command (no trainer double): torchrun and the example, paced to watch.
GANG_ENV = {
    "SHOAL_TENSORBOARD_PORT": "0",
    "SHOAL_REPORT_EVERY": "1",
    "SHOAL_SECONDSPEREPISODE": "0.05",
    "OMP_NUM_THREADS": "1",
}


def ddp_session() -> dict[str, Any]:
    """Session `ddp`: the example on two workers, until the test pauses or stops it."""
    return session_manifest(
        "ddp",
        game="regression",
        algorithm="ddp",
        command=COMMAND,
        workers=2,
        learningRate=0.01,
        totalTimesteps=10**9,  # runs until the test pauses it
        checkpointEverySec=3600,  # checkpoints only when asked (pause) or at the end
    )


@pytest.fixture
def gang_kubelet(kube: Kube, namespace: str) -> Iterator[LocalKubelet]:
    kubelet = LocalKubelet(kube, namespace, env=GANG_ENV).start()
    yield kubelet
    kubelet.stop()


def progress_of(kube: Kube, ns: str, pod: str) -> dict[str, Any]:
    found = kube.get_if_exists(pods_path(ns, pod))
    raw = ((found or {}).get("metadata", {}).get("annotations") or {}).get(ANN_PROGRESS)
    return json.loads(raw) if raw else {}


def running_gang(
    kube: Kube,
    ns: str,
    job: str,
    steps: int,
    kubelet: LocalKubelet,
    timeout: float = 120,
    context: Callable[[], object] = lambda: "",
) -> dict[str, Any]:
    """The session Running on `job` with both workers ready and worker 0 past `steps` steps; on a
    timeout, what the pods and their processes said (and `context()`)."""

    def check() -> dict[str, Any]:
        st = phase_is(kube, ns, "ddp", "Running")
        if st.get("podName") != job or st.get("readyWorkers") != 2 or len(st.get("workerPods") or []) != 2:
            return {}
        return st if progress_of(kube, ns, st["workerPods"][0]).get("episodes", 0) >= steps else {}

    try:
        return wait_until(check, timeout, f"gang {job} running past step {steps}")
    except AssertionError as exc:  # what the gang's pods and their processes said
        pods = [p for p in kube.list_items(pods_path(ns)) if p["metadata"]["name"].startswith(job)]
        said = {
            p["metadata"]["name"]: (p["status"].get("phase"), (kubelet.pod(p["metadata"]["name"]) or None))
            for p in pods
        }
        out = {k: (phase, local.output()[-1500:] if local else None) for k, (phase, local) in said.items()}
        raise AssertionError(f"{exc}\nstatus: {status(kube, ns, 'ddp')}\n{context()}\npods: {out}") from None


def test_two_workers_train_pause_resume_exactly_and_a_lost_worker_restarts_the_gang(
    kube: Kube, namespace: str, running_operator: OperatorProcess, gang_kubelet: LocalKubelet
) -> None:
    ns = namespace
    apply(ddp_session(), ns)
    st = running_gang(kube, ns, "ddp-1", 5, gang_kubelet)
    job = kube.get(kind_path("Job", ns, "ddp-1"))
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["backoffLimit"]) == (
        "Indexed",
        2,
        0,
    )
    leader, follower = st["workerPods"]
    wide = kubectl("get", "tsess", "ddp", "-n", ns, "-o", "wide").stdout.splitlines()
    starts: list[int | None] = []  # each column from where its header starts
    for h in wide[0].split():
        starts.append(wide[0].index(h, (starts[-1] or 0) + 1 if starts else 0))
    starts.append(None)
    columns = {h: wide[1][a:b].strip() for h, a, b in zip(wide[0].split(), starts, starts[1:], strict=False)}
    assert (columns["WORKERS"], columns["READY-WORKERS"]) == ("2", "2"), wide
    assert (
        kube.get(pods_path(ns, leader))["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
        == "0"
    )
    svc = kube.get(kind_path("Service", ns, "ddp-workers"))
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    # Worker 0's agent reaches its own pod and nothing else; the other worker's agent uses no API at all.
    role = kube.get(kind_path("Role", ns, "ddp-agent"))
    assert role["rules"][0]["resourceNames"] == [leader]
    assert progress_of(kube, ns, follower) == {}

    first = progress_of(kube, ns, leader)
    assert first["workers"] == 2

    def past(steps: int) -> dict[str, Any]:
        now = progress_of(kube, ns, leader)
        return now if now.get("episodes", 0) >= steps else {}

    later = wait_until(lambda: past(first["episodes"] + 40), 120, "40 more steps")
    assert later["loss"] < 0.5 * later["firstLoss"], later  # it learns, across both workers

    # Pause: worker 0 gets the command, both workers stop at one step, worker 0 checkpoints.
    kube.merge_patch(custom_path("trainingsessions", ns, "ddp"), {"spec": {"runState": "Paused"}})
    paused = wait_until(lambda: phase_is(kube, ns, "ddp", "Paused"), 120, "session Paused")
    saved = json.loads((Path(paused["lastCheckpoint"]).parent / "latest.json").read_text())
    assert saved["path"] == paused["lastCheckpoint"]
    ended = [gang_kubelet.pod(leader), gang_kubelet.pod(follower)]
    assert all(p is not None and p.proc is not None for p in ended)
    wait_until(
        lambda: all(p.proc.poll() is not None for p in ended if p and p.proc), 60, "both workers ended"
    )
    # (Their exit codes are not the point: once worker 0 has acknowledged the checkpoint the session
    # deletes the Job, as it deletes a single pod, and a worker still exiting may be ended by that.
    # That both stop at one agreed step is tests/unit/test_ddp_example.py's to show.)
    wait_until(
        lambda: kube.get_if_exists(kind_path("Job", ns, "ddp-1")) is None, 30, "the paused gang's Job gone"
    )
    checkpoint_digest = progress_of_ended(ended[0])

    # Resume: a new gang, from that checkpoint, with the parameters it saved.
    kube.merge_patch(custom_path("trainingsessions", ns, "ddp"), {"spec": {"runState": "Running"}})
    st = running_gang(kube, ns, "ddp-2", 1, gang_kubelet)
    resumed = wait_until(
        lambda: (
            (p := progress_of(kube, ns, st["workerPods"][0])).get("timesteps", 0) > saved["timesteps"] and p
        ),
        60,
        "training on past the checkpoint",
    )
    assert resumed["timesteps"] > saved["timesteps"]
    assert resumed["firstLoss"] == first["firstLoss"]  # the same run, not a new one

    # A worker lost: the follower's training process dies (SIGKILL). Its torchrun fails, so does its
    # pod, and with backoffLimit 0 the Job: the gang restarts once, from the last checkpoint.
    follower_run = gang_kubelet.pod(st["workerPods"][1])
    assert follower_run is not None and follower_run.proc is not None
    agent_and_below = ProcessTree(follower_run.proc.pid).pids()  # agent, torchrun, the worker
    assert len(agent_and_below) >= 3, agent_and_below
    for pid in agent_and_below[2:]:
        os.kill(pid, signal.SIGKILL)
    restarted = running_gang(kube, ns, "ddp-3", 1, gang_kubelet)
    assert restarted["restarts"] == 1
    events_where(
        kube,
        ns,
        lambda e: e["reason"] == "Restarting" and e["involvedObject"].get("name") == "ddp",
        "the Restarting Warning",
    )
    for pod in (st["workerPods"][0], restarted["workerPods"][0]):  # both resumes loaded what the pause saved
        loaded = gang_kubelet.pod(pod)
        assert loaded is not None, pod
        assert f"resumed from {paused['lastCheckpoint']} at step" in loaded.output(), loaded.output()[-2000:]
        assert f"(parameters {checkpoint_digest})" in loaded.output()

    # An immediate stop: no checkpoint, the gang's processes killed, the Job gone, the session Stopped.
    kube.merge_patch(
        custom_path("trainingsessions", ns, "ddp"), {"spec": {"runState": "Stopped", "stopMode": "Immediate"}}
    )
    wait_until(lambda: phase_is(kube, ns, "ddp", "Stopped"), 60, "session Stopped")
    wait_until(lambda: kube.get_if_exists(kind_path("Job", ns, "ddp-3")) is None, 30, "the Job gone")
    last = [gang_kubelet.pod(p) for p in restarted["workerPods"]]
    wait_until(
        lambda: all(p is not None and p.proc is not None and p.proc.poll() is not None for p in last),
        60,
        "both workers' processes ended",
    )
    assert status(kube, ns, "ddp")["lastCheckpoint"] == paused["lastCheckpoint"]  # none taken by the stop


def progress_of_ended(local: Any) -> str:
    """The digest of the parameters worker 0 saved at the pause, from its last progress file."""
    path = local.dir / "volumes" / "work" / "progress.json"
    return str(json.loads(path.read_text())["lastCheckpoint"]["digest"])
