"""The CPU and memory of the trainer's own process tree, for the agent's gauges.

psutil's `children(recursive=True)` finds a process's children by reading every entry of /proc (it
has no other portable way), so an agent sampling its trainer that way scans the whole host: every
pod's processes where they share a PID namespace (the test bed's local pods, `hostPID`), several
times a second. Linux lists each thread's children in /proc/<pid>/task/<tid>/children; walking that
from the trainer reads only the tree itself. The psutil objects are kept from one sample to the
next, because `cpu_percent()` measures from the previous call on the same object (a new one says 0).
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def children(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """`pid`'s children, from its threads' lists; psutil's host-wide scan where the kernel has none."""
    try:
        tasks = os.listdir(proc / str(pid) / "task")
    except OSError:
        return []  # gone
    out: list[int] = []
    for tid in tasks:
        try:
            out += [int(c) for c in (proc / str(pid) / "task" / tid / "children").read_text().split()]
        except FileNotFoundError:
            if not (proc / str(pid) / "task" / tid).exists():
                continue  # the thread ended between the listing and the read
            try:  # a kernel without CONFIG_PROC_CHILDREN
                return [c.pid for c in psutil.Process(pid).children()]
            except psutil.Error:
                return []
        except (OSError, ValueError):
            continue
    return out


class ProcessTree:
    """The processes under `root` (itself included), as they are at each sample."""

    def __init__(self, root: int, proc: Path = Path("/proc")) -> None:
        self.root = root
        self.proc = proc
        self.known: dict[int, psutil.Process] = {}

    def pids(self) -> list[int]:
        out, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += children(pid, self.proc)
        return out

    def sample(self) -> tuple[float, float]:
        """(CPU percent since the last sample, summed over the tree; resident bytes of the tree)."""
        cpu = rss = 0.0
        now: dict[int, psutil.Process] = {}
        for pid in self.pids():
            try:
                p = self.known.get(pid) or psutil.Process(pid)
                cpu += p.cpu_percent(None)
                rss += p.memory_info().rss
            except psutil.Error:
                continue
            now[pid] = p
        self.known = now
        return cpu, rss
