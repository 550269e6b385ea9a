"""What every benchmark on the test bed shares: an operator process, waits, fresh namespaces, the API
server's request count. Percentiles and provenance are bench/stats.py's."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import pods_path
from testbed import cluster as testbed
from testbed.operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout:.0f}s")


class Operator(OperatorProcess):
    """The shared launcher (testbed/operator_process.py) with the chart's log level and format, a lease of its
    own per run at the shipped duration (no wait for an earlier run's to expire), its log appended to
    `testbed.LOGS/bench-operator.log` (or SHOAL_BENCH_OPERATOR_LOG), started at once; with `ready`,
    returns once it leads."""

    def __init__(self, ready: bool = True, env: dict[str, str] | None = None) -> None:
        log_file = Path(os.environ.get("SHOAL_BENCH_OPERATOR_LOG") or testbed.LOGS / "bench-operator.log")
        super().__init__(
            log_file=log_file, env={"SHOAL_LEASE_NAME": f"shoal-bench-{uuid.uuid4().hex[:6]}", **(env or {})}
        )
        self.start(ready=False)
        if ready:
            self.ready()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ready(self) -> None:
        self.wait_healthy()
        self.wait_leading()

    def metrics(self, quiet: bool = True) -> str:
        return super().metrics(quiet)


class LogFollower:
    """The operator's JSON log records written since this was made (the figures its components record
    themselves, read after the fact: no watch in this process whose lag would count)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.rest = b""

    def records(self) -> list[dict[str, Any]]:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        lines = (self.rest + chunk).split(b"\n")
        self.rest = lines.pop()  # a line still being written
        out = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # not a JSON record (a traceback's lines)
            if isinstance(record, dict):
                out.append(record)
        return out


