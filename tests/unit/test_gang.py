"""A session with workers > 1: the Indexed Job and Service it becomes, and the gang seen as one pod."""

from __future__ import annotations

from typing import Any

from shoal.api.session import TrainingSessionSpec
from shoal.builders.gang import JOB_NAME_LABEL, gang_job, gang_service, service_name
from shoal.builders.session import GANG_INDEX_LABEL, supporting_objects
from shoal.sessions.gang import gang_pod
from shoal.sessions.steps import PodState
from shoal.vocab import ANN_PROGRESS
from testbed.localpod import expand

SPEC = {
    "game": "regression",
    "algorithm": "ddp",
    "totalTimesteps": 1000,
    "image": "trainer:1",
    "command": ["shoal-agent", "--", "torchrun", "-m", "shoal.examples.ddp_regression"],
    "workers": 3,
}


def spec(**kw: Any) -> TrainingSessionSpec:
    return TrainingSessionSpec.model_validate({**SPEC, **kw})


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_job_runs_every_worker_once_as_one_indexed_gang_meeting_at_worker_0() -> None:
    job = gang_job("s", "uid-1", "s-2", spec(), "nvidia.com/gpu", resume_from="/checkpoints/a.pt")
    js = job["spec"]
    assert (js["completionMode"], js["completions"], js["parallelism"], js["backoffLimit"]) == (
        "Indexed",
        3,
        3,
        0,
    )
    assert js["template"]["spec"]["subdomain"] == service_name("s") == "s-workers"
    assert js["template"]["spec"]["restartPolicy"] == "Never"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert "ownerReferences" not in js["template"]["metadata"]  # the Job owns its pods
    env = env_of(job)
    assert env["PET_NNODES"] == "3" and env["PET_NPROC_PER_NODE"] == "1"
    assert env["PET_RDZV_BACKEND"] == "c10d"
    assert env["PET_RDZV_ENDPOINT"] == "s-2-0.s-workers:29400"
    assert env["PET_RDZV_ID"] == "s-2"
    assert env["SHOAL_WORKER_INDEX"] == {
        "fieldRef": {"fieldPath": f"metadata.annotations['{GANG_INDEX_LABEL}']"}
    }
    assert env["PET_LOCAL_ADDR"] == "s-2-$(SHOAL_WORKER_INDEX).s-workers"
    assert env["SHOAL_RESUME_FROM"] == "/checkpoints/a.pt"
    # The index is defined before the variable that expands it, as the kubelet requires.
    names = [e["name"] for e in js["template"]["spec"]["containers"][0]["env"]]
    assert names.index("SHOAL_WORKER_INDEX") < names.index("PET_LOCAL_ADDR")
    assert expand(env["PET_LOCAL_ADDR"], {"SHOAL_WORKER_INDEX": "2"}) == "s-2-2.s-workers"


def test_a_worker_with_gpus_runs_one_process_per_gpu() -> None:
    job = gang_job("s", "u", "s-1", spec(resources={"gpu": 4}), "nvidia.com/gpu")
    assert env_of(job)["PET_NPROC_PER_NODE"] == "4"
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "4"


