"""The agent and the bandit test double as real local processes: checkpoint on command, resume with progress."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.doubles.bandit import Trainer, best_arm_mean
from tests.e2e.util import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_trainer_learns_the_best_arm_mean() -> None:
    t = Trainer({"game": "bandit-test", "learningRate": 0.1, "vecEnvs": 32})
    for _ in range(400):
        t.step()
    assert np.mean(t.rewards[-50:]) > t.means.max() - 0.3
    assert np.mean(t.rewards[:20]) < np.mean(t.rewards[-50:])


CONFIG = {
    "game": "bandit-test",
    "totalTimesteps": 10**9,
    "learningRate": 0.1,
    "vecEnvs": 16,
    "checkpointEverySec": 3600,
    "secondsPerEpisode": 0.002,
}


class AgentRun:
    def __init__(self, tmp: Path, warm: bool = False) -> None:
        """`warm`: no config file, as in a pool pod that waits to be claimed."""
        self.tmp = tmp
        self.annotations = tmp / "annotations.json"
        self.report = tmp / "report.json"
        self.annotations.write_text("{}")
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT}",
            "SHOAL_WORKDIR": str(tmp / "work"),
            "SHOAL_CHECKPOINT_DIR": str(tmp / "ckpt"),
            "SHOAL_CONFIG_FILE": str(tmp / "config.json"),
        }
        if not warm:
            (tmp / "config.json").write_text(json.dumps(CONFIG))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shoal.agent",
                "--annotations-file",
                str(self.annotations),
                "--report",
                "file",
                "--report-file",
                str(self.report),
                "--port",
                "0",
                "--tensorboard-port",
                "0",
                "--report-every",
                "0.5",
                "--",
                sys.executable,
                "-m",
                "tests.doubles.bandit",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # close() ends the trainer with it
        )

    def close(self) -> None:
        """End the agent and its trainer, whatever state a test left them in (a kill of the agent
        alone would leave its trainer training)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def progress(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.report.read_text()))
        except (OSError, ValueError):
            return {}

    def wait(self, pred: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60) -> dict[str, Any]:
        def check() -> dict[str, Any]:
            p = self.progress()
            return p if p and pred(p) else {}

        return wait_until(check, timeout, what)

    def command(self, verb: str, cid: int) -> None:
        self.annotations.write_text(json.dumps({"shoal.dev/command": verb, "shoal.dev/command-id": str(cid)}))


def test_agent_checkpoints_on_command_and_a_new_run_resumes_from_it(tmp_path: Path) -> None:
    run = AgentRun(tmp_path)
    try:
        wait_until(lambda: run.progress().get("timesteps", 0) > 2000, 60, "training under way")
        run.command("checkpoint", 1)
        acked = run.wait(lambda p: p.get("ack") == 1, "checkpoint 1 acknowledged")
        assert acked["lastCheckpoint"]["commandId"] == 1
        assert Path(acked["lastCheckpoint"]["path"]).exists()
        assert run.proc.poll() is None  # a checkpoint does not stop training

        run.command("pause", 2)
        assert run.proc.wait(30) == 0
        final = run.progress()
        assert final["ack"] == 2 and final["exitCode"] == 0, (
            final,
            run.proc.stdout.read() if run.proc.stdout else "",
        )
        paused_at = final["lastCheckpoint"]["timesteps"]
        reward_before = final["meanReward"]
        assert paused_at >= acked["lastCheckpoint"]["timesteps"]
    finally:
        run.close()

    run.report.unlink()
    resumed = AgentRun(tmp_path)  # same checkpoint directory: what a new pod with the same PVC sees
    try:
        first = resumed.wait(lambda p: bool(p.get("timesteps")), "resumed progress")
        assert first["timesteps"] >= paused_at, "progress restarted instead of resuming"
        later = resumed.wait(lambda p: p.get("timesteps", 0) > paused_at + 500, "more training")
        assert later["episodes"] > final["episodes"]
        assert later["meanReward"] > reward_before - 0.5  # the learned policy came back too
        out = resumed.proc.stdout
        resumed.command("stop", 3)
        assert resumed.proc.wait(30) == 0
        assert out is not None and f"at {paused_at} timesteps" in out.read().decode()
    finally:
        resumed.close()


