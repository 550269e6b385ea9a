"""A small distributed trainer that keeps Shoal's trainer protocol: torch DDP over gloo, under torchrun.

Run as a session's own trainer with `workers > 1`:
    command: [shoal-agent, --, torchrun, -m, shoal.examples.ddp_regression]
Shoal sets torchrun's PET_* variables (nodes, c10d rendezvous at worker 0); this program sees the
usual RANK / WORLD_SIZE / LOCAL_RANK that torchrun gives every worker process.

The task learns on CPU in well under a minute: a two-layer network fits a fixed random non-linear map
from noisy samples. Each step, every rank draws its own batch from a generator seeded by (step, rank),
so a run's data is a function of the step alone and a resumed run sees exactly the batches it would
have seen: with the model and optimizer restored, it continues bit for bit.

Protocol, as one trainer for the whole gang:
- rank 0 writes progress.json, checkpoints (latest.json names the newest) and acknowledges commands;
- a signal may reach any rank (the agent of rank 0's pod signals its workers): each step all ranks
  all-reduce their (stop, checkpoint) wishes, so they stop or checkpoint at the same step, and a
  worker never leaves the others waiting in a collective;
- resuming, rank 0 reads the checkpoint and broadcasts it, so only rank 0 needs the checkpoint volume.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from shoal.agent.protocol import (
    checkpoint_dir,
    command_id_file,
    load_config,
    progress_file,
    read_json,
    write_json,
)
from shoal.vocab import ENV_RESUME_FROM

INPUTS, HIDDEN, OUTPUTS, BATCH = 16, 64, 4, 64
PROGRESS_EVERY = 1.0
# A worker whose peer died waits in its collective this long before it fails (gloo's default is 30
# minutes); the gang is restarted by the operator anyway, so a short wait only frees the pods sooner.
COLLECTIVE_TIMEOUT = timedelta(seconds=60)


def target(x: torch.Tensor) -> torch.Tensor:
    """The map to learn: fixed by a seed every rank shares."""
    g = torch.Generator().manual_seed(1234)
    w1 = torch.randn(INPUTS, OUTPUTS, generator=g)
    w2 = torch.randn(INPUTS, OUTPUTS, generator=g)
    return torch.tanh(x @ w1) + 0.5 * (x @ w2)


def batch(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step * 1_000_003 + rank)
    x = torch.randn(BATCH, INPUTS, generator=g)
    return x, target(x) + 0.01 * torch.randn(BATCH, OUTPUTS, generator=g)


def model() -> nn.Module:
    torch.manual_seed(0)  # the same start on every rank (DDP broadcasts rank 0's anyway)
    return nn.Sequential(nn.Linear(INPUTS, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, OUTPUTS))


def digest(net: nn.Module) -> str:
    """A short hash of the parameters: tests compare a checkpoint's with the resumed run's."""
    h = hashlib.sha256()
    for p in net.state_dict().values():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class Run:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.total = int(cfg.get("totalTimesteps", 200_000))
        self.every = float(cfg.get("checkpointEverySec", 300))
        self.pace = float(cfg.get("secondsPerEpisode", 0.0))  # slows tests' runs to watchable speed
        self.net = DistributedDataParallel(model())
        self.opt = torch.optim.Adam(self.net.parameters(), lr=float(cfg.get("learningRate", 3e-3)))
        self.step = 0
        self.losses: list[float] = []
        self.first_loss: float | None = None
        self.last_checkpoint: dict[str, Any] | None = None
        self.wish = torch.zeros(2)  # (stop, checkpoint), set by signals, agreed on each step
        self.reported_at = -PROGRESS_EVERY

    @property
    def timesteps(self) -> int:
        return self.step * BATCH * self.world

    # --- checkpoints: rank 0 writes and reads, the others receive ------------------------------------

    def save(self) -> None:
        if self.rank != 0:
            return
        directory = checkpoint_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"ddp-{self.step:09d}.pt"
        tmp = directory / f".{path.name}.tmp"
        state = {
            "model": self.net.module.state_dict(),
            "optimizer": self.opt.state_dict(),
            "step": self.step,
            "world": self.world,
            "losses": self.losses[-50:],
            "firstLoss": self.first_loss,
        }
        torch.save(state, tmp)
        os.replace(tmp, path)
        write_json(directory / "latest.json", {"path": str(path), "timesteps": self.timesteps})
        ids = command_id_file()
        self.last_checkpoint = {
            "path": str(path),
            "timesteps": self.timesteps,
            "time": time.time(),
            "commandId": int(ids.read_text()) if ids.exists() else 0,
            "digest": digest(self.net.module),
        }

    def load(self, path: str | None) -> None:
        """Rank 0 reads `path` (if any) and every rank takes its content, so all start alike."""
        box: list[Any] = [None]
        if self.rank == 0 and path and Path(path).exists():
            box[0] = Path(path).read_bytes()
        dist.broadcast_object_list(box, src=0)
        if box[0] is None:
            return
        state = torch.load(io.BytesIO(box[0]), weights_only=True)
        if int(state["world"]) != self.world:
            # The batch seen per step depends on the world size: a run resumed on another size is not
            # the same run. Refused as bad input, not retried.
            raise SystemExit(3)
        self.net.module.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.losses = [float(x) for x in state["losses"]]
        self.first_loss = state["firstLoss"]
        self.last_checkpoint = {
            "path": path,
            "timesteps": self.timesteps,
            "time": time.time(),
            "commandId": 0,
            "digest": digest(self.net.module),
        }
        if self.rank == 0:
            print(
                f"resumed from {path} at step {self.step} (parameters {digest(self.net.module)})", flush=True
            )

    # --- training -------------------------------------------------------------------------------------

    def train_step(self) -> float:
        x, y = batch(self.step, self.rank)
        self.opt.zero_grad()
        loss = nn.functional.mse_loss(self.net(x), y)
        loss.backward()  # type: ignore[no-untyped-call]  # DDP averages the gradients over the ranks here
        self.opt.step()
        self.step += 1
        return loss.item()

    def report(self, done: bool = False, now: bool = True) -> None:
        if self.rank != 0 or (not now and time.monotonic() - self.reported_at < PROGRESS_EVERY):
            return
        self.reported_at = time.monotonic()
        recent = self.losses[-20:]
        loss = sum(recent) / len(recent) if recent else None
        write_json(
            progress_file(),
            {
                "device": "cpu",
                "workers": self.world,
                "timesteps": self.timesteps,
                "episodes": self.step,
                "totalTimesteps": self.total,
                "loss": round(loss, 6) if loss is not None else None,
                "firstLoss": round(self.first_loss, 6) if self.first_loss is not None else None,
                "lastCheckpoint": self.last_checkpoint,
                "done": done,
            },
        )

    def agreed(self) -> tuple[bool, bool]:
        wish = self.wish.clone()
        dist.all_reduce(wish, op=dist.ReduceOp.MAX)
        return bool(wish[0]), bool(wish[1])

    def run(self) -> int:
        last_save = time.monotonic()
        self.report()
        while self.timesteps < self.total:
            loss = self.train_step()
            self.losses.append(loss)
            if self.first_loss is None:
                self.first_loss = loss
            stop, checkpoint = self.agreed()
            if stop:
                self.save()
                self.report()
                return 0
            # Rank 0's clock decides a periodic checkpoint, through the same agreement next step.
            if self.rank == 0 and time.monotonic() - last_save >= self.every:
                self.wish[1] = 1
            if checkpoint:
                self.wish[1] = 0
                self.save()
                last_save = time.monotonic()
            self.report(now=checkpoint)
            if self.pace:
                time.sleep(self.pace)
        self.save()
        self.report(done=True)
        return 0


def main() -> int:
    run: Run | None = None

    def wish(index: int) -> None:
        if run is not None:
            run.wish[index] = 1

    # Installed before the first progress.json: the agent signals only after it.
    signal.signal(signal.SIGTERM, lambda *_: wish(0))
    signal.signal(signal.SIGUSR1, lambda *_: wish(1))
    dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        run = Run(load_config(extra=("secondsPerEpisode",)))
        resume = os.environ.get(ENV_RESUME_FROM)
        if not resume and run.rank == 0:
            latest = read_json(checkpoint_dir() / "latest.json")
            resume = latest.get("path") if latest else None
        run.load(resume)
        code = run.run()
        # Leave together, once rank 0 has written its last checkpoint: a worker tearing its process
        # group down while a peer still uses it can abort in gloo (seen once under load).
        dist.barrier()
        return code
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
