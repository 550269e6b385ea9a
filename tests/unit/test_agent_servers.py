"""The agent's servers as a person meets them: TensorBoard's scalars over HTTP, the live MJPEG stream."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from testbed.localpod import free_port
from tests.e2e.util import wait_until

ROOT = Path(__file__).resolve().parents[2]
POLE = np.array([202, 152, 101])  # CartPole's pole colour in gymnasium's renderer
CART = np.array([0, 0, 0])


class LocalAgent:
    """shoal-agent with its default command (the SB3 trainer), reading annotations from a file."""

    def __init__(self, tmp: Path, **cfg: Any) -> None:
        self.tmp = tmp
        self.tensorboard, self.stream = free_port(), free_port()
        config = {
            "game": "CartPole-v1",
            "algorithm": "PPO",
            "totalTimesteps": 10**7,
            "checkpointEverySec": 600,
        }
        (tmp / "config.json").write_text(json.dumps({**config, **cfg}))
        (tmp / "annotations.json").write_text("{}")
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "operator"),
            "SHOAL_WORKDIR": str(tmp / "work"),
            "SHOAL_CHECKPOINT_DIR": str(tmp / "ckpt"),
            "SHOAL_CONFIG_FILE": str(tmp / "config.json"),
        }
        args = ["--annotations-file", str(tmp / "annotations.json"), "--report", "file"]
        args += ["--report-file", str(tmp / "report.json"), "--report-every", "1", "--bind", "127.0.0.1"]
        args += [
            "--port",
            "0",
            "--tensorboard-port",
            str(self.tensorboard),
            "--stream-port",
            str(self.stream),
        ]
        self.proc = subprocess.Popen([sys.executable, "-m", "shoal.agent", *args], env=env)

    def progress(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.tmp / "report.json").read_text()))
        except (OSError, ValueError):
            return {}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def agent(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalAgent]:
    run = LocalAgent(tmp_path, **getattr(request, "param", {}))
    yield run
    run.stop()


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def test_tensorboard_serves_the_runs_scalars(agent: LocalAgent) -> None:
    base = f"http://127.0.0.1:{agent.tensorboard}"
    want = {"rollout/ep_rew_mean", "train/loss"}  # the loss appears from the second rollout on
    wait_until(
        lambda: want <= set((get_json(f"{base}/data/plugin/scalars/tags") or {}).get("run_0", ())),
        120,
        "tags",
    )

    def points() -> list[Any]:
        url = f"{base}/data/plugin/scalars/scalars?run=run_0&tag=rollout/ep_rew_mean"
        return list(get_json(url) or [])

    series = wait_until(lambda: points() if len(points()) >= 2 else [], 120, "two reward points")
    steps = [step for _, step, _ in series]
    assert steps == sorted(steps) and steps[-1] > 0
    assert all(value > 0 for _, _, value in series)  # CartPole pays 1 per step survived


def frames(url: str, count: int) -> list[np.ndarray]:
    """Read `count` parts of a multipart/x-mixed-replace stream and decode each as a JPEG."""
    out: list[np.ndarray] = []
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        while len(out) < count:
            line = resp.readline()
            if line.strip() != b"--frame":
                continue
            headers = {}
            while (h := resp.readline().strip()) != b"":
                key, _, value = h.decode().partition(":")
                headers[key.lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            data = resp.read(int(headers["content-length"]))
            out.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    return out


def near(image: np.ndarray, colour: np.ndarray, tolerance: int = 40) -> int:
    return int((np.abs(image.astype(int) - colour).sum(axis=2) < tolerance).sum())


@pytest.mark.parametrize("agent", [{"videoRecording": True}], indirect=True)
def test_the_stream_shows_the_environment_live_and_episodes_are_recorded(
    agent: LocalAgent, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{agent.stream}"
    wait_until(lambda: (tmp_path / "work" / "frame.jpg").exists(), 120, "the first frame")
    got = frames(f"{url}/stream", 6)
    assert all(f.shape == (400, 600, 3) for f in got)
    assert all(near(f, POLE) > 200 and near(f, CART) > 200 for f in got)  # a pole and a cart in every frame
    assert any(not np.array_equal(got[0], f) for f in got[1:]), "the stream does not move"

    videos: list[str] = wait_until(lambda: agent.progress().get("videos") or [], 120, "a recorded episode")
    with urllib.request.urlopen(f"{url}/videos/{videos[0]}", timeout=10) as resp:
        assert resp.read(12)[4:8] == b"ftyp"  # an MP4 file
    assert get_json(f"{url}/videos") == sorted(videos)

    page = screenshot(f"{url}/", tmp_path)[:400, :600]
    assert near(page, POLE) > 200, "the page does not show the pole"
    assert near(page, CART) > 200, "the page does not show the cart"


def screenshot(url: str, tmp_path: Path, size: str = "640,480") -> np.ndarray:
    """The page at `url` as headless Chromium shows it; SHOAL_SCREENSHOT keeps the PNG to look at."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (testbed/install-deps.sh installs it)"
    shot = Path(os.environ.get("SHOAL_SCREENSHOT", tmp_path / "page.png"))
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            f"--window-size={size}",
            "--virtual-time-budget=3000",
            url,
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return np.asarray(Image.open(shot).convert("RGB"))


def breakout_colours() -> list[np.ndarray]:
    """The colours that fill Breakout's first screen (walls, six rows of bricks), from ALE itself."""
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    env = gymnasium.make("ALE/Breakout-v5", render_mode="rgb_array")
    env.reset(seed=0)
    screen: Any = env.render()
    colours, counts = np.unique(screen.reshape(-1, 3), axis=0, return_counts=True)
    env.close()
    return [c.astype(int) for c, n in zip(colours, counts, strict=True) if n >= 300 and c.any()]


@pytest.mark.parametrize(
    "agent", [{"game": "breakout", "algorithm": "A2C", "videoRecording": True}], indirect=True
)
def test_an_atari_stream_shows_the_game_screen_played_by_the_policy(
    agent: LocalAgent, tmp_path: Path
) -> None:
    colours = breakout_colours()
    assert len(colours) >= 7, "walls and six brick rows"
    url = f"http://127.0.0.1:{agent.stream}"
    wait_until(lambda: (tmp_path / "work" / "frame.jpg").exists(), 180, "the first frame")
    got = frames(f"{url}/stream", 6)
    assert all(f.shape == (210, 160, 3) for f in got)  # the full screen, not the policy's 84x84 input
    for colour in colours:
        assert all(near(f, colour) > 100 for f in got), f"a stream frame lacks Breakout's {colour}"
    assert any(not np.array_equal(got[0], f) for f in got[1:]), "the stream does not move"
    wait_until(lambda: agent.progress().get("timesteps"), 180, "progress")
    assert agent.progress()["game"] == "ALE/Breakout-v5"
    page = screenshot(f"{url}/", tmp_path, "640,820")
    for colour in colours:
        assert near(page, colour) > 1000, f"the page does not show Breakout's {colour}"


def test_a_stopped_stream_gives_its_port_back_for_the_next_session_on_the_pod(tmp_path: Path) -> None:
    """A warm pod serves one session after another: each session's stream binds the same port."""
    from shoal.agent.servers import StreamServer

    port = free_port()
    (tmp_path / "frame.jpg").write_bytes(b"")
    for _ in range(2):
        stream = StreamServer("127.0.0.1", port, tmp_path / "frame.jpg", tmp_path / "videos")
        stream.start()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/videos", timeout=5) as r:
            assert json.loads(r.read()) == []
        stream.stop()
