"""The SB3 trainer as a real process: bad input, exact resume after SIGKILL, checkpoints never torn."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shoal.agent.checkpoints import CheckpointStore
from shoal.agent.protocol import EXIT_BAD_INPUT
from tests.e2e.util import wait_until

ROOT = Path(__file__).resolve().parents[2]


class TrainerRun:
    def __init__(self, tmp: Path, **cfg: Any) -> None:
        self.work, self.ckpt = tmp / "work", tmp / "ckpt"
        config = {"game": "CartPole-v1", "algorithm": "PPO", "totalTimesteps": 10**7, "checkpointEverySec": 1}
        config.update(cfg)
        (tmp / "config.json").write_text(json.dumps(config))
        self.work.mkdir(exist_ok=True)
        (self.work / "progress.json").unlink(missing_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "operator"),
            "SHOAL_WORKDIR": str(self.work),
            "SHOAL_CHECKPOINT_DIR": str(self.ckpt),
            "SHOAL_CONFIG_FILE": str(tmp / "config.json"),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shoal.agent.sb3"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def progress(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.work / "progress.json").read_text()))
        except (OSError, ValueError):
            return {}

    def checkpoints(self) -> list[Path]:
        return sorted(self.ckpt.glob("ckpt-*"))

    def finish(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        out, _ = self.proc.communicate(timeout=30)
        return out.decode()


def loaded_digest(ckpt: Path, algorithm: str, game: str = "CartPole-v1") -> str:
    """Load a checkpoint in this process, as a resume would, and hash what it restored."""
    import stable_baselines3
    from stable_baselines3.common.vec_env import VecNormalize

    from shoal.agent.games import resolve_game, training_env
    from shoal.agent.sb3 import state_digest

    venv: Any = training_env(resolve_game(game), 1)
    if (ckpt / "vecnormalize.pkl").exists():
        venv = VecNormalize.load(str(ckpt / "vecnormalize.pkl"), venv)
    model = getattr(stable_baselines3, algorithm).load(str(ckpt / "model.zip"), env=venv)
    return state_digest(model, venv)


@pytest.mark.parametrize(
    ("field", "cfg", "reason", "names"),
    [
        ("spec.game", {"game": "CartPol-v1"}, "InvalidGame", "CartPole-v1"),
        ("spec.algorithm", {"algorithm": "PPOX"}, "InvalidAlgorithm", "A2C, DDPG, DQN, PPO, SAC, TD3"),
        ("spec.algorithm", {"algorithm": "SAC"}, "IncompatibleAlgorithm", "Discrete"),
    ],
)
def test_bad_config_ends_the_run_with_a_reason_naming_the_field(
    tmp_path: Path, field: str, cfg: dict[str, Any], reason: str, names: str
) -> None:
    run = TrainerRun(tmp_path, **cfg)
    assert run.proc.wait(120) == EXIT_BAD_INPUT, run.finish()
    error = run.progress()["error"]
    assert error["reason"] == reason
    assert error["message"].startswith(field) and names in error["message"], error
    assert run.checkpoints() == []


@pytest.mark.parametrize(
    ("game", "algorithm", "steps"),
    [
        ("CartPole-v1", "PPO", 0),
        ("CartPole-v1", "dqn", 0),
        # Atari on CPU (stacked 84x84 frames, a CNN policy), past PPO's first update at 2048 steps so
        # the optimizer has state to restore; the seed's short name for one of them.
        ("breakout", "A2C", 2500),
        ("ALE/Pong-v5", "PPO", 2500),
    ],
)
def test_a_run_killed_mid_training_resumes_exactly_from_its_last_checkpoint(
    tmp_path: Path, game: str, algorithm: str, steps: int
) -> None:
    first = TrainerRun(tmp_path, game=game, algorithm=algorithm)

    def saved() -> int:
        return int((first.progress().get("lastCheckpoint") or {}).get("timesteps", 0))

    # 300 s: a real torch trainer starting on a 2-core machine busy with the rest of the suite once
    # took over 120 s to its first report (fresh-clone run); here it takes seconds.
    wait_until(lambda: len(first.checkpoints()) >= 2 and saved() >= steps, 300, "two periodic checkpoints")
    first.proc.send_signal(signal.SIGKILL)  # no warning, no final save
    first.finish()
    latest = CheckpointStore(tmp_path / "ckpt").latest()
    assert latest is not None and latest.timesteps > 0
    killed_at = first.progress()["timesteps"]
    restored = loaded_digest(latest.path, algorithm.upper(), game)  # before the next run prunes it
    assert latest.meta["game"] == {"breakout": "ALE/Breakout-v5"}.get(game, game)  # the resolved id

    second = TrainerRun(tmp_path, game=game, algorithm=algorithm)
    try:
        resumed: dict[str, Any] = wait_until(
            lambda: second.progress().get("resumedFrom") or {}, 300, "resumed progress"
        )
        assert resumed["path"] == str(latest.path)
        assert resumed["timesteps"] == latest.timesteps  # not from zero, not from the killed state
        assert latest.timesteps <= killed_at
        assert resumed["digest"] == latest.meta["digest"] == restored
        assert resumed["learningRate"] == 3e-4  # the config's rate
        if algorithm.upper() == "DQN":
            assert resumed["replayBufferSize"] == latest.meta["replayBufferSize"] > 0
        later = wait_until(
            lambda: (p := second.progress()).get("timesteps", 0) > latest.timesteps + 500 and p,
            300,
            "more steps",
        )
        assert later["episodes"] >= latest.meta["episodes"]
    finally:
        out = second.finish()
    assert f"resumed from {latest.path} at {latest.timesteps} timesteps" in out


def test_sigkill_at_random_moments_of_saving_never_leaves_a_torn_latest(tmp_path: Path) -> None:
    rng = random.Random(17)
    for round_ in range(3):
        run = TrainerRun(tmp_path, checkpointEverySec=0)  # a checkpoint on every step: kills land mid-save
        wait_until(lambda r=run: r.progress().get("lastCheckpoint"), 300, "saving")  # type: ignore[misc]
        time.sleep(rng.uniform(0.0, 1.5))  # the moment of the kill is the test's input, not a wait
        run.proc.send_signal(signal.SIGKILL)
        run.finish()
        latest = CheckpointStore(tmp_path / "ckpt").latest()
        assert latest is not None
        assert loaded_digest(latest.path, "PPO") == latest.meta["digest"], f"round {round_}: torn latest"


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_a_corrupt_or_foreign_checkpoint_fails_the_run_and_is_left_as_it_was(tmp_path: Path) -> None:
    run = TrainerRun(tmp_path, totalTimesteps=2048)
    assert run.proc.wait(180) == 0, run.finish()
    run.finish()
    before = digest_tree(tmp_path / "ckpt")

    foreign = TrainerRun(tmp_path, algorithm="A2C")
    assert foreign.proc.wait(120) == EXIT_BAD_INPUT, foreign.finish()
    foreign.finish()
    error = foreign.progress()["error"]
    assert error["reason"] == "CheckpointMismatch" and "PPO on CartPole-v1" in error["message"]
    assert digest_tree(tmp_path / "ckpt") == before

    latest = CheckpointStore(tmp_path / "ckpt").latest()
    assert latest is not None
    latest.file("model.zip").write_bytes(b"not a zip file")
    before = digest_tree(tmp_path / "ckpt")
    corrupt = TrainerRun(tmp_path, totalTimesteps=4096)
    assert corrupt.proc.wait(120) == EXIT_BAD_INPUT, corrupt.finish()
    corrupt.finish()
    assert corrupt.progress()["error"]["reason"] == "CheckpointCorrupt"
    assert digest_tree(tmp_path / "ckpt") == before  # nothing overwritten, nothing pruned


def test_a_resumed_run_trains_at_the_configs_learning_rate_not_the_saved_one(tmp_path: Path) -> None:
    first = TrainerRun(tmp_path, learningRate=0.001)
    # latest.json, not the directory: the directory is renamed into place before latest.json names
    # it, and a kill between the two leaves nothing to resume (one CI run caught that moment).
    wait_until(lambda: CheckpointStore(first.ckpt).latest(), 300, "a checkpoint named latest")
    first.proc.send_signal(signal.SIGKILL)
    first.finish()
    second = TrainerRun(tmp_path, learningRate=0.0005)  # the spec was edited while paused
    try:
        resumed = wait_until(lambda: second.progress().get("resumedFrom") or {}, 300, "resumed")
        assert resumed["learningRate"] == 0.0005
    finally:
        second.finish()
