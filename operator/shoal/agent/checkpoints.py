"""Checkpoints as directories that appear whole or not at all.

A checkpoint is written into a hidden temporary directory, every file fsynced, the directory renamed
into place and the parent fsynced; only then does `latest.json` (itself written, fsynced and renamed)
name it. A SIGKILL at any moment therefore leaves the previous latest intact, plus at most one hidden
directory that the next start removes. Nothing here imports torch: the operator-side tests and the
agent use it without the trainer extra.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = 1
META = "meta.json"
LATEST = "latest.json"
PREFIX = "ckpt-"
TMP_PREFIX = ".tmp-"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; `reason` is the session's status reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename, fsync the directory: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    meta: dict[str, Any]

    @property
    def timesteps(self) -> int:
        return int(self.meta.get("timesteps", 0))

    def file(self, name: str) -> Path:
        return self.path / name


class CheckpointStore:
    def __init__(self, root: Path, keep: int = 3) -> None:
        self.root = root
        self.keep = max(1, keep)

    def clean(self) -> None:
        """Remove what an interrupted save left behind (hidden, never named by latest.json)."""
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if entry.name.startswith(TMP_PREFIX):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    @contextmanager
    def writing(self, timesteps: int, meta: dict[str, Any]) -> Iterator[Path]:
        """Yield a scratch directory to fill; on a clean exit it becomes the latest checkpoint."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{TMP_PREFIX}{PREFIX}{timesteps:012d}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            yield tmp
            full = {**meta, "format": FORMAT, "timesteps": timesteps, "time": time.time()}
            (tmp / META).write_text(json.dumps(full, sort_keys=True))
            for f in tmp.iterdir():
                fsync_path(f)
            fsync_path(tmp)
            final = self.root / f"{PREFIX}{timesteps:012d}"
            if final.exists():  # the same step saved twice (a command right after a periodic save)
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync_path(self.root)
            write_atomic(
                self.root / LATEST, json.dumps({"path": str(final), "timesteps": timesteps}).encode()
            )
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune(final)

    def _prune(self, latest: Path) -> None:
        done = sorted(p for p in self.root.glob(f"{PREFIX}*") if p.is_dir() and p != latest)
        for old in done[: max(0, len(done) - (self.keep - 1))]:
            shutil.rmtree(old, ignore_errors=True)

    def latest(self) -> Checkpoint | None:
        """The checkpoint latest.json names; None when there is none yet; CheckpointError when unusable."""
        pointer = self.root / LATEST
        if not pointer.exists():
            return None
        try:
            path = Path(json.loads(pointer.read_text())["path"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError("CheckpointCorrupt", f"{pointer} is unreadable: {exc}") from None
        return self.open(path)

    def open(self, path: Path) -> Checkpoint:
        try:
            meta = json.loads((path / META).read_text())
        except FileNotFoundError:
            raise CheckpointError(
                "CheckpointCorrupt", f"{path} has no {META}: not a Shoal checkpoint"
            ) from None
        except (OSError, ValueError) as exc:
            raise CheckpointError("CheckpointCorrupt", f"{path / META} is unreadable: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError("CheckpointCorrupt", f"{path}: unknown checkpoint format {meta!r:.80}")
        return Checkpoint(path, meta)


def check_compatible(ckpt: Checkpoint, game: str, algorithm: str) -> None:
    """A checkpoint resumes only the run it was made by: same environment, same algorithm."""
    theirs = (str(ckpt.meta.get("game")), str(ckpt.meta.get("algorithm")).upper())
    if theirs != (game, algorithm.upper()):
        raise CheckpointError(
            "CheckpointMismatch",
            f"{ckpt.path} was written by {theirs[1]} on {theirs[0]}, not {algorithm.upper()} on {game}: "
            "give the session a new name (or a new checkpoint volume) to start afresh",
        )
