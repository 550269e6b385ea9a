"""A warm pod's trainer in standby, from the agent's side: started before any claim, it pays its
imports (torch, SB3) once and serves every claim of its pod by forking a trainer for it
(shoal.agent.protocol.standby), so no session after the pod's start waits for a new interpreter.

The agent writes each hand-off on the standby's stdin; the standby answers on a pipe of its own
(not its stdout, which the trainers share for their logs) with the forked trainer's pid, then its
exit status. The forked trainer is the standby's child, not the agent's, so that answer is how the
agent learns the status; signals go to its pid.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import time
from typing import Any, Protocol

import psutil

from shoal.vocab import ENV_STANDBY, ENV_STANDBY_FD

log = logging.getLogger("shoal.agent")
HAND_OFF_TIMEOUT = 120.0  # a standby still importing when its claim comes answers once they are done


class Trainer(Protocol):
    """What the agent needs of a trainer process: a subprocess.Popen, or a Forked one."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class Forked:
    """A session's trainer, forked by the standby."""

    def __init__(self, standby: Standby, pid: int) -> None:
        self.standby, self.pid = standby, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.standby.exit_of(self.pid)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Standby:
    def __init__(self, command: list[str]) -> None:
        read, write = os.pipe()
        env = {**os.environ, ENV_STANDBY: "1", ENV_STANDBY_FD: str(write)}
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, env=env, pass_fds=(write,))
        os.close(write)  # the standby's (and its trainers', until they close it): EOF once it is gone
        os.set_blocking(read, False)
        self.answers, self.pending, self.closed = read, b"", False
        self.exits: dict[int, int] = {}
        self.served = 0

    def alive(self) -> bool:
        return self.proc.poll() is None and not self.closed

    def hand_off(self, handed: dict[str, Any]) -> Forked | None:
        """The claim's trainer, forked by the standby with `handed` (HANDED_ENV and the session's env);
        None where the standby is gone (it did not wait for a claim, or it died)."""
        if not self.alive() or self.proc.stdin is None:
            return None
        try:
            self.proc.stdin.write((json.dumps(handed) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            return None
        deadline = time.monotonic() + HAND_OFF_TIMEOUT
        while time.monotonic() < deadline and not self.closed:
            for answer in self._read(min(1.0, deadline - time.monotonic())):
                if "pid" in answer and "exitCode" not in answer:
                    self.served += 1
                    return Forked(self, int(answer["pid"]))
        log.warning("the trainer in standby did not answer its hand-off; started afresh from now on")
        self.close()
        return None

    def exit_of(self, pid: int) -> int | None:
        self._read(0)
        if pid in self.exits:
            return self.exits.pop(pid)
        if self.closed and not _running(pid):
            return -signal.SIGKILL  # the standby was killed with it (the pod's process group)
        return None

    def _read(self, timeout: float) -> list[dict[str, Any]]:
        if self.closed or not select.select([self.answers], [], [], max(0.0, timeout))[0]:
            return []
        try:
            chunk = os.read(self.answers, 65536)
        except BlockingIOError:
            return []
        if not chunk:
            self._close_answers()
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        out = [json.loads(line) for line in lines if line.strip()]
        for answer in out:
            if "exitCode" in answer:
                self.exits[int(answer["pid"])] = int(answer["exitCode"])
        return out

    def _close_answers(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.answers)

    def close(self) -> None:
        """An empty hand-off (stdin closed): the standby exits once no trainer of its runs."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._close_answers()


def _running(pid: int) -> bool:
    """Whether `pid` still runs: a zombie has ended (one the agent inherited, as PID 1 of its
    container, once the standby that forked it had gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
