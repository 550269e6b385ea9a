"""File locations and atomic JSON writes shared by the agent and trainers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def workdir() -> Path:
    return Path(os.environ.get("SHOAL_WORKDIR", "/shoal"))


def checkpoint_dir() -> Path:
    return Path(os.environ.get("SHOAL_CHECKPOINT_DIR", "/checkpoints"))


def progress_file() -> Path:
    return workdir() / "progress.json"


def command_id_file() -> Path:
    return workdir() / "command-id"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write-then-rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