def test_gpu_sampler_reads_nvml_when_present(monkeypatch: Any) -> None:
    """No GPU here: a stand-in pynvml module checks the NVML calls and the exported gauges."""
    import types

    from prometheus_client import REGISTRY

    from shoal.agent.report import GpuSampler

    fake = types.ModuleType("pynvml")
    fake.nvmlInit = lambda: None  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    fake.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=40 + h)  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=(h + 1) * 2**30, total=16 * 2**30)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    samples = GpuSampler().sample()
    assert samples == [
        {"gpu": 0, "utilization": 40.0, "memoryUsed": 2.0**30},
        {"gpu": 1, "utilization": 41.0, "memoryUsed": 2.0**31},
    ]
    assert REGISTRY.get_sample_value("shoal_agent_gpu_utilization_percent", {"gpu": "1"}) == 41.0
    assert REGISTRY.get_sample_value("shoal_agent_gpu_memory_total_bytes", {"gpu": "1"}) == 16 * 2**30


def test_gpu_sampler_is_quiet_without_nvml(monkeypatch: Any) -> None:
    from shoal.agent.report import GpuSampler

    monkeypatch.setitem(sys.modules, "pynvml", None)
    sampler = GpuSampler()
    assert sampler.sample() == [] and sampler.unavailable == "nvidia-ml-py is not installed"


def test_gpu_sampler_goes_through_nvmls_real_library_loading() -> None:
    """nvidia-ml-py itself, no stand-in: where a driver is mounted it counts and samples the GPUs;
    where none is (this test bed), it names NVML's own reason instead of failing the agent."""
    import ctypes

    from shoal.agent.report import GpuSampler

    try:
        ctypes.CDLL("libnvidia-ml.so.1")  # what nvidia-ml-py loads on Linux
        driver = True
    except OSError:
        driver = False
    sampler = GpuSampler()
    if driver:
        assert sampler.unavailable is None and sampler.count >= 1
        samples = sampler.sample()
        assert len(samples) == sampler.count
        assert all(0 <= s["utilization"] <= 100 and s["memoryUsed"] > 0 for s in samples), samples
    else:
        assert (sampler.count, sampler.unavailable) == (0, "NVML: NVML Shared Library Not Found")
        assert sampler.sample() == []


def assert_start_times(times: dict[str, float], after: float) -> None:
    """The agent's moments of one start, in order, all after the claim was handed over."""
    order = ("configSeen", "trainerStarted", "firstProgress", "reported")
    assert list(times) == list(order) or set(times) == set(order), times
    moments = [times[k] for k in order]
    assert (
        after <= moments[0] <= moments[1] <= moments[3]
        and moments[1] <= moments[2] + 0.01 <= moments[3] + 0.01
    )
    assert moments[3] - after < 30


