"""The agent's part in a gang (a session with `workers > 1`, builders/gang.py): its trainer is a launcher.

torchrun starts the workers in sessions of their own and handles SIGTERM by stopping them, but not
SIGUSR1 (which would end torchrun itself). So the agent signals the launcher's workers, which is what
the trainer protocol means: a checkpoint (SIGUSR1) or a checkpoint and exit (SIGTERM) reaches the
program that trains, and the workers agree among themselves on the step to act at. A kill reaches the
whole tree: the workers would outlive a killed torchrun.

Only worker 0's agent speaks for the session (its reports, its commands); the others run their
launcher and pass the pod's SIGTERM on, without any API access.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
from pathlib import Path

from shoal.agent.proctree import ProcessTree
from shoal.vocab import ENV_CONFIG_FILE, ENV_RESUME_FROM, ENV_WORKER_INDEX, ENV_WORKERS

log = logging.getLogger("shoal.agent")


def workers() -> int:
    try:
        return max(1, int(os.environ.get(ENV_WORKERS, "1")))
    except ValueError:
        return 1


def resume_from_config() -> None:
    """Where a TrainJob's workers resume from is in the mounted config, not their environment (a
    suspended JobSet's pod template cannot change it: builders/trainjob.py). Every worker reads it,
    as every worker's trainer loads the checkpoint."""
    path = os.environ.get(ENV_CONFIG_FILE)
    if os.environ.get(ENV_RESUME_FROM) or not path:
        return
    try:
        named = json.loads(Path(path).read_text()).get("resumeFrom")
    except (OSError, ValueError, AttributeError):
        return
    if named:
        os.environ[ENV_RESUME_FROM] = str(named)


def follower() -> bool:
    """A gang's worker other than 0."""
    return workers() > 1 and os.environ.get(ENV_WORKER_INDEX, "0") not in ("", "0")


class Launcher:
    """A trainer that is a launcher (torchrun): signals go to the processes below it."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.returncode: int | None = None
        self.tree = ProcessTree(proc.pid)

    def poll(self) -> int | None:
        self.returncode = self.proc.poll()
        return self.returncode

    def below(self) -> list[int]:
        return self.tree.pids()[1:]

    def send_signal(self, sig: int) -> None:
        if self.poll() is not None:
            return
        for pid in self.below() or [self.pid]:  # none yet: the launcher itself (before the workers start)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill(self) -> None:
        for pid in [*self.below(), self.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def follow(command: list[str]) -> int:
    """Run a follower's launcher to its end; the pod's SIGTERM reaches its workers."""
    launcher = Launcher(subprocess.Popen(command))
    signal.signal(signal.SIGTERM, lambda *_: launcher.send_signal(signal.SIGTERM))
    code = launcher.proc.wait()
    log.info("worker %s: the trainer exited %d", os.environ.get(ENV_WORKER_INDEX), code)
    return code if code >= 0 else 128 - code
