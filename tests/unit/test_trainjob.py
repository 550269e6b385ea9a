"""A gang on Kubeflow Trainer: the TrainingRuntime (the session's pod as a torch runtime), the TrainJob,
suspension, and the TrainJob's pods seen as one (a suspended gang until its last pod is gone)."""

from __future__ import annotations

import json
from typing import Any

from shoal.api.session import TrainingSessionSpec
from shoal.builders.gang import JOB_NAME_LABEL
from shoal.builders.session import GANG_INDEX_LABEL, session_pod, supporting_objects
from shoal.builders.trainjob import (
    ANCESTOR_LABEL,
    NODE,
    node_job,
    suspension,
    train_job,
    training_runtime,
)
from shoal.k8s.client import ApiError
from shoal.sessions.gang import gang_pod
from shoal.sessions.steps import PodState
from shoal.vocab import ANN_PROGRESS, ANN_SPEC_HASH, ANN_STARTED, LABEL_SESSION
from tests.unit.test_gang import SPEC


def spec(**kw: Any) -> TrainingSessionSpec:
    return TrainingSessionSpec.model_validate({**SPEC, **kw})


def test_the_runtime_is_the_sessions_own_pod_as_a_torch_runtime_of_n_nodes() -> None:
    rt = training_runtime("s", "uid-1", spec(resources={"gpu": 2}), "nvidia.com/gpu")
    assert (rt["apiVersion"], rt["kind"], rt["metadata"]["name"]) == (
        "trainer.kubeflow.org/v1alpha1",
        "TrainingRuntime",
        "s",
    )
    assert rt["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert rt["spec"]["mlPolicy"] == {"numNodes": 3, "torch": {"numProcPerNode": 2}}
    [rjob] = rt["spec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == NODE and rjob["replicas"] == 1
    assert rjob["template"]["metadata"]["labels"] == {ANCESTOR_LABEL: "trainer"}
    assert rjob["template"]["spec"]["backoffLimit"] == 0
    pod = rjob["template"]["spec"]["template"]
    # The pod the session would run itself: its label (its Service, the operator's watch), account,
    # volumes and restricted security; the container named as the torch plugin looks for it.
    own = session_pod("s", "uid-1", "s", spec(resources={"gpu": 2}), "nvidia.com/gpu")
    assert pod["metadata"]["labels"][LABEL_SESSION] == "s"
    assert {k: v for k, v in pod["spec"].items() if k != "containers"} == {
        k: v for k, v in own["spec"].items() if k != "containers"
    }
    [container] = pod["spec"]["containers"]
    assert container["name"] == NODE
    assert container["resources"] == own["spec"]["containers"][0]["resources"]
    assert container["securityContext"] == own["spec"]["containers"][0]["securityContext"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["SHOAL_WORKERS"] == "3"
    assert env["SHOAL_WORKER_INDEX"] == {
        "fieldRef": {"fieldPath": f"metadata.annotations['{GANG_INDEX_LABEL}']"}
    }
    # torchrun's variables are the Trainer's to set (it refuses them from users), and where to resume
    # is not in the environment (JobSet keeps a suspended pod template's env).
    assert not [n for n in env if n.startswith("PET_")] and "SHOAL_RESUME_FROM" not in env


def test_the_trainjob_names_the_runtime_the_nodes_and_what_spec_it_was_made_for() -> None:
    tj = train_job("s", "uid-1", "s-2", spec(), "hash-1", "2026-12-08T02:00:00Z")
    assert tj["kind"] == "TrainJob" and tj["metadata"]["name"] == "s-2"
    assert tj["metadata"]["labels"][LABEL_SESSION] == "s"
    assert tj["metadata"]["annotations"] == {ANN_SPEC_HASH: "hash-1", ANN_STARTED: "2026-12-08T02:00:00Z"}
    assert tj["spec"]["runtimeRef"] == {
        "name": "s",
        "apiGroup": "trainer.kubeflow.org",
        "kind": "TrainingRuntime",
    }
    assert tj["spec"]["trainer"] == {"numNodes": 3, "numProcPerNode": 1}
    assert tj["spec"]["suspend"] is False
    assert node_job("s-2") == "s-2-node-0"


def test_suspension_pauses_and_a_resume_marks_when_the_gang_started_again() -> None:
    assert suspension(True, "t1") == {"spec": {"suspend": True}}
    assert suspension(False, "t2") == {
        "spec": {"suspend": False},
        "metadata": {"annotations": {ANN_STARTED: "t2"}},
    }


def test_where_a_trainjob_resumes_from_is_in_the_sessions_config() -> None:
    def config(resume: str | None) -> dict[str, Any]:
        objs = supporting_objects("s", "uid-1", "ns", spec(), None, resume)
        cm = next(o for o in objs if o["kind"] == "ConfigMap")
        return dict(json.loads(cm["data"]["config.json"]))

    assert config("/checkpoints/ckpt-7.pt")["resumeFrom"] == "/checkpoints/ckpt-7.pt"
    assert "resumeFrom" not in config(None)


# --- a TrainJob's pods as one -----------------------------------------------------------------------------

TJ = {
    "metadata": {
        "name": "s-1",
        "uid": "tj-uid",
        "creationTimestamp": "2026-12-08T01:00:00Z",
        "annotations": {ANN_STARTED: "2026-12-08T02:00:00Z"},
    },
    "spec": {"suspend": False},
}


def node(
    index: int, phase: str = "Running", deleting: bool = False, ann: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": f"s-1-node-0-{index}-abcde",
        "labels": {JOB_NAME_LABEL: "s-1-node-0", GANG_INDEX_LABEL: str(index), LABEL_SESSION: "s"},
        "annotations": dict(ann or {}),
        "creationTimestamp": "2026-12-08T02:00:01Z",
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-08T02:05:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]}}


def view(tj: dict[str, Any], pods: list[dict[str, Any]], suspended: bool = False) -> dict[str, Any] | None:
    return gang_pod(
        tj,
        pods,
        3,
        job_name=node_job("s-1"),
        suspended=suspended,
        started=tj["metadata"]["annotations"][ANN_STARTED],
    )


def test_a_trainjobs_pods_are_the_gang_started_when_it_was_last_resumed() -> None:
    v = view(TJ, [node(0, ann={ANN_PROGRESS: '{"timesteps": 9}'}), node(1), node(2)])
    assert v is not None
    state = PodState.of(v)
    assert (state.name, state.uid, state.ready) == ("s-1", "tj-uid", True)
    assert state.progress == {"timesteps": 9}
    # The start timeout counts from the resume, not from the TrainJob's creation an hour before.
    assert v["metadata"]["creationTimestamp"] == "2026-12-08T02:00:00Z"
    assert v["leader"] == "s-1-node-0-0-abcde"


def test_a_failed_trainjob_fails_the_gang() -> None:
    failed = {
        **TJ,
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "JobSetFailed"}]},
    }
    assert (view(failed, [node(0), node(1), node(2)]) or {})["status"]["phase"] == "Failed"