class CpuMeter:
    """CPU seconds (user + system) spent from now until `spent()` by the operator, each test-bed
    process (API server, etcd, scheduler, controller manager, KWOK, metrics-server, Prometheus), this
    benchmark process itself (its clients and its local kubelet's threads), by the local pods' processes
    (agents and what they start, apart: this process's descendants other than the operator, sampled
    every 0.5 s so a process that ends keeps what it had spent at its last sample), and by the whole
    machine."""

    TESTBED = (
        "kube-apiserver",
        "etcd",
        "kube-scheduler",
        "kube-controller-manager",
        "kwok",
        "metrics-server",
        "prometheus",
    )

    def __init__(self, op_pid: int | None) -> None:
        import psutil

        self.op_pid = op_pid
        self.pids: dict[str, int] = {"operator": op_pid} if op_pid else {}
        for proc in psutil.process_iter(["name", "cmdline"]):
            argv0 = (proc.info.get("cmdline") or [""])[0]
            for name in self.TESTBED:
                if name not in self.pids and (proc.info.get("name") == name or argv0.endswith(f"/{name}")):
                    self.pids[name] = proc.pid
        self.pids["bench"] = os.getpid()
        # (pid, start time) -> [CPU at the first sample or 0 for one born later, CPU at the last sample]
        self.pods: dict[tuple[int, float], list[float]] = {}
        self.kinds: dict[tuple[int, float], str] = {}  # each pod process: an agent, or what it started
        self._sample(born_before=True)
        self.before = self._now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self, born_before: bool = False) -> None:
        import psutil

        from shoal.agent.proctree import ProcessTree

        for pid in ProcessTree(os.getpid()).pids()[1:]:  # its own tree, not a scan of the host's
            if pid == self.op_pid:
                continue
            try:
                proc = psutil.Process(pid)
                key, t = (proc.pid, proc.create_time()), proc.cpu_times()
                if key not in self.kinds:
                    self.kinds[key] = "agents" if "shoal.agent" in proc.cmdline() else "trainers"
            except psutil.Error:
                continue
            cpu = t.user + t.system
            self.pods.setdefault(key, [cpu if born_before else 0.0, cpu])[1] = cpu

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def _now(self) -> dict[str, float]:
        import psutil

        out = {}
        for name, pid in self.pids.items():
            try:
                t = psutil.Process(pid).cpu_times()
                out[name] = t.user + t.system
            except psutil.Error:
                out[name] = 0.0
        machine = psutil.cpu_times()
        out["machine"] = machine.user + machine.system + getattr(machine, "nice", 0.0)
        return out

    def spent(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._sample()
        now = self._now()
        out = {k: round(now[k] - self.before[k], 2) for k in now if k != "machine"}
        out["local pods"] = round(sum(last - first for first, last in self.pods.values()), 2)
        for kind in ("agents", "trainers"):
            spent = (last - first for key, (first, last) in self.pods.items() if self.kinds[key] == kind)
            out[f"local pods' {kind}"] = round(sum(spent), 2)
        out["machine"] = round(now["machine"] - self.before["machine"], 2)
        return out


def by_method(text: str, name: str) -> dict[str, float]:
    """`name`'s sums per `method` label (the HTTP verb) in a Prometheus text exposition."""
    out: dict[str, float] = {}
    pattern = re.compile(rf"^{re.escape(name)}\{{([^}}]*)\}} (\S+)$")
    for line in text.splitlines():
        if (m := pattern.match(line)) and (verb := re.search(r'method="([A-Z]+)"', m.group(1))):
            out[verb.group(1)] = out.get(verb.group(1), 0.0) + float(m.group(2))
    return out


class Reconciles:
    """One kind's reconciles from now until `spent()`: how many, their mean time, and the mean time a key
    waited in the work queue before a worker took it (the operator's own histograms)."""

    NAMES = ("shoal_reconcile_duration_seconds", "shoal_workqueue_wait_seconds")

    def __init__(self, op: Operator, kind: str) -> None:
        self.op, self.kind = op, kind
        self.before = self._now()

    def _now(self) -> dict[str, float]:
        text, out = self.op.metrics(), {}
        for name in self.NAMES:
            for part in ("sum", "count"):
                m = re.search(rf'^{name}_{part}{{kind="{re.escape(self.kind)}"}} (\S+)$', text, re.M)
                out[f"{name}_{part}"] = float(m.group(1)) if m else 0.0
        return out

    def spent(self) -> dict[str, float]:
        now = self._now()
        d = {k: now[k] - self.before[k] for k in now}
        n, waited = d[f"{self.NAMES[0]}_count"], d[f"{self.NAMES[1]}_count"]
        return {
            "reconciles": int(n),
            "mean_s": round(d[f"{self.NAMES[0]}_sum"] / n, 4) if n else 0.0,
            "queue_wait_mean_s": round(d[f"{self.NAMES[1]}_sum"] / waited, 4) if waited else 0.0,
        }


class Requests:
    """The operator's own API requests by verb from now until `spent()` (its shoal_api_requests_total)."""

    def __init__(self, op: Operator) -> None:
        self.op = op
        self.before = by_method(op.metrics(), "shoal_api_requests_total")

    def spent(self) -> dict[str, int]:
        now = by_method(self.op.metrics(), "shoal_api_requests_total")
        return {
            v: round(n - self.before.get(v, 0.0))
            for v, n in sorted(now.items())
            if n > self.before.get(v, 0.0)
        }


def quiet(max_busy: float = 0.35, timeout: float = 120.0) -> float:
    """Wait (up to `timeout`) until the machine's CPU is below `max_busy` over 2 s, so a measurement
    does not start beside the set-up's own work; the busy fraction it started at."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        busy = psutil.cpu_percent(interval=2.0) / 100
        if busy <= max_busy or time.monotonic() > deadline:
            return round(busy, 3)


def _apiserver_metrics(kube: Kube) -> str:
    url = f"https://127.0.0.1:{testbed.PORTS['kube-apiserver']}/metrics"
    resp = kube.api.call_api("GET", url, header_params={"Accept": "text/plain"})
    return resp.read().decode()  # type: ignore[no-untyped-call,no-any-return]


class ApiServerRequests:
    """Every client's requests the API server served from now until `spent()`, by verb and resource
    (its apiserver_request_total): what a phase cost the control plane, the operator's, the pods' and
    the test bed's own together. WATCH and the server's own probes are left out."""

    LINE = re.compile(r"^apiserver_request_total\{([^}]*)\} (\S+)$")

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.before = self._now()

    def _now(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in _apiserver_metrics(self.kube).splitlines():
            if not (m := self.LINE.match(line)):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            verb, resource = labels.get("verb", ""), labels.get("resource", "")
            if verb in ("WATCH", "CONNECT") or not resource:
                continue
            sub = labels.get("subresource", "")
            key = f"{verb} {resource}{'/' + sub if sub else ''}"
            out[key] = out.get(key, 0.0) + float(m.group(2))
        return out

    def spent(self) -> dict[str, int]:
        """Counts by "VERB resource[/subresource]", most first."""
        now = self._now()
        d = {k: round(v - self.before.get(k, 0.0)) for k, v in now.items()}
        return dict(sorted(((k, n) for k, n in d.items() if n > 0), key=lambda kv: (-kv[1], kv[0])))


def apiserver_requests(kube: Kube) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in _apiserver_metrics(kube).splitlines()
        if line.startswith("apiserver_request_total{")
    )


_DELETED: list[str] = []


def settle(kube: Kube) -> None:
    """Wait until every namespace a benchmark dropped, and any other namespace being deleted (a test
    run's or an earlier benchmark process's, whose controllers and garbage collection would load the
    API server meanwhile), is fully deleted: before a measurement, and before an operator stops, so
    what its objects leave behind is not the next operator's work."""

    def terminating() -> bool:
        return any(
            (ns.get("status") or {}).get("phase") == "Terminating"
            for ns in kube.list_items("/api/v1/namespaces")
        )

    wait(
        lambda: not any(_exists(kube, f"/api/v1/namespaces/{n}") for n in _DELETED) and not terminating(),
        600,
        "earlier namespaces deleted",
        interval=1.0,
    )


def namespace(kube: Kube, prefix: str) -> str:
    """A fresh namespace, once every dropped one is fully deleted: each measurement starts on a
    quiet cluster, not beside the garbage collection of the previous one's pods."""
    settle(kube)
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    wait(lambda: _exists(kube, f"/api/v1/namespaces/{name}/serviceaccounts/default"), 60, "default SA")
    return name


def drop_namespace(kube: Kube, ns: str) -> None:
    kube.delete(f"/api/v1/namespaces/{ns}")
    _DELETED.append(ns)


def _exists(kube: Kube, path: str) -> bool:
    try:
        kube.get(path)
    except ApiError:
        return False
    return True


def ready_pods(kube: Kube, ns: str) -> list[dict[str, Any]]:
    out = []
    for p in kube.list_items(pods_path(ns)):
        conds = {c["type"]: c for c in p.get("status", {}).get("conditions") or []}
        if conds.get("Ready", {}).get("status") == "True" and not p["metadata"].get("deletionTimestamp"):
            out.append(p)
    return out


CONTAINER = {
    "name": "w",
    "image": "registry.example/w:1",
    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
}
