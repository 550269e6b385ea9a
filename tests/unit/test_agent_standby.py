"""A warm pod's trainer started before its claim: the real agent and the bandit trainer double as local
processes, annotations from a file (the agent's local mode). The trainer waiting before the claim is
the one that serves every claim (it forks each session's trainer), with the session's config and
checkpoint directory; a trainer that does not wait is started afresh at the claim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


class WarmAgent:
    def __init__(self, tmp: Path, command: list[str]) -> None:
        self.tmp = tmp
        self.annotations = tmp / "annotations.json"
        self.annotations.write_text("{}")
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT}",
            "SHOAL_CONFIG_FILE": str(tmp / "none.json"),  # no config: a warm pod waiting for a claim
            "SHOAL_WORKDIR": str(tmp / "work"),
            "SHOAL_CHECKPOINT_DIR": str(tmp / "checkpoints"),
            "SHOAL_SECONDSPEREPISODE": "0.01",
        }
        self.log = open(tmp / "agent.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shoal.agent",
                f"--annotations-file={self.annotations}",
                "--report=file",
                f"--report-file={tmp / 'report.json'}",
                "--report-every=0.2",
                "--port=0",
                "--tensorboard-port=0",
                "--standby=on",
                "--",
                *command,
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def trainers(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children()]
        except psutil.Error:
            return []

    def claim(self, session: str, total: int, claims: str = "1") -> None:
        config = {"game": "bandit", "algorithm": "PPO", "totalTimesteps": total}
        self.annotations.write_text(
            json.dumps(
                {
                    "shoal.dev/session-config": json.dumps(config),
                    "shoal.dev/claimed-by": session,
                    "shoal.dev/claims": claims,
                }
            )
        )

    def command(self, verb: str, cid: int, claims: str = "1") -> None:
        current = json.loads(self.annotations.read_text())
        current.update(
            {"shoal.dev/command": verb, "shoal.dev/command-id": str(cid), "shoal.dev/claims": claims}
        )
        self.annotations.write_text(json.dumps(current))

    def report(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.tmp / "report.json").read_text()))
        except (OSError, ValueError):
            return {}

    def output(self) -> str:
        return (self.tmp / "agent.log").read_text(errors="replace")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        finally:
            self.log.close()


@pytest.fixture
def bandit_agent(tmp_path: Path) -> Iterator[WarmAgent]:
    agent = WarmAgent(tmp_path, [sys.executable, "-m", "tests.doubles.bandit"])
    yield agent
    if agent.proc.poll() is None:
        agent.stop()


def forked(standby: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(standby).children()]
    except psutil.Error:
        return []


def test_the_trainer_in_standby_serves_every_claim_of_the_pod(bandit_agent: WarmAgent) -> None:
    """It forks one trainer per claim: the agent's only child from before the first claim to its end,
    the sessions' exit statuses reported from its answers (a stop's 0, a kill's -9)."""
    agent = bandit_agent
    waiting = until(agent.trainers, 30, "a trainer in standby")
    assert len(waiting) == 1
    assert not agent.report()  # nothing reported before a claim
    agent.claim("s1", total=100_000)
    until(lambda: (agent.report().get("timesteps") or 0) > 0, 30, "the session's first progress")
    first = forked(waiting[0])
    assert len(first) == 1 and agent.trainers() == waiting  # forked by the one that waited
    ckpt = agent.tmp / "checkpoints" / "s1"
    agent.command("stop", 1)
    until(lambda: agent.report().get("exitCode") == 0, 30, "the trainer stopped on the command")
    assert any(ckpt.glob("ckpt-*.npz")), list(ckpt.parent.rglob("*"))  # the session's own directory

    agent.annotations.write_text("{}")  # released by its session
    until(lambda: "released by its session" in agent.output(), 30, "the release seen")
    agent.claim("s2", total=100_000, claims="2")
    until(
        lambda: (agent.report().get("timesteps") or 0) > 0 and "exitCode" not in agent.report(),
        30,
        "the next session's first progress",
    )
    second = forked(waiting[0])
    assert len(second) == 1 and second != first and agent.trainers() == waiting  # no new interpreter
    agent.command("kill", 1, claims="2")
    until(lambda: agent.report().get("exitCode") == -9, 30, "the killed trainer's status")
    assert not any((agent.tmp / "checkpoints" / "s2").glob("ckpt-*.npz"))  # killed: no checkpoint

    assert agent.stop() == 0
    assert not psutil.pid_exists(waiting[0]) or psutil.Process(waiting[0]).status() == psutil.STATUS_ZOMBIE


def test_a_trainer_that_does_not_wait_is_started_afresh_at_the_claim(tmp_path: Path) -> None:
    """A command that ignores SHOAL_STANDBY exits before any claim; the agent says so, starts it after
    the claim as it would any trainer, and does not start it early again."""
    script = tmp_path / "trainer.py"
    script.write_text(
        "import json, os, pathlib, sys\n"
        "cfg = pathlib.Path(os.environ['SHOAL_CONFIG_FILE'])\n"
        "if not cfg.exists(): sys.exit(3)\n"
        "out = pathlib.Path(os.environ['SHOAL_WORKDIR']) / 'progress.json'\n"
        "out.write_text(json.dumps({'timesteps': 1, 'done': True}))\n"
    )
    agent = WarmAgent(tmp_path, [sys.executable, str(script)])
    try:
        until(lambda: "waiting for a session to claim" in agent.output(), 30, "the agent waiting")
        agent.claim("s1", total=10)
        until(lambda: agent.report().get("exitCode") == 0, 30, "the trainer run after the claim")
        assert "before its claim; not started in standby again" in agent.output()
        assert agent.report()["timesteps"] == 1
    finally:
        agent.stop()