def test_a_suspended_gang_is_its_terminating_pods_until_the_last_is_gone() -> None:
    suspended = {**TJ, "spec": {"suspend": True}}
    ending = [node(0, deleting=True, ann={ANN_PROGRESS: '{"ack": 4}'}), node(1, "Succeeded", deleting=True)]
    v = view(suspended, ending, suspended=True)
    # Worker 0's agent is still checkpointing: its report is the gang's, as for a pause of one pod.
    assert v is not None and PodState.of(v).progress == {"ack": 4}
    assert view(suspended, [], suspended=True) is None
    # Not suspended, pods being deleted are not the gang's (a replaced worker's).
    assert (view(TJ, ending) or {})["workerPods"] == []


# --- the engine's choice, suspension and resumption (reconcile/gang.Gangs, against a recording API) ----


class TrainerApi:
    """What Gangs asks of the API server: discovery, TrainJobs by label, and every write, recorded."""

    def __init__(
        self, served: bool, trainjobs: list[dict[str, Any]] | None = None, runtime_owner: str | None = None
    ) -> None:
        self.served = served
        self.trainjobs = trainjobs or []
        self.runtime_owner = runtime_owner  # the uid owning a TrainingRuntime "s" that exists already
        self.writes: list[tuple[str, str, Any]] = []

    def get(self, path: str) -> dict[str, Any]:
        assert path.endswith("/trainingruntimes/s") and self.runtime_owner is not None
        refs = [{"uid": self.runtime_owner}] if self.runtime_owner else []
        return {"metadata": {"name": "s", "ownerReferences": refs}}

    def get_if_exists(self, path: str) -> dict[str, Any] | None:
        if path == "/apis/trainer.kubeflow.org/v1alpha1":
            return (
                {"resources": [{"name": "trainjobs"}, {"name": "trainjobs/status"}]} if self.served else None
            )
        return None

    def list_items(self, path: str, selector: str | None = None) -> list[dict[str, Any]]:
        assert path.endswith("/trainjobs") and selector == f"{LABEL_SESSION}=s"
        return self.trainjobs

    def apply(self, namespace: str, body: dict[str, Any], create_only: bool = False) -> None:
        self.writes.append(("apply", body["kind"], body["metadata"]["name"]))

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if body["kind"] == "TrainingRuntime" and self.runtime_owner is not None:
            raise ApiError(409, "AlreadyExists", "exists")
        self.writes.append(("create", body["kind"], body["metadata"]["name"]))
        return body

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        what = patch.get("kind") or patch["spec"]
        self.writes.append(("patch", path.rsplit("/", 1)[-1], what))
        return patch

    merge_patch_if_exists = merge_patch

    def delete(self, path: str, uid: str | None = None, propagation: str | None = None) -> bool:
        self.writes.append(("delete", path.rsplit("/", 1)[-1], uid))
        return True


