"""Kubeflow Trainer v2 and the JobSet controller it renders to, on the test bed, for the TrainJob tests.

Both are built from their published Go modules (build.sh, pinned in versions.env) and run as local
processes like the Kubernetes components. They are installed and removed on demand
(`python testbed/cluster.py kubeflow-up | kubeflow-down`, or the e2e fixture), so that every other
test sees a cluster that serves no TrainJobs, where Shoal runs a gang as its own Indexed Job.

What running them outside a pod takes, found by trying (docs/sessions.md):
- their webhooks are called by URL on 127.0.0.1 with a certificate of our CA (no Service to route to);
  JobSet's controller panics on a JobSet its defaulting webhook did not see, so they are not optional;
- the Trainer's certificate rotator keeps a Secret it accepts: a CA whose name is the rotator's own
  and a serving certificate for its Service's DNS name (here also for 127.0.0.1); it reads them from a
  fixed directory, where a pod would mount that Secret.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

from testbed.components import BY_NAME
from testbed.config import CACHE, HOST, PKI, PORTS, STATE, TestbedError, log, versions
from testbed.pki import kubeflow_certs
from testbed.processes import pid_of, start, stop
from testbed.seed import kubectl

NAMESPACE = "kubeflow-system"  # the Trainer's default when no service account file names one
TRAINER_SECRET = "kubeflow-trainer-webhook-cert"
TRAINER_WEBHOOKS = "validator.trainer.kubeflow.org"  # the configuration its rotator fills in
JOBSET_WEBHOOKS = "shoal-testbed-jobset"
CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # fixed in the Trainer (pkg/util/cert)
RUNTIME_FINALIZER = "trainer.kubeflow.org/resource-in-use"
CONTROLLERS = ("jobset", "trainer-controller-manager")


def crd_files() -> list[Path]:
    v = versions()
    dirs = [
        CACHE / "bin" / f"jobset-{v['JOBSET_VERSION']}" / "crds",
        CACHE / "bin" / f"trainer-controller-manager-{v['KUBEFLOW_TRAINER_VERSION']}" / "crds",
    ]
    files = sorted(p for d in dirs for p in d.glob("*.yaml"))
    if len(files) != 4:
        raise TestbedError(f"Kubeflow CRDs missing under {dirs}; run `make testbed-build`")
    return files


def write_jobset_config() -> Path:
    path = STATE / "jobset.yaml"
    path.write_text(
        f"""apiVersion: config.jobset.x-k8s.io/v1alpha1
