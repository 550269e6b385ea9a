"""Run a KWOK pod's container as a local process, the way a kubelet would start it.

KWOK simulates pods without running anything. For the pods whose behaviour is the point (a training
session's agent, a pool pod's agent), this plays the kubelet's part on this machine:

- the container's command and args (`shoal-agent` resolves to this Python's `-m shoal.agent`);
- its environment: literal values and the downward API's metadata.name/namespace/uid fieldRefs;
- its volumes: ConfigMaps written out as files, PVCs as folders that outlive the pod (so checkpoints
  survive a restart), emptyDirs as folders of this pod; paths in env values are mapped onto them;
- its credentials: a token of the pod's ServiceAccount bound to the pod (TokenRequest, as the
  kubelet asks for one), in a kubeconfig of its own: the process has the pod's permissions only;
  where the pod mounts its token, also as the kubelet's files (token, ca.crt, namespace) with
  KUBERNETES_SERVICE_HOST/PORT, for processes that call the API server without a kubeconfig;
- its end: the pod's phase becomes Succeeded or Failed when the process exits (restartPolicy Never).

`exec` runs a further process in the container (a runner's job hook, `kubectl exec`): same
environment, volumes and token, without any say over the pod's phase.

Ports the agent would open on the pod IP are given free loopback ports instead (`ports`).
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from shoal.agent.proctree import ProcessTree
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import pods_path
from testbed.cluster import HOST, PKI, PORTS, STATE

ROOT = Path(__file__).resolve().parents[1]
LOCAL = STATE / "localpods"
AGENT_PORTS = {
    "tensorboard": "SHOAL_TENSORBOARD_PORT",
    "video": "SHOAL_STREAM_PORT",
    "metrics": "SHOAL_AGENT_PORT",
}
TOKEN_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
FIELD_REFS = {"metadata.name": "name", "metadata.namespace": "namespace", "metadata.uid": "uid"}
# On a cluster a pod's processes run on its node, never on the control plane's or the operator's
# cores. Here they share this machine's two cores with both, so they run at the lowest CPU priority:
# whatever the control plane and the operator need they get first, as they would on their own
# machines, and the pods share the rest among themselves. (No cgroups here: crun refuses them.)
NICENESS = 19


def expand(value: str, env: dict[str, str]) -> str:
    """A kubelet's dependent variables: $(NAME) of a variable defined before, $$ for a literal $."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
        lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]),
        value,
    )


def autogroups() -> bool:
    """Whether the kernel groups CPU scheduling by session (sched_autogroup_enabled)."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def deprioritise(pid: int) -> bool:
    """Give the session led by `pid` the pods' niceness as a whole. With the kernel's autogroups on (a
    new session is a new group, and CPU is shared between groups first), a process's own nice counts
    only inside its group: measured here, 4 spinning pods at nice 19 still took 58 % of a core from
    a process at nice 0; with their groups at 19 as well, 1 %. False where there are no autogroups."""
    if not autogroups():
        return False
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(NICENESS))
    except OSError:  # the process has already exited: nothing left to deprioritise
        return False
    return True


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing uses, from below the kernel's ephemeral range. A port the kernel hands out for a
    bind to 0 is free again once returned, so any outgoing connection may take it as its local end
    before the caller listens on it (an operator in the tests once failed to start so); ports below
    the range are never chosen for outgoing connections. Random, so concurrent callers rarely meet."""
    low = _ephemeral_low()
    if low > 22000:
        for _ in range(100):
            port = random.randrange(21000, min(low, 32768))
            with socket.socket() as s:
                try:
                    s.bind(("0.0.0.0", port))  # also taken if anything listens on any address
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pod_token(kube: Kube, pod: dict[str, Any], seconds: int = 3600) -> str:
    meta = pod["metadata"]
    account = pod["spec"].get("serviceAccountName") or "default"
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        },
    }
    path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token"
    return str(kube.create(path, body)["status"]["token"])


