"""The agent's view of its trainer's process tree (shoal.agent.proctree)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shoal.agent.proctree import ProcessTree, children
from tests.e2e.util import wait_until

# A trainer that starts a worker which spins (as a vectorised environment's subprocess would).
SPINNER = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'while True: pass']).wait()"


def fake_proc(root: Path, tree: dict[int, dict[int, list[int]]]) -> Path:
    """A /proc holding only `tree`: pid -> its threads -> each thread's children."""
    for pid, threads in tree.items():
        for tid, kids in threads.items():
            task = root / str(pid) / "task" / str(tid)
            task.mkdir(parents=True)
            (task / "children").write_text("".join(f"{k} " for k in kids))
    return root


def test_the_tree_is_read_from_its_own_entries_only(tmp_path: Path) -> None:
    """Children of every thread, grandchildren included; nothing else of /proc is read (the fake
    holds a stranger, pid 99, that no walk may reach)."""
    proc = fake_proc(
        tmp_path, {10: {10: [11], 12: [13]}, 11: {11: [14]}, 13: {13: []}, 14: {14: []}, 99: {99: []}}
    )
    assert sorted(ProcessTree(10, proc).pids()) == [10, 11, 13, 14]
    assert children(42, proc) == []  # gone: no entry


def test_a_kernel_without_children_lists_falls_back_to_psutil(tmp_path: Path) -> None:
    me = os.getpid()
    (tmp_path / str(me) / "task" / str(me)).mkdir(parents=True)  # a thread, but no children file
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert child.pid in children(me, tmp_path)
    finally:
        child.kill()
        child.wait()


def test_the_cpu_of_a_spinning_grandchild_is_counted_between_samples() -> None:
    """The psutil objects are kept between samples: a fresh one would say 0 % every time."""
    trainer = subprocess.Popen([sys.executable, "-c", SPINNER])
    try:
        tree = ProcessTree(trainer.pid)
        wait_until(lambda: len(tree.pids()) == 2, 30, "the trainer's worker started")
        tree.sample()
        seen: list[float] = []

        def busy() -> bool:
            cpu, rss = tree.sample()
            seen.append(rss)
            return cpu > 20

        wait_until(busy, 30, "the worker's CPU counted")
        assert seen[-1] > 1e6 and len(tree.known) == 2
    finally:
        for pid in ProcessTree(trainer.pid).pids()[::-1]:
            os.kill(pid, 9)
        trainer.wait()
