"""Starting and stopping the components as local processes, with pid files."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from testbed.components import BY_NAME
from testbed.config import HOST, LOGS, PIDS, PORTS, STATE, TestbedError, binary, log


def pid_of(name: str) -> int | None:
    try:
        pid = int((PIDS / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        # A PID file from an earlier boot may name a recycled PID: check it is still our binary.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return None
    return pid if Path(cmdline).name == name else None


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def start(name: str, extra: tuple[str, ...] = ()) -> None:
    """Start a component; `extra`: flags beyond its usual ones (a benchmark's client limits)."""
    comp = BY_NAME[name]
    if pid_of(name):
        log(f"{name}: already running")
        return
    deadline = time.monotonic() + 10  # a component just stopped may hold its port a moment longer
    while (busy := [f"{p} ({PORTS[p]})" for p in comp.port_names if not port_free(PORTS[p])]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    if busy:
        raise TestbedError(
            f"cannot start {name}: port(s) {', '.join(busy)} already in use by another process; "
            f"stop it or set SHOAL_PORT_<NAME> to move the test bed"
        )
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    logfile = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [str(binary(name)), *comp.args(), *extra],
        stdout=logfile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=STATE,
    )
    (PIDS / f"{name}.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + comp.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (LOGS / f"{name}.log").read_text(errors="replace")[-3000:]
            raise TestbedError(f"{name} exited with code {proc.returncode}; log tail:\n{tail}")
        if comp.health():
            log(f"{name}: ready (pid {proc.pid})")
            return
        time.sleep(0.25)
    raise TestbedError(f"{name} not healthy after {comp.start_timeout:.0f}s; see {LOGS / (name + '.log')}")


def stop(name: str, timeout: float = 20.0) -> None:
    pid = pid_of(name)
    if pid is None:
        (PIDS / f"{name}.pid").unlink(missing_ok=True)
        return
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_of(name):
        time.sleep(0.1)
    if pid_of(name):
        os.killpg(pid, signal.SIGKILL)
        while pid_of(name):
            time.sleep(0.05)
    (PIDS / f"{name}.pid").unlink(missing_ok=True)
    log(f"{name}: stopped")