def token_kubeconfig(path: Path, token: str) -> Path:
    ca = base64.b64encode((PKI / "ca.crt").read_bytes()).decode()
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster: {{server: "https://{HOST}:{PORTS["kube-apiserver"]}", certificate-authority-data: {ca}}}
users:
- name: pod
  user: {{token: {token}}}
contexts:
- name: pod
  context: {{cluster: testbed, user: pod}}
current-context: pod
"""
    )
    path.chmod(0o600)
    return path


class LocalPod:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        hosts: dict[str, str] | None = None,
    ) -> None:
        """`command` replaces the trainer (a test double instead of the real one); `env` is set over
        the container's own (say, SHOAL_TENSORBOARD_PORT=0 where no test opens TensorBoard); `hosts`
        plays the cluster DNS's part: each name (or name:port) in the container's env values becomes
        the local address given (a gang's workers, `<job>-<i>.<service>`, as 127.0.0.<i+1>)."""
        self.kube = kube
        self.pod = kube.get(pods_path(namespace, name))
        self.meta = self.pod["metadata"]
        self.dir = LOCAL / self.meta["uid"]
        self.command = command
        self.extra_env = env or {}
        self.hosts = dict(sorted((hosts or {}).items(), key=lambda kv: -len(kv[0])))  # name:port first
        self.ports = {port: free_port() for port in AGENT_PORTS}
        self.proc: subprocess.Popen[bytes] | None = None
        self.mounts: dict[str, Path] = {}
        self.prepared = False
        self.kubeconfig = self.dir / "kubeconfig"

    @property
    def container(self) -> dict[str, Any]:
        return dict(self.pod["spec"]["containers"][0])

    def _volumes(self) -> None:
        ns = self.meta["namespace"]
        volumes = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        for mount in self.container.get("volumeMounts") or []:
            vol = volumes.get(mount["name"], {})
            if "persistentVolumeClaim" in vol:
                local = LOCAL / "pvc" / ns / vol["persistentVolumeClaim"]["claimName"]
            else:
                local = self.dir / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "configMap" in vol:
                cm = self.kube.get(f"/api/v1/namespaces/{ns}/configmaps/{vol['configMap']['name']}")
                for key, value in (cm.get("data") or {}).items():
                    (local / key).write_text(value)
            self.mounts[mount["mountPath"].rstrip("/")] = local

    def _path(self, value: str) -> str:
        for mount, local in sorted(self.mounts.items(), key=lambda kv: -len(kv[0])):
            if value == mount or value.startswith(mount + "/"):
                return str(local) + value[len(mount) :]
        return value

    def environment(self) -> dict[str, str]:
        env = {
            # The image's tools (shoal-agent, torchrun) are this environment's.
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.dir),
            "LANG": "C.UTF-8",
            "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT}",
            "KUBECONFIG": str(self.kubeconfig),
            "SHOAL_BIND": HOST,
        }
        own: dict[str, str] = {}  # the container's variables so far: what $(VAR) may refer to
        for var in self.container.get("env") or []:
            if "value" in var:
                own[var["name"]] = self._host(self._path(expand(str(var["value"]), own)))
            elif (ref := (var.get("valueFrom") or {}).get("fieldRef")) and (
                value := self._field(ref["fieldPath"])
            ):
                own[var["name"]] = value
        env.update(own)
        if TOKEN_MOUNT in self.mounts:
            env["KUBERNETES_SERVICE_HOST"] = HOST
            env["KUBERNETES_SERVICE_PORT"] = str(PORTS["kube-apiserver"])
        env.update({AGENT_PORTS[port]: str(p) for port, p in self.ports.items()})
        env.update(self.extra_env)
        return env

    def _field(self, path: str) -> str | None:
        """The downward API: metadata.name/namespace/uid, metadata.annotations['k'] and labels['k']."""
        if path in FIELD_REFS:
            return str(self.meta[FIELD_REFS[path]])
        match = re.fullmatch(r"metadata\.(annotations|labels)\['([^']+)'\]", path)
        if match:
            return str((self.meta.get(match[1]) or {}).get(match[2], ""))
        return None

    def _host(self, value: str) -> str:
        for name, local in self.hosts.items():
            value = value.replace(name, local)
        return value

    def argv(self) -> list[str]:
        cmd = list(self.container.get("command") or ["shoal-agent"])
        if cmd[0] == "shoal-agent":
            cmd = [sys.executable, "-m", "shoal.agent", *cmd[1:]]
        cmd += list(self.container.get("args") or [])
        if self.command:
            cmd = [*cmd, "--", *self.command] if cmd[2:3] == ["shoal.agent"] else list(self.command)
        return cmd

    def _prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._volumes()
        token = pod_token(self.kube, self.pod)
        token_kubeconfig(self.kubeconfig, token)
        if self.pod["spec"].get("automountServiceAccountToken", True):
            account = self.dir / "serviceaccount"
            account.mkdir(exist_ok=True)
            (account / "token").write_text(token)
            (account / "ca.crt").write_bytes((PKI / "ca.crt").read_bytes())
            (account / "namespace").write_text(self.meta["namespace"])
            self.mounts[TOKEN_MOUNT] = account
        self.prepared = True

    def exec(self, argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the container beside its main process, to its end."""
        if not self.prepared:
            self._prepare()
        return subprocess.run(
            argv, env=self.environment(), capture_output=True, text=True, cwd=self.dir, timeout=timeout
        )

    def start(self) -> LocalPod:
        shutil.rmtree(self.dir, ignore_errors=True)
        self._prepare()
        log = open(self.dir / "output.log", "wb")  # noqa: SIM115
        # A process group of its own: stopping the pod ends the agent and its trainer together,
        # as the end of a container's PID namespace would.
        self.proc = subprocess.Popen(
            ["nice", "-n", str(NICENESS), *self.argv()],  # nice execs the command: same pid, same cmdline
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,
        )
        deprioritise(self.proc.pid)  # its session exists once Popen returns
        threading.Thread(target=self._on_exit, daemon=True).start()
        return self

    def _on_exit(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        if code < 0:  # killed by the test itself (stop): the pod's fate is the test's
            return
        phase = "Succeeded" if code == 0 else "Failed"
        with contextlib.suppress(ApiError):  # the pod may be gone already
            self.kube.merge_patch(
                pods_path(self.meta["namespace"], self.meta["name"]) + "/status", {"status": {"phase": phase}}
            )

    def output(self) -> str:
        path = self.dir / "output.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, grace: float = 5.0) -> None:
        """As a kubelet ends a deleted pod: SIGTERM to its first process (the container runtime signals
        PID 1 only; the agent passes it on, or not), SIGKILL to the whole group after the grace."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        below = ProcessTree(self.proc.pid).pids()  # a launcher's workers may be in sessions of their own
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the trainer too, even if the agent is gone
        for pid in below[1:]:  # what the end of the container's PID namespace would take with it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    """`python -m testbed.localpod [-n NAMESPACE] POD`: run that pod's agent here until it exits."""
    import argparse

    from testbed.cluster import KUBECONFIG

    parser = argparse.ArgumentParser(prog="python -m testbed.localpod", description=main.__doc__)
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("pod")
    args = parser.parse_args(argv)
    os.environ.setdefault("KUBECONFIG", str(KUBECONFIG))
    pod = LocalPod(Kube(), args.namespace, args.pod).start()
    print(f"running {args.namespace}/{args.pod} here (output: {pod.dir / 'output.log'})")
    print(f"  TensorBoard  http://{HOST}:{pod.ports['tensorboard']}/")
    print(f"  live stream  http://{HOST}:{pod.ports['video']}/   (videoRecording: true)")
    print(f"  agent        http://{HOST}:{pod.ports['metrics']}/metrics", flush=True)
    assert pod.proc is not None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return pod.proc.wait()
    except (KeyboardInterrupt, SystemExit):
        pod.stop()
        return 130


if __name__ == "__main__":
    sys.exit(main())