kind: Configuration
leaderElection: {{leaderElect: false}}
internalCertManagement: {{enable: false}}
webhook: {{host: {HOST}, port: {PORTS["jobset-webhook"]}, certDir: {PKI / "kubeflow"}}}
metrics: {{bindAddress: "{HOST}:{PORTS["jobset-metrics"]}"}}
health: {{healthProbeBindAddress: "{HOST}:{PORTS["jobset-health"]}"}}
"""
    )
    return path


def _hook(name: str, port: str, path: str, resource: str, ops: list[str], ca: str) -> dict[str, object]:
    group, version = ("", "v1") if resource == "pods" else _group_version(resource)
    hook: dict[str, object] = {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "clientConfig": {"url": f"https://{HOST}:{PORTS[port]}{path}", "caBundle": ca},
        "rules": [
            {"apiGroups": [group], "apiVersions": [version], "operations": ops, "resources": [resource]}
        ],
    }
    if resource == "pods":  # JobSet's own scoping: only the pods of its Jobs
        hook["objectSelector"] = {
            "matchExpressions": [{"key": "jobset.sigs.k8s.io/jobset-name", "operator": "Exists"}]
        }
    return hook


def _group_version(resource: str) -> tuple[str, str]:
    if resource == "jobsets":
        return "jobset.x-k8s.io", "v1alpha2"
    return "trainer.kubeflow.org", "v1alpha1"


def webhook_configurations(ca: str) -> list[dict[str, object]]:
    j, t = "jobset-webhook", "trainer-webhook"
    trainer_hooks = [
        _hook(
            f"validator.{kind}.trainer.kubeflow.org",
            t,
            f"/validate-trainer-kubeflow-org-v1alpha1-{kind}",
            f"{kind}s",
            ["CREATE", "UPDATE"],
            ca,
        )
        for kind in ("clustertrainingruntime", "trainingruntime", "trainjob")
    ]
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": JOBSET_WEBHOOKS},
            "webhooks": [
                _hook(
                    "mjobset.kb.io", j, "/mutate-jobset-x-k8s-io-v1alpha2-jobset", "jobsets", ["CREATE"], ca
                ),
                _hook("mpod.kb.io", j, "/mutate--v1-pod", "pods", ["CREATE"], ca),
            ],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": JOBSET_WEBHOOKS},
            "webhooks": [
                _hook(
                    "vjobset.kb.io",
                    j,
                    "/validate-jobset-x-k8s-io-v1alpha2-jobset",
                    "jobsets",
                    ["CREATE", "UPDATE"],
                    ca,
                ),
                _hook("vpod.kb.io", j, "/validate--v1-pod", "pods", ["CREATE"], ca),
            ],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": TRAINER_WEBHOOKS},
            "webhooks": trainer_hooks,
        },
    ]


def _apply(*objs: dict[str, object]) -> None:
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        stdin=json.dumps({"kind": "List", "apiVersion": "v1", "items": list(objs)}),
    )


def up() -> None:
    """CRDs, certificates, webhooks, then JobSet's controller and the Trainer's (in that order: the
    Trainer looks for JobSet's API when it starts)."""
    if all(pid_of(c) for c in CONTROLLERS) and all(BY_NAME[c].health() for c in CONTROLLERS):
        log("kubeflow: already running")
        return
    certs = kubeflow_certs()
    for crd in crd_files():
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    # Each file is <group>_<plural>.yaml, the CRD <plural>.<group>.
    _established([".".join(reversed(p.stem.split("_", 1))) for p in crd_files()])
    data = {
        name: base64.b64encode((certs / name).read_bytes()).decode()
        for name in ("ca.crt", "ca.key", "tls.crt", "tls.key")
    }
    _apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": TRAINER_SECRET, "namespace": NAMESPACE},
            "data": data,
        },
        *webhook_configurations(data["ca.crt"]),
    )
    CERT_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "tls.crt", "tls.key"):
        shutil.copy(certs / name, CERT_DIR / name)
    write_jobset_config()
    for name in CONTROLLERS:
        start(name)


def down() -> None:
    """Everything up() made, and every TrainJob, JobSet and runtime with the CRDs (a cluster that
    serves no TrainJobs again)."""
    if pid_of("trainer-controller-manager"):
        kubectl(
            "delete", "trainjobs.trainer.kubeflow.org", "--all", "-A", "--wait=false", "--ignore-not-found"
        )
    stop("trainer-controller-manager")
    kubectl("delete", "validatingwebhookconfiguration", TRAINER_WEBHOOKS, "--ignore-not-found")
    for kind in ("trainingruntimes", "clustertrainingruntimes"):
        _drop_finalizers(f"{kind}.trainer.kubeflow.org")
    stop("jobset")
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        kubectl("delete", kind, JOBSET_WEBHOOKS, "--ignore-not-found")
    for crd in crd_files():
        kubectl("delete", "-f", str(crd), "--ignore-not-found", "--wait=false")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = kubectl("get", "crd", "-o", "name").split()
        if not any("trainer.kubeflow.org" in c or "jobset.x-k8s.io" in c for c in left):
            log("kubeflow: removed")
            return
        time.sleep(0.5)
    raise TestbedError("Kubeflow CRDs still present 60 s after their deletion")


def _established(names: list[str], timeout: float = 60) -> None:
    """Poll, not `kubectl wait`: a CRD just applied has no conditions yet, which `wait` calls an error."""
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(kubectl("get", "crd", n, "-o", f"jsonpath={jsonpath}") == "True" for n in names):
            return
        time.sleep(0.25)
    raise TestbedError(f"CRDs {names} not Established within {timeout:.0f} s")


def _drop_finalizers(kind: str) -> None:
    """The Trainer marks a runtime in use; with the Trainer gone nothing would take that mark off."""
    try:
        rows = kubectl(
            "get",
            kind,
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{'\\n'}{end}",
        )
    except TestbedError:
        return  # the CRD is not there
    for row in rows.split():
        ns, name = row.split("/", 1)
        where = ["-n", ns] if ns else []
        kubectl("patch", kind, name, *where, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