def test_the_workers_service_lists_them_before_they_are_ready_and_endpoints_are_worker_0s() -> None:
    svc = gang_service("s", "u")
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    objs = {o["kind"]: o for o in supporting_objects("s", "u", "ns", spec())}
    assert objs["Service"]["spec"]["selector"][GANG_INDEX_LABEL] == "0"
    assert objs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    single = {o["kind"]: o for o in supporting_objects("s", "u", "ns", spec(workers=1))}
    assert GANG_INDEX_LABEL not in single["Service"]["spec"]["selector"]
    assert single["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_expand_follows_the_kubelets_dependent_variables() -> None:
    assert expand("a-$(X)-$(Y)-$$(X)", {"X": "1"}) == "a-1-$(Y)-$(X)"


# --- the gang as one pod --------------------------------------------------------------------------------

JOB = {"metadata": {"name": "s-1", "uid": "job-uid", "creationTimestamp": "2026-12-07T10:00:00Z"}}


def worker(
    index: int, phase: str = "Running", ready: bool = True, ann: dict[str, str] | None = None
) -> dict[str, Any]:
    conds = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {
        "metadata": {
            "name": f"s-1-{index}-abcde",
            "labels": {JOB_NAME_LABEL: "s-1", GANG_INDEX_LABEL: str(index)},
            "annotations": dict(ann or {}),
            "creationTimestamp": "2026-12-07T10:00:01Z",
        },
        "status": {"phase": phase, "conditions": conds},
    }


def test_the_gang_speaks_through_worker_0_and_is_ready_only_with_every_worker() -> None:
    pods = [worker(0, ann={ANN_PROGRESS: '{"timesteps": 5}'}), worker(1), worker(2, ready=False)]
    view = gang_pod(JOB, pods, 3)
    assert view is not None
    state = PodState.of(view)
    assert (state.name, state.uid, state.phase, state.ready) == ("s-1", "job-uid", "Running", False)
    assert state.progress == {"timesteps": 5}
    assert view["leader"] == "s-1-0-abcde" and view["readyWorkers"] == 2
    assert view["workerPods"] == ["s-1-0-abcde", "s-1-1-abcde", "s-1-2-abcde"]
    all_ready = PodState.of(gang_pod(JOB, [worker(0), worker(1), worker(2)], 3) or {})
    assert all_ready.ready
    # One worker not created yet: not ready, whatever the others say.
    assert not PodState.of(gang_pod(JOB, [worker(0), worker(1)], 3) or {}).ready


def test_any_lost_worker_or_a_failed_job_fails_the_gang() -> None:
    view = gang_pod(JOB, [worker(0), worker(1, "Failed"), worker(2)], 3)
    assert view is not None and view["status"]["phase"] == "Failed" and view["lost"] == [1]
    failed = {
        **JOB,
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
    }
    assert (gang_pod(failed, [worker(0), worker(1), worker(2)], 3) or {})["status"]["phase"] == "Failed"
    assert gang_pod(None, [worker(0)], 3) is None
    deleting = {"metadata": {**JOB["metadata"], "deletionTimestamp": "2026-12-07T10:05:00Z"}}
    assert gang_pod(deleting, [worker(0)], 3) is None


def test_worker_0_done_waits_for_the_others_finishing_the_same_step() -> None:
    pods = [worker(0, "Succeeded", ready=False), worker(1, "Running"), worker(2, "Succeeded", ready=False)]
    assert (gang_pod(JOB, pods, 3) or {})["status"]["phase"] == "Running"
    done = [worker(i, "Succeeded", ready=False) for i in range(3)]
    assert (gang_pod(JOB, done, 3) or {})["status"]["phase"] == "Succeeded"


def test_an_unschedulable_worker_holds_the_gang_with_the_schedulers_words() -> None:
    stuck = worker(2, "Pending", ready=False)
    stuck["status"]["conditions"].append(
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes: Insufficient nvidia.com/gpu",
        }
    )
    state = PodState.of(gang_pod(JOB, [worker(0), worker(1), stuck], 3) or {})
    assert state.unschedulable == "0/3 nodes: Insufficient nvidia.com/gpu"


def test_pods_of_other_jobs_or_being_deleted_are_not_the_gangs() -> None:
    other = worker(0)
    other["metadata"]["labels"][JOB_NAME_LABEL] = "s-0"
    other["status"]["phase"] = "Failed"
    gone = worker(1, "Failed")
    gone["metadata"]["deletionTimestamp"] = "2026-12-07T10:02:00Z"
    view = gang_pod(JOB, [other, gone, worker(0), worker(1), worker(2)], 3)
    assert view is not None and view["status"]["phase"] == "Running" and view["lost"] == []