def test_a_warm_agent_trains_once_per_claim_and_waits_again_after_each_release(tmp_path: Path) -> None:
    run = AgentRun(tmp_path, warm=True)

    def annotate(**ann: str) -> None:
        run.annotations.write_text(
            json.dumps({f"shoal.dev/{k.replace('_', '-')}": v for k, v in ann.items()})
        )

    try:
        out = run.proc.stdout
        assert out is not None
        wait_until(
            lambda: "waiting for a session to claim this pod" in out.readline().decode(), 30, "waiting"
        )
        assert (
            run.proc.poll() is None and not (tmp_path / "work" / "progress.json").exists()
        )  # no trainer yet
        # The session's spec.env comes with the claim; SHOAL_GAME over the config, as on an own pod.
        claim = {**CONFIG, "game": "bandit-claimed", "env": {"SHOAL_GAME": "bandit-from-env"}}
        first = {"session_config": json.dumps(claim), "claimed_by": "a", "claims": "1"}
        claimed_at = time.time()
        annotate(**first)
        training = run.wait(lambda p: p.get("timesteps", 0) > 100, "training with the claim's config")
        assert_start_times(training["times"], after=claimed_at)
        assert json.loads((tmp_path / "work" / "config.json").read_text())["game"] == "bandit-claimed"
        assert training["bestArmMean"] == best_arm_mean("bandit-from-env") != best_arm_mean("bandit-claimed")
        annotate(**first, command="checkpoint", command_id="1")
        acked = run.wait(lambda p: p.get("ack") == 1, "checkpoint in the claim's directory")
        assert Path(acked["lastCheckpoint"]["path"]).parent == tmp_path / "ckpt" / "a"
        annotate(**first, command="stop", command_id="2")
        stopped = run.wait(lambda p: p.get("exitCode") == 0, "the trainer stopped")
        assert stopped["ack"] == 2 and run.proc.poll() is None  # the agent stays for the next claim

        annotate(claims="1")  # released: the session's annotations are gone
        wait_until(lambda: not (tmp_path / "work" / "config.json").exists(), 30, "the claim forgotten")
        second = {**CONFIG, "game": "bandit-second"}  # no env: nothing of a's is left
        claimed_at = time.time()
        annotate(session_config=json.dumps(second), claimed_by="b", claims="2")
        again = run.wait(lambda p: p.get("timesteps", 0) > 100 and "exitCode" not in p, "the second claim")
        assert again["ack"] == 0 and again["lastCheckpoint"] is None  # nothing carried over from "a"
        assert again["bestArmMean"] == best_arm_mean("bandit-second")
        assert_start_times(again["times"], after=claimed_at)  # this claim's own moments, not a's
        annotate(
            session_config=json.dumps(second), claimed_by="b", claims="2", command="pause", command_id="1"
        )
        paused = run.wait(lambda p: p.get("ack") == 1 and p.get("exitCode") == 0, "the second one paused")
        assert Path(paused["lastCheckpoint"]["path"]).parent == tmp_path / "ckpt" / "b"
        assert run.proc.poll() is None
        run.proc.terminate()  # the pool deletes the pod: the waiting agent ends cleanly
        assert run.proc.wait(30) == 0
    finally:
        run.close()


def test_a_warm_agent_refuses_a_checkpoint_it_cannot_read_and_serves_the_next_claim(tmp_path: Path) -> None:
    """A resume whose checkpoint stayed on another pod fails visibly instead of training from step 0."""
    run = AgentRun(tmp_path, warm=True)
    gone = str(tmp_path / "elsewhere" / "ckpt-000000001000.npz")
    try:
        lost = {**CONFIG, "resumeFrom": gone}
        run.annotations.write_text(
            json.dumps({"shoal.dev/session-config": json.dumps(lost), "shoal.dev/claimed-by": "a"})
        )
        failed = run.wait(lambda p: "exitCode" in p, "the claim refused")
        assert failed["exitCode"] == 3 and failed["error"]["reason"] == "CheckpointUnreachable", failed
        assert gone in failed["error"]["message"] and "checkpointClaimName" in failed["error"]["message"]
        assert "timesteps" not in failed  # no trainer ran
        run.annotations.write_text("{}")  # released
        fresh = {**CONFIG, "game": "bandit-next"}
        run.annotations.write_text(
            json.dumps({"shoal.dev/session-config": json.dumps(fresh), "shoal.dev/claimed-by": "b"})
        )
        trained = run.wait(lambda p: p.get("timesteps", 0) > 100, "the next claim trains")
        assert "error" not in trained and trained["bestArmMean"] == best_arm_mean("bandit-next")
    finally:
        run.close()


def stopped(tmp: Path, verb: str | None) -> dict[str, Any]:
    """The agent's last report after a SIGTERM sent right after `verb` (or none) was written."""
    tmp.mkdir()
    run = AgentRun(tmp)
    try:
        wait_until(lambda: run.progress().get("timesteps", 0) > 1000, 60, "training under way")
        if verb:
            run.command(verb, 1)
        run.proc.send_signal(signal.SIGTERM)  # at once: the file watch polls every 0.1 s
        run.proc.wait(30)
        return run.progress()
    finally:
        run.close()


