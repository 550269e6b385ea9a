"""The distributed example trainer, as two torchrun workers on this machine (gloo on CPU), as a gang's
pods run it: c10d rendezvous at worker 0, each worker's own address, the agent's signals reaching the
workers below torchrun (shoal.agent.gang.Launcher)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shoal.agent.gang import Launcher
from testbed.localpod import free_port

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def start(tmp: Path, index: int, port: int, total: int, pace: float = 0.0) -> Launcher:
    """Worker `index` of a gang meeting at `port` (its rendezvous id: a gang's own, as the Job's name)."""
    cfg = tmp / "config.json"
    cfg.write_text(
        json.dumps({"totalTimesteps": total, "checkpointEverySec": 3600, "secondsPerEpisode": pace})
    )
    env = {
        **os.environ,
        "PET_NNODES": "2",
        "PET_NPROC_PER_NODE": "1",
        "PET_RDZV_BACKEND": "c10d",
        "PET_RDZV_ENDPOINT": f"127.0.0.1:{port}",
        "PET_RDZV_ID": f"gang-{port}",
        "PET_LOCAL_ADDR": f"127.0.0.{index + 1}",  # as the test bed's hosts give a gang's workers
        "PET_MAX_RESTARTS": "0",
        "SHOAL_WORKDIR": str(tmp / f"work-{index}"),
        "SHOAL_CHECKPOINT_DIR": str(tmp / "checkpoints"),
        "SHOAL_CONFIG_FILE": str(cfg),
        "OMP_NUM_THREADS": "1",
    }
    log = open(tmp / f"worker-{index}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [TORCHRUN, "-m", "shoal.examples.ddp_regression"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    return Launcher(proc)


def gang(tmp: Path, total: int, pace: float = 0.0) -> list[Launcher]:
    port = free_port()
    return [start(tmp, i, port, total, pace) for i in range(2)]


def wait(workers: list[Launcher], tmp: Path, timeout: float = 120.0) -> list[int]:
    """Their exit codes; on a timeout, or any code but 0, the workers' own words."""
    codes: list[int] = []
    try:
        codes = [w.proc.wait(timeout) for w in workers]
    except subprocess.TimeoutExpired:
        for w in workers:
            w.kill()
    if codes != [0] * len(workers):
        logs = [(tmp / f"worker-{i}.log").read_text()[-3000:] for i in range(len(workers))]
        raise AssertionError(f"exit codes {codes}:\n" + "\n---\n".join(logs))
    return codes


def progress(tmp: Path, index: int = 0) -> dict[str, Any]:
    path = tmp / f"work-{index}" / "progress.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_two_workers_learn_and_only_worker_0_reports(tmp_path: Path) -> None:
    assert wait(gang(tmp_path, 20_000), tmp_path) == [0, 0]
    done = progress(tmp_path)
    assert done["done"] is True and done["workers"] == 2
    assert done["timesteps"] >= 20_000
    assert done["loss"] < 0.25 * done["firstLoss"], done
    assert not (tmp_path / "work-1" / "progress.json").exists()  # rank 0 is worker 0, by its address
    latest = json.loads((tmp_path / "checkpoints" / "latest.json").read_text())
    assert latest["timesteps"] == done["timesteps"]


def test_a_stop_signalled_to_one_worker_stops_both_at_one_step_and_the_resume_is_exact(
    tmp_path: Path,
) -> None:
    straight, paused = tmp_path / "straight", tmp_path / "paused"
    straight.mkdir()
    paused.mkdir()
    total = 12_800  # 100 steps of 2 x 64
    assert wait(gang(straight, total), straight) == [0, 0]
    reference = progress(straight)["lastCheckpoint"]["digest"]

    workers = gang(paused, total, pace=0.05)
    deadline = time.monotonic() + 90
    while progress(paused).get("episodes", 0) < 10:  # past its first steps (and its handlers)
        assert time.monotonic() < deadline, (paused / "worker-0.log").read_text()[-3000:]
        time.sleep(0.1)
    workers[1].send_signal(signal.SIGTERM)  # the follower's workers: the agreement reaches worker 0
    assert wait(workers, paused) == [0, 0]
    stopped = progress(paused)
    assert stopped["done"] is False and 0 < stopped["timesteps"] < total
    checkpoint = stopped["lastCheckpoint"]
    assert checkpoint["timesteps"] == stopped["timesteps"]

    assert wait(gang(paused, total), paused) == [0, 0]
    resumed = progress(paused)
    assert "resumed from" in (paused / "worker-0.log").read_text()
    assert resumed["done"] is True and resumed["timesteps"] == progress(straight)["timesteps"]
    assert resumed["lastCheckpoint"]["digest"] == reference  # bit for bit the run that never stopped
