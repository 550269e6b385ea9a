"""The real trainer: a gymnasium environment learned by a Stable-Baselines3 algorithm.

Run as `python -m shoal.agent.sb3` (shoal-agent's default command); needs `pip install 'shoal[train]'`.
It reads the session's config (game, algorithm, vecEnvs, learningRate, totalTimesteps,
checkpointEverySec, videoRecording), resumes from the latest checkpoint in SHOAL_CHECKPOINT_DIR,
writes TensorBoard event files beside the checkpoints, and keeps progress.json current for the agent.
SIGUSR1 asks for a checkpoint, SIGTERM for a checkpoint and a clean exit.

A bad config or checkpoint ends the run with exit code 3 and an `error` (reason, message) in
progress.json: the operator fails the session with that reason instead of restarting it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoal.agent.checkpoints import Checkpoint, CheckpointError, CheckpointStore, check_compatible
from shoal.agent.games import ConfigError, resolve_game, training_env
from shoal.agent.protocol import (
    EXIT_BAD_INPUT,
    checkpoint_dir,
    command_id_file,
    flag,
    load_config,
    progress_file,
    standby,
    workdir,
    write_json,
)
from shoal.vocab import ENV_RESUME_FROM, ENV_STANDBY

ON_POLICY = ("A2C", "PPO")
ALGORITHMS = ("A2C", "DDPG", "DQN", "PPO", "SAC", "TD3")
MODEL, NORMALIZE, REPLAY = "model.zip", "vecnormalize.pkl", "replay_buffer.pkl"
IMAGE_BUFFER = 100_000  # replay transitions kept for image observations
PROGRESS_EVERY = 1.0  # seconds between progress.json writes; the agent decides what it reports


def resolve_algorithm(name: str) -> type[Any]:
    import stable_baselines3

    upper = name.upper()
    if upper not in ALGORITHMS:
        raise ConfigError(
            "InvalidAlgorithm",
            f"spec.algorithm: unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}",
        )
    return getattr(stable_baselines3, upper)  # type: ignore[no-any-return]


def state_digest(model: Any, venv: Any = None) -> str:
    """A hash of everything a resume must restore: policy and optimizer tensors, normalisation."""
    import numpy as np
    import torch

    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            h.update(obj.detach().cpu().numpy().tobytes())
        elif isinstance(obj, dict):
            for key in sorted(obj, key=str):
                h.update(str(key).encode())
                feed(obj[key])
        elif isinstance(obj, list | tuple):
            for item in obj:
                feed(item)
        elif isinstance(obj, np.ndarray):
            h.update(obj.tobytes())
        else:
            h.update(repr(obj).encode())

    feed(model.policy.state_dict())
    feed(model.policy.optimizer.state_dict()["state"])
    rms = getattr(venv, "obs_rms", None)
    if rms is not None:
        feed([rms.mean, rms.var, rms.count])
    return h.hexdigest()[:16]


class Run:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.game = str(cfg.get("game", ""))
        self.algorithm = str(cfg.get("algorithm", "PPO")).upper()
        self.total = int(cfg.get("totalTimesteps", 100_000))
        self.vec = max(1, int(cfg.get("vecEnvs", 1)))
        self.lr = float(cfg.get("learningRate", 3e-4))
        self.every = float(cfg.get("checkpointEverySec", 300))
        self.video = flag(cfg, "videoRecording")
        self.normalize = self.algorithm in ON_POLICY and str(cfg.get("normalize", "true")).lower() != "false"
        self.store = CheckpointStore(checkpoint_dir())
        self.tb_dir = checkpoint_dir() / "tensorboard"
        self.want_checkpoint = self.want_stop = False
        self.episodes = 0
        self.resumed: dict[str, Any] | None = None
        self.last_checkpoint: dict[str, Any] | None = None
        self.loss: float | None = None
        self.fps: float | None = None
        self.preview: Any = None
        self._rate = (0.0, 0)  # (monotonic time, timesteps) when learning began: set in train()
        self._last_save = self._last_progress = time.monotonic()

    # --- building -------------------------------------------------------------------------------------------

    def build(self) -> None:
        import gymnasium
        import torch
        from stable_baselines3.common.vec_env import VecNormalize

        # Small policies train fastest on one thread; a pod's CPU limit is not torch's core count.
        torch.set_num_threads(int(os.environ.get("SHOAL_TORCH_THREADS", "1")))
        algo = resolve_algorithm(self.algorithm)
        self.game = resolve_game(self.game)  # "breakout" trains, checkpoints and reports as ALE/Breakout-v5
        self.store.clean()
        ckpt = self.store.latest()
        named = os.environ.get(ENV_RESUME_FROM, "")
        if ckpt is None and named and Path(named).is_dir():  # latest.json lost, the operator's record kept
            ckpt = self.store.open(Path(named))
        if ckpt is not None:
            check_compatible(ckpt, self.game, self.algorithm)
        try:
            venv = training_env(self.game, self.vec)
        except gymnasium.error.Error as exc:  # e.g. DependencyNotInstalled for Box2D games
            raise ConfigError("GameUnavailable", f"spec.game: {self.game} cannot start: {exc}") from None
        image = len(venv.observation_space.shape or ()) == 3
        if self.normalize and not image:
            venv = (
                VecNormalize.load(str(ckpt.file(NORMALIZE)), venv)
                if ckpt is not None and ckpt.file(NORMALIZE).exists()
                else VecNormalize(venv, norm_obs=True, norm_reward=False)
            )
        self.venv = venv
        self.model = self._model(algo, venv, ckpt, image)
        if ckpt is not None:
            self.episodes = int(ckpt.meta.get("episodes", 0))
            self.last_checkpoint = self._describe(ckpt, command_id=0)
            self.resumed = {
                "path": str(ckpt.path),
                "timesteps": self.model.num_timesteps,
                "digest": state_digest(self.model, self.venv),
                "replayBufferSize": self._replay_size(),
                "learningRate": self.model.lr_schedule(1.0),
            }
            print(f"resumed from {ckpt.path} at {self.model.num_timesteps} timesteps", flush=True)
        if self.video:
            from shoal.agent.preview import Preview

            self.preview = Preview(
                self.game,
                workdir() / "frame.jpg",
                checkpoint_dir() / "videos",
                prefix=f"t{self.model.num_timesteps:012d}",  # unique across resumes
            )

    def _model(self, algo: type[Any], venv: Any, ckpt: Checkpoint | None, image: bool) -> Any:
        if ckpt is not None:
            try:
                from stable_baselines3.common.utils import ConstantSchedule

                model = algo.load(
                    str(ckpt.file(MODEL)),
                    env=venv,
                    device=os.environ.get("SHOAL_DEVICE", "auto"),
                    # SB3's way to set the rate on load: the spec's learningRate, not the saved one.
                    custom_objects={"learning_rate": self.lr, "lr_schedule": ConstantSchedule(self.lr)},
                )
                if self.algorithm not in ON_POLICY and ckpt.file(REPLAY).exists():
                    model.load_replay_buffer(str(ckpt.file(REPLAY)))
            except (OSError, ValueError, KeyError, RuntimeError, EOFError) as exc:
                raise CheckpointError("CheckpointCorrupt", f"{ckpt.path} cannot be loaded: {exc}") from None
            return model
        kwargs: dict[str, Any] = {"learning_rate": self.lr, "verbose": 0, "tensorboard_log": str(self.tb_dir)}
        if self.algorithm not in ON_POLICY:
            kwargs["buffer_size"] = min(1_000_000, self.total)  # never more than the run can fill
            if image:  # SB3's Atari zoo settings: a million 84x84x4 frames would need 56 GB
                kwargs["buffer_size"] = min(IMAGE_BUFFER, self.total)
                kwargs["optimize_memory_usage"] = True  # next observations not stored twice
                kwargs["replay_buffer_kwargs"] = {"handle_timeout_termination": False}  # required by it
        try:
            return algo(
                "CnnPolicy" if image else "MlpPolicy",
                venv,
                device=os.environ.get("SHOAL_DEVICE", "auto"),
                **kwargs,
            )
        except (AssertionError, ValueError) as exc:
            raise ConfigError(
                "IncompatibleAlgorithm",
                f"spec.algorithm: {self.algorithm} cannot train on {self.game}: {exc}",
            ) from None

    def _replay_size(self) -> int | None:
        buf = getattr(self.model, "replay_buffer", None)
        return None if buf is None else int(buf.size())

    # --- checkpoints and progress --------------------------------------------------------------------

    def save(self) -> None:
        steps = int(self.model.num_timesteps)
        meta = {
            "game": self.game,
            "algorithm": self.algorithm,
            "episodes": self.episodes,
            "digest": state_digest(self.model, self.venv),
            "replayBufferSize": self._replay_size(),
        }
        with self.store.writing(steps, meta) as tmp:
            self.model.save(str(tmp / MODEL))
            if hasattr(self.venv, "obs_rms"):
                self.venv.save(str(tmp / NORMALIZE))
            if self.algorithm not in ON_POLICY:
                self.model.save_replay_buffer(str(tmp / REPLAY))
        ckpt = self.store.latest()
        assert ckpt is not None
        command = command_id_file()
        self.last_checkpoint = self._describe(ckpt, int(command.read_text() or 0) if command.exists() else 0)
        self._last_save = time.monotonic()

    @staticmethod
    def _describe(ckpt: Checkpoint, command_id: int) -> dict[str, Any]:
        return {
            "path": str(ckpt.path),
            "timesteps": ckpt.timesteps,
            "time": ckpt.meta.get("time"),
            "commandId": command_id,
        }

    def report(self, done: bool = False) -> None:
        now, steps = time.monotonic(), int(self.model.num_timesteps)
        since, before = self._rate
        if now - since >= 1.0:  # since this process began learning, as SB3's time/fps: updates included
            self.fps = round((steps - before) / (now - since), 1)
        rewards = [float(e["r"]) for e in self.model.ep_info_buffer or []]
        write_json(
            progress_file(),
            {
                "game": self.game,
                "algorithm": self.algorithm,
                "device": str(self.model.device),
                "timesteps": steps,
                "totalTimesteps": self.total,
                "episodes": self.episodes,
                "meanReward": round(sum(rewards) / len(rewards), 3) if rewards else None,
                "loss": None if self.loss is None else round(self.loss, 6),
                "fps": self.fps,
                "lastCheckpoint": self.last_checkpoint,
                "resumedFrom": self.resumed,
                "videos": self.preview.videos() if self.preview is not None else [],
                "done": done,
            },
        )
        self._last_progress = now

    def on_step(self, infos: list[dict[str, Any]]) -> bool:
        """Called by SB3 after every vectorised step; False stops learning."""
        self.episodes += sum(1 for info in infos if "episode" in info)
        logged = self.model.logger.name_to_value
        loss = logged.get("train/loss", logged.get("train/value_loss"))
        if loss is not None:
            self.loss = float(loss)
        if self.want_stop:
            return False
        if self.want_checkpoint or time.monotonic() - self._last_save >= self.every:
            self.want_checkpoint = False  # cleared first: a request during the save is kept
            self.save()
            self.report()
        elif time.monotonic() - self._last_progress >= PROGRESS_EVERY:
            self.report()
        if self.preview is not None:
            self.preview.tick(self.model, self.venv)
        return True

    def train(self) -> int:
        from stable_baselines3.common.callbacks import BaseCallback

        run = self

        class Hook(BaseCallback):
            def _on_step(self) -> bool:
                return run.on_step(self.locals.get("infos") or [])

        signal.signal(signal.SIGUSR1, lambda *_: setattr(self, "want_checkpoint", True))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "want_stop", True))
        self._rate = (time.monotonic(), int(self.model.num_timesteps))
        self.report()
        remaining = self.total - int(self.model.num_timesteps)
        if remaining > 0 and not self.want_stop:
            self.model.learn(remaining, callback=Hook(), reset_num_timesteps=False, tb_log_name="run")
        self.save()  # at the end, and on a stop: the exit's checkpoint, acknowledged by command id
        self.report(done=self.model.num_timesteps >= self.total)
        if self.preview is not None:
            self.preview.close()
        return 0


def fail(exc: CheckpointError) -> int:
    print(f"{exc.reason}: {exc.message}", file=sys.stderr, flush=True)
    write_json(progress_file(), {"error": {"reason": exc.reason, "message": exc.message}, "done": False})
    return EXIT_BAD_INPUT


def prewarm() -> None:
    """The imports that make a cold start slow (torch alone takes seconds), paid before the claim when
    the trainer waits in standby; a missing one is reported by build() as TrainerMissing."""
    for module in ("torch", "gymnasium", "stable_baselines3"):
        try:
            __import__(module)
        except ImportError:
            return


def main(cfg_loader: Callable[[], dict[str, Any]] = load_config) -> int:
    if os.environ.get(ENV_STANDBY) == "1":
        prewarm()
        if not standby():
            return 0  # the pod stopped before a session claimed it
    try:
        run = Run(cfg_loader())
        run.build()
    except CheckpointError as exc:
        return fail(exc)
    except ImportError as exc:
        return fail(
            ConfigError("TrainerMissing", f"the trainer needs pip install 'shoal[train]' in the image: {exc}")
        )
    return run.train()


if __name__ == "__main__":
    sys.exit(main())
