"""A test double for the SB3 trainer: REINFORCE on a 10-armed bandit, in numpy, no torch.

It keeps the trainer protocol (shoal.agent.protocol) so tests and benchmarks can run many agents
at once on two cores, where one torch process each would not fit. Real enough to show learning: the mean reward climbs towards the best
arm's. Checkpoints hold the policy, the baseline, the counters and the random state, so a
resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from shoal.agent.protocol import (
    checkpoint_dir,
    command_id_file,
    load_config,
    progress_file,
    read_json,
    standby,
    write_json,
)

ARMS = 10
# As the SB3 trainer (shoal.agent.sb3.PROGRESS_EVERY): progress.json at most once a second, and at once
# when it matters (the first, a checkpoint, the end). Written every episode, 50 doubles on the test bed's
# two cores spent more CPU writing files than the control plane they are measured against.
PROGRESS_EVERY = 1.0


class Trainer:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.total = int(cfg.get("totalTimesteps", 100_000))
        self.lr = float(cfg.get("learningRate", 0.05))
        self.vec = max(1, int(cfg.get("vecEnvs", 8)))
        self.every = float(cfg.get("checkpointEverySec", 300))
        self.pace = float(cfg.get("secondsPerEpisode", 0.0))  # slows tests' runs down to watchable speed
        game = str(cfg.get("game", "bandit"))
        seed = int(hashlib.sha256(game.encode()).hexdigest()[:8], 16)
        self.means = np.random.default_rng(seed).normal(0.0, 1.0, ARMS)
        self.theta = np.zeros(ARMS)
        self.baseline = 0.0
        self.timesteps = 0
        self.episodes = 0
        self.rewards: list[float] = []
        self.rng = np.random.default_rng(seed + 1)
        self.last_checkpoint: dict[str, Any] | None = None
        self.want_checkpoint = False
        self.want_stop = False
        self.reported_at = -PROGRESS_EVERY

    # --- checkpoints ----------------------------------------------------------------------------------

    def save(self) -> dict[str, Any]:
        directory = checkpoint_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"ckpt-{self.timesteps:012d}.npz"
        tmp = directory / f".{path.name}.tmp.npz"
        np.savez(
            tmp,
            theta=self.theta,
            baseline=self.baseline,
            timesteps=self.timesteps,
            episodes=self.episodes,
            rewards=np.array(self.rewards[-50:]),
            rng=json.dumps(self.rng.bit_generator.state),
        )
        os.replace(tmp, path)
        write_json(directory / "latest.json", {"path": str(path), "timesteps": self.timesteps})
        command = command_id_file()
        command_id = int(command.read_text()) if command.exists() else 0
        self.last_checkpoint = {
            "path": str(path),
            "timesteps": self.timesteps,
            "time": time.time(),
            "commandId": command_id,
        }
        return self.last_checkpoint

    def load(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as data:
            self.theta = data["theta"].copy()
            self.baseline = float(data["baseline"])
            self.timesteps = int(data["timesteps"])
            self.episodes = int(data["episodes"])
            self.rewards = [float(x) for x in data["rewards"]]
            self.rng.bit_generator.state = json.loads(str(data["rng"]))
        self.last_checkpoint = {
            "path": str(path),
            "timesteps": self.timesteps,
            "time": time.time(),
            "commandId": 0,
        }

    # --- learning ------------------------------------------------------------------------------------------

    def step(self) -> float:
        """One episode: vecEnvs pulls, one policy-gradient update. Returns the loss."""
        z = self.theta - self.theta.max()
        probs = np.exp(z) / np.exp(z).sum()
        arms = self.rng.choice(ARMS, size=self.vec, p=probs)
        rewards = self.rng.normal(self.means[arms], 1.0)
        advantage = rewards - self.baseline
        onehot = np.eye(ARMS)[arms]
        grad = ((onehot - probs) * advantage[:, None]).mean(axis=0)
        self.theta += self.lr * grad
        self.baseline = 0.9 * self.baseline + 0.1 * float(rewards.mean())
        self.timesteps += self.vec
        self.episodes += 1
        self.rewards.append(float(rewards.mean()))
        return float(-(np.log(probs[arms]) * advantage).mean())

    def report(self, loss: float, done: bool = False, now: bool = True) -> None:
        """`now`: written at once; otherwise only when the last write is PROGRESS_EVERY old."""
        if not now and time.monotonic() - self.reported_at < PROGRESS_EVERY:
            return
        self.reported_at = time.monotonic()
        recent = self.rewards[-50:]
        write_json(
            progress_file(),
            {
                "device": "cpu",  # numpy: as the SB3 trainer reports torch's device
                "timesteps": self.timesteps,
                "episodes": self.episodes,
                "totalTimesteps": self.total,
                "meanReward": round(float(np.mean(recent)), 4) if recent else None,
                "loss": round(loss, 6),
                "bestArmMean": round(float(self.means.max()), 4),
                "lastCheckpoint": self.last_checkpoint,
                "done": done,
            },
        )

    def run(self) -> int:
        signal.signal(signal.SIGUSR1, lambda *_: setattr(self, "want_checkpoint", True))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "want_stop", True))
        last_save = time.monotonic()
        loss = 0.0
        self.report(loss)
        while self.timesteps < self.total:
            loss = self.step()
            if self.want_stop:
                # Checked before any other save: a stop that lands during a save must get its own.
                self.save()
                self.report(loss)
                return 0
            saved = self.want_checkpoint or time.monotonic() - last_save >= self.every
            if saved:
                self.want_checkpoint = False  # cleared first: a request during the save is kept
                self.save()
                last_save = time.monotonic()
            self.report(loss, now=saved)
            if self.pace:
                time.sleep(self.pace)
        self.save()
        self.report(loss, done=True)
        return 0


def best_arm_mean(game: str) -> float:
    """What a run of `game` reports as bestArmMean: tests tell from it which game a trainer ran."""
    return round(float(Trainer({"game": game}).means.max()), 4)


def main() -> int:
    if not standby():  # numpy, its one slow import, is loaded by now
        return 0
    trainer = Trainer(load_config(extra=("secondsPerEpisode",)))
    resume = os.environ.get("SHOAL_RESUME_FROM")
    if not resume:
        latest = read_json(checkpoint_dir() / "latest.json")
        resume = latest.get("path") if latest else None
    if resume and Path(resume).exists():
        trainer.load(Path(resume))
        print(f"resumed from {resume} at {trainer.timesteps} timesteps", flush=True)
    return trainer.run()


if __name__ == "__main__":
    sys.exit(main())