def test_sigterm_after_a_kill_command_ends_the_trainer_without_a_checkpoint(tmp_path: Path) -> None:
    """stopMode Immediate on a session's own pod: the operator writes `kill`, then deletes the pod. The
    deletion's SIGTERM reaches the agent before its watch has the command: it reads its pod afresh
    and kills the trainer instead of passing SIGTERM on (which checkpoints). A plain SIGTERM still
    checkpoints."""
    killed = stopped(tmp_path / "kill", "kill")
    assert killed.get("exitCode") == -9 and not killed.get("lastCheckpoint"), killed
    terminated = stopped(tmp_path / "term", None)
    assert terminated.get("exitCode") == 0 and terminated.get("lastCheckpoint"), terminated


def test_sigterm_after_a_pause_command_checkpoints_and_acknowledges_the_pause(tmp_path: Path) -> None:
    """A TrainJob paused by suspension: worker 0 is told `pause`, then its pod is deleted. Whichever
    of the two the agent sees first, the trainer checkpoints and exits once, and the pause is
    acknowledged (the session waits for that, not for the pod's end)."""
    paused = stopped(tmp_path / "pause", "pause")
    assert paused.get("exitCode") == 0 and paused.get("lastCheckpoint"), paused
    assert paused.get("ack") == 1, paused


def test_an_agent_reports_nothing_before_its_trainer_has_progress_but_always_its_exit(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Each report is a pod write (and a reconcile of its session): one before the trainer has written
    anything would say nothing on every start; an exit is said whether or not it came first."""
    from shoal.agent.main import Agent
    from shoal.agent.podwatch import FileWatch
    from shoal.agent.protocol import progress_file, write_json

    monkeypatch.setenv("SHOAL_WORKDIR", str(tmp_path))
    monkeypatch.setenv("SHOAL_CONFIG_FILE", str(tmp_path / "absent.json"))
    sent: list[dict[str, Any]] = []

    class Collect:
        def report(self, progress: dict[str, Any]) -> None:
            sent.append(progress)

    agent = Agent(["true"], FileWatch(tmp_path / "annotations.json"), Collect())
    agent.times = {"configSeen": 1.0, "trainerStarted": 2.0}
    for _ in range(3):
        agent._report([])
    assert sent == []
    write_json(progress_file(), {"timesteps": 64})
    agent._report([])
    assert [p["timesteps"] for p in sent] == [64] and "reported" in sent[0]["times"]
    progress_file().unlink()
    agent._report([], exit_code=1)  # a trainer that died before its first write still ends the session
    assert sent[-1]["exitCode"] == 1


def test_a_sigterm_after_the_trainer_exited_still_stops_a_warm_agent(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Between its trainer's exit and its session's release a warm agent's SIGTERM handler is still the
    trainer's: the pod's deletion arriving then must stop the agent, not be passed to a dead trainer
    while the agent waits on for a release (a flaky hang of test_agent_standby until this)."""
    import subprocess

    from shoal.agent.main import Agent
    from shoal.agent.podwatch import FileWatch

    monkeypatch.setenv("SHOAL_WORKDIR", str(tmp_path))
    monkeypatch.setenv("SHOAL_CONFIG_FILE", str(tmp_path / "absent.json"))
    agent = Agent(["true"], FileWatch(tmp_path / "annotations.json"), None)  # type: ignore[arg-type]
    exited = subprocess.Popen(["true"])
    exited.wait()
    agent._terminated(exited)
    assert agent.stop_requested
    assert agent._claim_id() == agent.claim_id  # nothing released: without the flag it would wait here


def test_the_containers_limits_come_from_its_cgroup_and_no_limit_is_no_series(tmp_path: Path) -> None:
    """cgroup v2's files as the kernel writes them in a pod with limits, and without."""
    from prometheus_client import REGISTRY

    from shoal.agent.limits import cgroup_limits, export_limits

    (tmp_path / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "memory.max").write_text("2147483648\n")
    assert export_limits(tmp_path) == (1.5, 2**31)
    assert REGISTRY.get_sample_value("shoal_agent_cpu_limit_cores") == 1.5
    assert REGISTRY.get_sample_value("shoal_agent_memory_limit_bytes") == 2**31
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_limits(tmp_path) == (None, None)
    assert cgroup_limits(tmp_path / "absent") == (None, None)  # cgroup v1, or none: nothing to say
