from __future__ import annotations

from typing import Any

from shoal.api.pool import ContainerPoolSpec
from shoal.builders.pod import build_pod, template_hash


def spec(containers: list[dict[str, Any]] | None = None, **kw: Any) -> ContainerPoolSpec:
    return ContainerPoolSpec.model_validate(
        {
            "template": {
                "metadata": {"labels": {"app": "runner"}},
                "spec": {"containers": containers or [{"name": "c", "image": "busybox"}]},
            },
            **kw,
        }
    )


def test_resources_become_requests_and_limits_of_the_first_container() -> None:
    s = spec(resources={"cpu": "500m", "memory": "1Gi", "gpu": 1, "ephemeralStorage": "2Gi"})
    pod = build_pod("pool", "uid", s, template_hash(s), gpu_resource="example.com/gpu")
    res = pod["spec"]["containers"][0]["resources"]
    want = {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "2Gi", "example.com/gpu": "1"}
    assert res == {"requests": want, "limits": want}


def test_template_resources_win_over_the_convenience_fields() -> None:
    own = {"requests": {"cpu": "2"}}
    s = spec([{"name": "c", "image": "busybox", "resources": own}], resources={"cpu": "500m"})
    assert build_pod("pool", "uid", s, "h")["spec"]["containers"][0]["resources"] == own


def test_pod_is_owned_labelled_and_restricted_by_default() -> None:
    s = spec()
    pod = build_pod("pool", "uid-1", s, "h1")
    meta = pod["metadata"]
    assert meta["generateName"] == "pool-"
    assert meta["labels"] == {
        "app": "runner",
        "shoal.dev/pool": "pool",
        "shoal.dev/state": "Unclaimed",
        "shoal.dev/template-hash": "h1",
        "shoal.dev/managed": "true",  # what the operator's pod watch selects on
    }
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ContainerPool", "uid-1", True)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_user_security_context_is_kept() -> None:
    s = spec([{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}])
    assert build_pod("p", "u", s, "h")["spec"]["containers"][0]["securityContext"] == {"privileged": True}


def test_template_hash_changes_with_the_template_only() -> None:
    a, b = spec(replicas=1), spec(replicas=9)
    c = spec([{"name": "c", "image": "busybox:2"}])
    assert template_hash(a) == template_hash(b) != template_hash(c)


def test_a_session_agent_pool_gives_each_pod_its_identity_environment_and_folders() -> None:
    agent_pool = spec(sessionAgent={"checkpointClaimName": "shared-ckpt"})
    pod = build_pod("p", "uid-1", agent_pool, "h", name="p-abcde")
    assert pod["metadata"]["name"] == "p-abcde" and "generateName" not in pod["metadata"]
    assert pod["spec"]["serviceAccountName"] == "p-abcde"
    assert pod["spec"]["automountServiceAccountToken"] is True  # the agent watches its pod with it
    c = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "SHOAL_WORKDIR": "/shoal",
        "SHOAL_CHECKPOINT_DIR": "/checkpoints",
    }
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes[mounts["/checkpoints"]]["persistentVolumeClaim"] == {"claimName": "shared-ckpt"}
    assert volumes[mounts["/shoal"]]["emptyDir"] == {}
    # Without a claim the checkpoints live in the pod; a template's own mount is left alone.
    mine = [
        {"name": "c", "image": "busybox", "volumeMounts": [{"name": "mine", "mountPath": "/checkpoints"}]}
    ]
    pod = build_pod("p", "u", spec(mine, sessionAgent={}), "h", name="p-x")
    assert [m["name"] for m in pod["spec"]["containers"][0]["volumeMounts"]] == ["mine", "shoal-work"]
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["shoal-work"]
    # The pods differ, so the hash does; pools without an agent keep theirs.
    assert template_hash(agent_pool) != template_hash(spec())
    assert "serviceAccountName" not in build_pod("p", "u", spec(), "h")["spec"]


def test_own_pod_access_gives_each_pod_its_identity_and_nothing_of_the_agent() -> None:
    plain, own = spec(), spec(ownPodAccess=True)
    pod = build_pod("pool", "uid-1", own, "h1", name="pool-abc12")
    ps = pod["spec"]
    assert ps["serviceAccountName"] == "pool-abc12" and ps["automountServiceAccountToken"] is True
    env = {e["name"] for e in ps["containers"][0]["env"]}
    assert env == {"POD_NAME", "POD_NAMESPACE"}  # no SHOAL_WORKDIR: no agent here
    assert "volumes" not in ps or not ps["volumes"]
    assert template_hash(own) != template_hash(plain)  # turning it on replaces the pods
    assert "serviceAccountName" not in build_pod("pool", "uid-1", plain, "h1")["spec"]


def test_a_session_pod_runs_as_restricted_asks_unless_its_spec_says_whom_to_run_as() -> None:
    from shoal.api.session import TrainingSessionSpec
    from shoal.builders.session import session_pod

    def security(**spec: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        s = TrainingSessionSpec.model_validate(
            {"game": "CartPole-v1", "algorithm": "PPO", "totalTimesteps": 10, "image": "t:1", **spec}
        )
        pod = session_pod("s", "u", "s-1", s, "nvidia.com/gpu")["spec"]
        return pod["securityContext"], pod["containers"][0]["securityContext"]

    restricted_container = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert security() == (
        {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        restricted_container,
    )
    as_root = security(securityContext={"runAsNonRoot": False, "runAsUser": 0, "runAsGroup": 0})
    assert as_root == (
        {
            "runAsNonRoot": False,
            "runAsUser": 0,
            "runAsGroup": 0,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        restricted_container,
    )
    # A user id alone keeps runAsNonRoot: the image's user must then not be root either.
    assert security(securityContext={"runAsUser": 1000, "fsGroup": 1000})[0] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_every_pod_running_the_agent_declares_its_metrics_port_by_name() -> None:
    """What the chart's agentPodMonitor scrapes: shoal-metrics on a sessionAgent pool's pods (not on
    other pools'), unless the template declares the port itself."""
    port = {"name": "shoal-metrics", "containerPort": 9400}
    agent = build_pod("p", "u", spec(sessionAgent={}), "h", name="p-a")
    assert agent["spec"]["containers"][0]["ports"] == [port]
    assert "ports" not in build_pod("p", "u", spec(), "h")["spec"]["containers"][0]
    own = [{"name": "c", "image": "busybox", "ports": [{"name": "agent", "containerPort": 9400}]}]
    kept = build_pod("p", "u", spec(own, sessionAgent={}), "h", name="p-b")
    assert kept["spec"]["containers"][0]["ports"] == [{"name": "agent", "containerPort": 9400}]
