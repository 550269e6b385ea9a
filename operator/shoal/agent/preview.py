"""A second copy of the environment, played by the current policy, for people to watch.

Its frames go to one JPEG file (replaced atomically) that the agent streams as MJPEG; every
`record_every`-th episode is recorded to MP4 by gymnasium's RecordVideo beside the checkpoints. It
steps at most `fps` times a second of wall time, so watching costs training a bounded share.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

KEEP_VIDEOS = 10


class Preview:
    def __init__(
        self,
        game: str,
        frame_path: Path,
        video_dir: Path,
        prefix: str = "episode",
        fps: float = 15.0,
        record_every: int = 10,
    ) -> None:
        import warnings

        from gymnasium.wrappers import RecordVideo

        from shoal.agent.games import preview_env

        # RecordVideo warns about a non-empty folder; names are unique per resume, nothing is overwritten.
        warnings.filterwarnings("ignore", message=".*Overwriting existing videos.*")
        self.frame_path = frame_path
        self.video_dir = video_dir
        self.period = 1.0 / fps
        self.last = 0.0
        video_dir.mkdir(parents=True, exist_ok=True)

        def record(env: Any) -> Any:
            # Beneath any preprocessing: people see (and videos keep) the game's full screen.
            self.screen = RecordVideo(
                env,
                str(video_dir),
                episode_trigger=lambda episode: episode % record_every == 0,
                name_prefix=prefix,
            )
            return self.screen

        self.env: Any = preview_env(game, record)
        self.obs = self.env.reset()

    def tick(self, model: Any, venv: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.period:
            return
        self.last = now
        # The training run's normalisation, where it has one: the policy acts on what it learnt on.
        obs = venv.normalize_obs(self.obs) if hasattr(venv, "normalize_obs") else self.obs
        action, _ = model.predict(obs, deterministic=True)
        self.obs, _, _, _ = self.env.step(action)  # a VecEnv: a finished episode starts again itself
        self.write_frame(self.screen.render())

    def write_frame(self, frame: Any) -> None:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=80)
        tmp = self.frame_path.with_name(f".{self.frame_path.name}.tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, self.frame_path)  # no fsync: a lost frame is harmless

    def videos(self) -> list[str]:
        """Finished recordings, newest last; older ones beyond KEEP_VIDEOS are removed."""
        done = sorted(self.video_dir.glob("*.mp4"), key=lambda p: p.stat().st_mtime)
        for old in done[:-KEEP_VIDEOS]:
            old.unlink(missing_ok=True)
        return [p.name for p in done[-KEEP_VIDEOS:]]

    def close(self) -> None:
        self.env.close()
