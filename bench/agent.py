"""Agent benchmarks: B7 command latency on the test bed, B8 a short learning check of the SB3 trainer.

Each result carries its own start time, commit and raw samples, so it can be read alone.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import provenance, quantiles
from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, pods_path

ROOT = Path(__file__).resolve().parents[1]


def b7(kube: Kube, commands: int = 100, seed: int = 7) -> dict[str, Any]:
    """Annotation written -> trainer signalled, for a real agent run as a local process for a KWOK
    pod (its own credentials, its watch on its own pod). Commands are spaced at random so none lands
    at a fixed phase of anything periodic in the agent (its 0.2 s loop, its report interval)."""
    from bench.harness import drop_namespace, log, namespace, wait
    from testbed.localpod import LocalPod

    out = provenance()
    ns = namespace(kube, "b7")
    session = {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "TrainingSession",
        "metadata": {"name": "b7"},
        "spec": {
            "game": "bandit",
            "algorithm": "PPO",
            "totalTimesteps": 2**31 - 1,
            "image": "registry.example/trainer:1",
            "resources": {"cpu": "100m", "memory": "128Mi"},
        },
    }
    kube.create(custom_path("trainingsessions", ns), session)
    pod_name = wait(
        lambda: (kube.get(custom_path("trainingsessions", ns, "b7")).get("status") or {}).get("podName"),
        60,
        "session pod",
    )
    wait(
        lambda: kube.get(pods_path(ns, pod_name)).get("status", {}).get("phase") == "Running",
        60,
        "pod Running",
    )
    # The bandit test double behind the real agent: the latency is the agent's, not torch's start-up.
    agent = LocalPod(kube, ns, pod_name, command=[sys.executable, "-m", "tests.doubles.bandit"]).start()
    log_file = agent.mounts["/shoal"] / "commands.jsonl"
    rng = random.Random(seed)
    latencies: list[float] = []
    try:
        wait(lambda: (agent.mounts["/shoal"] / "progress.json").exists(), 60, "the trainer's first progress")
        for cid in range(1, commands + 1):
            time.sleep(rng.uniform(0.05, 0.5))  # the randomised spacing is the input, not a wait
            written = time.time()
            kube.merge_patch(
                pods_path(ns, pod_name),
                {
                    "metadata": {
                        "annotations": {"shoal.dev/command": "checkpoint", "shoal.dev/command-id": str(cid)}
                    }
                },
            )

            def signalled(cid: int = cid) -> float | None:
                for line in log_file.read_text().splitlines() if log_file.exists() else []:
                    entry = json.loads(line)
                    if entry["id"] == cid:
                        return float(entry["signalled"])
                return None

            latencies.append(wait(signalled, 30, f"command {cid} signalled", interval=0.005) - written)
    finally:
        agent.stop()
        drop_namespace(kube, ns)
    out.update(
        commands=commands,
        latency_s=quantiles(latencies),
        raw_latency_s=[round(x, 4) for x in latencies],
        goal={"p99_s": 1.0},
    )
    out["goal_met"] = out["latency_s"]["p99"] <= 1.0
    log(f"B7: {out['latency_s']}")
    return out


def b8(timesteps: int = 50_000, repetitions: int = 3) -> dict[str, Any]:
    """PPO on CartPole-v1 with the defaults a session gets: mean episode reward after `timesteps`,
    against a random policy's (about 22) in the same environment."""
    out = provenance()
    runs: list[dict[str, Any]] = []
    for rep in range(repetitions):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = {
                "game": "CartPole-v1",
                "algorithm": "PPO",
                "totalTimesteps": timesteps,
                "checkpointEverySec": 3600,
            }
            Path(tmp, "config.json").write_text(json.dumps(cfg))
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT / "operator"),
                "SHOAL_WORKDIR": f"{tmp}/work",
                "SHOAL_CHECKPOINT_DIR": f"{tmp}/ckpt",
                "SHOAL_CONFIG_FILE": f"{tmp}/config.json",
            }
            started = time.monotonic()
            subprocess.run([sys.executable, "-m", "shoal.agent.sb3"], env=env, check=True, timeout=1800)
            progress = json.loads(Path(tmp, "work", "progress.json").read_text())
            runs.append(
                {
                    "repetition": rep,
                    "seconds": round(time.monotonic() - started, 1),
                    "timesteps": progress["timesteps"],
                    "mean_reward": progress["meanReward"],
                    "fps": progress["fps"],
                }
            )
    random_reward = random_policy_reward()
    rewards = [r["mean_reward"] for r in runs]
    out.update(
        timesteps=timesteps,
        repetitions=runs,
        random_policy_mean_reward=random_reward,
        median_mean_reward=statistics.median(rewards),
        goal={"median_mean_reward_at_least": 4 * random_reward},
    )
    out["goal_met"] = out["median_mean_reward"] >= 4 * random_reward
    return out


def random_policy_reward(episodes: int = 200, seed: int = 0) -> float:
    import gymnasium

    env = gymnasium.make("CartPole-v1")
    env.action_space.seed(seed)
    total = 0.0
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
    return round(total / episodes, 2)
