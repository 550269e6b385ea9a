"""What the agent and a trainer share: file locations, the config, atomic JSON writes, exit codes.

A trainer is any program that reads its config (`load_config`), writes `progress.json` in the work
directory, checkpoints on SIGUSR1 and checkpoints then exits 0 on SIGTERM. It acknowledges a command
by writing the id it finds in `command-id` into `lastCheckpoint.commandId`. The agent signals it
only after its first `progress.json`, so it installs its handlers before writing that.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from shoal.vocab import (
    CONFIG_KEYS,
    ENV_CHECKPOINT_DIR,
    ENV_CONFIG_FILE,
    ENV_STANDBY,
    ENV_STANDBY_FD,
    ENV_WORKDIR,
    HANDED_ENV,
)

EXIT_BAD_INPUT = 3  # the config or checkpoint cannot be used: fail the session, do not restart it


def workdir() -> Path:
    return Path(os.environ.get(ENV_WORKDIR, "/shoal"))


def checkpoint_dir() -> Path:
    return Path(os.environ.get(ENV_CHECKPOINT_DIR, "/checkpoints"))


def progress_file() -> Path:
    return workdir() / "progress.json"


def command_id_file() -> Path:
    return workdir() / "command-id"


def config_file() -> Path:
    return Path(os.environ.get(ENV_CONFIG_FILE, "/etc/shoal/config.json"))


def standby() -> bool:
    """For a trainer started before its claim (a warm pool pod's agent sets SHOAL_STANDBY=1 when the
    trainer supports it): called once the trainer's slow imports are done, it serves the pod's claims.
    Each hand-off is one JSON line on stdin of the HANDED_ENV variables (null: unset) and the
    session's own `env` (its spec.env, which a process started before the claim could not have). For
    each, it forks: the child applies them and returns True, to train that session with the imports
    (torch, SB3) already paid; this process tells the agent the child's pid and then its exit status,
    and waits for the next hand-off, so no session after the pod's start waits for a new interpreter
    either. False: the agent stopped (stdin closed); the trainer should exit. True at once when not in
    standby."""
    if os.environ.pop(ENV_STANDBY, "") != "1":
        return True
    answers = os.fdopen(int(os.environ.pop(ENV_STANDBY_FD)), "w", buffering=1)
    # The pod's SIGTERM is the agent's to pass on to the session's trainer; the standby ends with stdin.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while line := sys.stdin.readline():
        if not line.strip():
            continue
        handed = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            answers.close()
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # the hand-offs are the standby's to read
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _apply(handed)
            return True
        answers.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"pid": pid, "exitCode": os.waitstatus_to_exitcode(status)}) + "\n")
    return False


def _apply(handed: dict[str, Any]) -> None:
    for key in HANDED_ENV:
        if handed.get(key) is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = str(handed[key])
    # After the agent's: the session's env wins, as it does over the SHOAL_* variables of its own pod.
    os.environ.update({str(k): str(v) for k, v in (handed.get("env") or {}).items()})


def load_config(extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The config file, then SHOAL_<KEY> variables over it (the pod spec's own env wins)."""
    cfg = read_json(config_file()) or {}
    for key in (*CONFIG_KEYS, *extra):
        env = os.environ.get(f"SHOAL_{key.upper()}")
        if env is not None:
            cfg[key] = env
    return cfg


def flag(cfg: dict[str, Any], key: str) -> bool:
    """A boolean from the config file (JSON true) or from SHOAL_<KEY> ("true", "1")."""
    return str(cfg.get(key, "")).lower() in ("true", "1")


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
