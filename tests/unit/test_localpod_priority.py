"""Local pods yield the CPU to the control plane and the operator, across the kernel's autogroups."""

from __future__ import annotations

import subprocess
from pathlib import Path

from testbed.localpod import NICENESS, autogroups, deprioritise


def test_a_pod_session_gets_the_pods_niceness_as_a_scheduling_group() -> None:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        done = deprioritise(proc.pid)
        assert done is autogroups()
        if done:  # with autogroups, a process's own nice would count only inside its session
            assert Path(f"/proc/{proc.pid}/autogroup").read_text().split()[-1] == str(NICENESS)
    finally:
        proc.kill()
        proc.wait()
