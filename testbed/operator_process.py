"""The one launcher of `python -m shoal` as a local process: the e2e tests, the benchmarks, the soak and
the admission-reads comparison all start their operators here, so each runs the same process with the
same environment (the chart's log level and format unless a caller says otherwise)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

from testbed import cluster as testbed
from testbed.localpod import free_port

ROOT = Path(__file__).resolve().parents[1]


class OperatorProcess:
    """`python -m shoal` against a kubeconfig (the test bed's by default); it may be SIGKILLed and
    started again. Each start logs to `logdir/operator-N.log`, or appends to `log_file` when given;
    `tree` is the checkout whose operator code runs (this one by default); `env` is added to (and
    overrides) its environment; `command` runs instead of `python -m shoal` (an image's entrypoint,
    testbed.image)."""

    def __init__(
        self,
        kubeconfig: Path = testbed.KUBECONFIG,
        logdir: Path = testbed.LOGS,
        *,
        log_file: Path | None = None,
        tree: Path = ROOT,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.logdir = logdir
        self.log_file = log_file
        self.tree = tree
        self.extra_env = dict(env or {})
        self.command = command or [sys.executable, "-m", "shoal"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.starts = 0
        self.log_path: Path = log_file or logdir / "operator-1.log"
        self._log: IO[bytes] | None = None

    def start(self, ready: bool = True) -> None:
        """Start it; with `ready`, return once its liveness endpoint answers."""
        self.starts += 1
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "SHOAL_METRICS_PORT": str(self.metrics_port),
            "SHOAL_HEALTH_PORT": str(self.health_port),
            # The chart's log level and format: a run pays for the logging a user's operator does.
            "SHOAL_LOG_LEVEL": "INFO",
            "SHOAL_LOG_FORMAT": "json",
            "SHOAL_LEASE_NAMESPACE": "default",
            "SHOAL_PROMETHEUS_URL": f"http://127.0.0.1:{testbed.PORTS['prometheus']}",
            "PYTHONPATH": str(self.tree / "operator"),
            **self.extra_env,
        }
        self.log_path = self.log_file or self.logdir / f"operator-{self.starts}.log"
        if self._log:
            self._log.close()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            self.command, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=self.group
        )
        if ready:
            try:
                self.wait_healthy()
            except BaseException:
                self.stop()  # never left running behind a failed start
                raise

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise TimeoutError(f"operator not healthy in {timeout:.0f}s; see {self.log_path}")
            time.sleep(0.2)

    def wait_leading(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while "shoal_leader 1.0" not in self.metrics(quiet=True):
            if time.monotonic() > deadline:
                raise TimeoutError(f"operator not leading in {timeout:.0f}s; see {self.log_path}")
            time.sleep(0.2)

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited; see {self.log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self, quiet: bool = False) -> str:
        """Its Prometheus exposition; with `quiet`, "" while it cannot be reached."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            if quiet:
                return ""
            raise

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease release, exactly like a crashed pod."""
        assert self.proc is not None
        self._signal(signal.SIGKILL)
        self.proc.wait(10)

    @property
    def group(self) -> bool:
        """Whether its whole process group is signalled: an image's entrypoint runs under unshare, which
        neither passes signals on nor takes its child down when it dies (the child's parent-death
        signal goes when chroot changes its user)."""
        return self.command[0] != sys.executable

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and (self.proc.poll() is None or self.group):
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
            if self.group or self.proc.poll() is None:
                self._signal(signal.SIGKILL)  # a group: whatever is left of it
            self.proc.wait(5)
        if self._log:
            self._log.close()
            self._log = None