SESSION = {"metadata": {"name": "s", "namespace": "ns", "uid": "uid-1"}}


def gangs(api: TrainerApi) -> Any:
    from shoal.config import Settings
    from shoal.reconcile.gang import Gangs
    from shoal.runtime.store import Store

    return Gangs(api, Settings(), Store())  # type: ignore[arg-type]


def suspended(name: str, spec_hash: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"{name}-uid", "annotations": {ANN_SPEC_HASH: spec_hash}},
        "spec": {"suspend": True},
    }


def test_without_the_trainer_a_gang_is_shoals_own_indexed_job() -> None:
    api, status = TrainerApi(served=False), dict[str, Any]()
    assert gangs(api).create(SESSION, spec(), "s-1", None, status) == ""
    assert status == {"gangKind": "Job"}
    assert ("create", "Job", "s-1") in api.writes and not [w for w in api.writes if "Train" in w[1]]


def test_with_the_trainer_a_gang_is_a_trainjob_on_the_sessions_runtime() -> None:
    api, status = TrainerApi(served=True), dict[str, Any]()
    assert gangs(api).create(SESSION, spec(), "s-1", None, status) == ""
    assert status == {"gangKind": "TrainJob"}
    kinds = [(w[0], w[1], w[2]) for w in api.writes if w[1] in ("TrainingRuntime", "TrainJob", "Job")]
    assert kinds == [("create", "TrainingRuntime", "s"), ("create", "TrainJob", "s-1")]


def test_the_runtime_follows_the_spec_but_one_the_session_does_not_own_is_never_overwritten() -> None:
    api, status = TrainerApi(served=True, runtime_owner="uid-1"), dict[str, Any]()
    assert gangs(api).create(SESSION, spec(), "s-2", None, status) == ""
    assert ("patch", "s", "TrainingRuntime") in api.writes and ("create", "TrainJob", "s-2") in api.writes
    theirs = TrainerApi(served=True, runtime_owner="")
    failed = gangs(theirs).create(SESSION, spec(), "s-1", None, dict[str, Any]())
    assert failed == "TrainingRuntime s exists and is not this session's"
    assert not [w for w in theirs.writes if w[1] in ("TrainingRuntime", "TrainJob", "s")]


def test_a_resume_unsuspends_the_paused_trainjob_made_for_this_spec_and_drops_others() -> None:
    from shoal.sessions.steps import spec_hash

    api = TrainerApi(True, [suspended("s-1", "old-spec"), suspended("s-2", spec_hash(spec()))])
    status: dict[str, Any] = {"podName": "s-3"}
    assert gangs(api).create(SESSION, spec(), "s-3", "/checkpoints/c.pt", status) == ""
    assert status["podName"] == "s-2" and status["message"] == "resumed TrainJob s-2 from /checkpoints/c.pt"
    assert ("delete", "s-1", "s-1-uid") in api.writes  # another spec's: JobSet would refuse its template
    assert ("patch", "s-2", {"suspend": False}) in api.writes
    assert not [w for w in api.writes if w[0] == "create" and w[1] == "TrainJob"]


def test_pause_and_preemption_suspend_a_trainjob_while_restarts_and_stops_delete_it() -> None:
    api = TrainerApi(True)
    g = gangs(api)
    tj = {"gangKind": "TrainJob"}
    g.commanded("ns", "s-1", "checkpoint", tj)
    g.commanded("ns", "s-1", "pause", tj)
    g.let_go("ns", "s-1", "u", {**tj, "phase": "Paused"})
    g.let_go("ns", "s-1", "u", {**tj, "phase": "Pending", "reason": "Preempted"})
    assert api.writes == [("patch", "s-1", {"suspend": True})] * 3
    api.writes.clear()
    g.let_go("ns", "s-1", "u", {**tj, "phase": "Pending", "reason": "BackoffRestart"})
    g.let_go("ns", "s-1", "u", {**tj, "phase": "Stopped"})
    g.commanded("ns", "s-2", "pause", {"gangKind": "Job"})  # a Job is paused by its agents, then deleted
    g.let_go("ns", "s-2", "u", {"gangKind": "Job", "phase": "Paused"})
    assert api.writes == [("delete", "s-1", "u"), ("delete", "s-1", "u"), ("delete", "s-2", "u")]


def test_a_session_ended_while_paused_deletes_its_suspended_trainjob_but_a_finished_one_keeps_it() -> None:
    api = TrainerApi(True, [suspended("s-2", "h")])
    g = gangs(api)
    g.ended("ns", "s", {"gangKind": "TrainJob", "podName": "s-2"})  # finished running: kept, as a Job is
    g.ended("ns", "s", {"gangKind": "Job"})
    assert api.writes == []
    g.ended("ns", "s", {"gangKind": "TrainJob", "phase": "Paused"})
    assert api.writes == [("delete", "s-2", "s-2-uid")]
