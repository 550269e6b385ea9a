"""Which environment a session's `game` names, and how the trainer and its preview build it.

Atari games get the preprocessing SB3's Atari policies expect (AtariWrapper: no-op starts, frame skip
with max-pooling, life loss as episode end, FIRE on reset, 84x84 grey frames) and four stacked frames,
in training and in the preview alike: a policy trained on stacked 84x84x4 frames cannot act on the raw
210x160x3 screen, which is what the preview shows people.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

from shoal.agent.checkpoints import CheckpointError

ATARI_PREFIX = "ALE/"
FRAME_STACK = 4  # frames per observation, as in DQN's Nature paper and SB3's Atari zoo settings


class ConfigError(CheckpointError):
    """A config the trainer cannot run: the session fails with `reason`, it is never restarted."""


def is_atari(game: str) -> bool:
    return game.startswith(ATARI_PREFIX)


def _atari_name(short: str) -> str:
    """The seed's short names ("breakout", "space_invaders") as ALE's v5 ids ("ALE/Breakout-v5")."""
    words = [w for w in re.split(r"[-_\s]+", short) if w]
    return f"{ATARI_PREFIX}{''.join(w[:1].upper() + w[1:] for w in words)}-v5"


def _register_atari(game: str) -> None:
    import gymnasium

    try:
        import ale_py
    except ImportError:
        raise ConfigError(
            "GameUnavailable", f"spec.game: {game} needs the Atari environments: pip install ale-py"
        ) from None
    gymnasium.register_envs(ale_py)


def resolve_game(game: str) -> str:
    """The registered id `game` names: itself, or for a short name without a version (the seed's
    "breakout", "pong") the ALE game of that name. Raises ConfigError naming the closest ids."""
    import gymnasium

    if is_atari(game):
        _register_atari(game)
    elif "/" not in game and not re.search(r"-v\d+$", game) and game not in gymnasium.registry:
        candidate = _atari_name(game)
        try:
            _register_atari(candidate)
        except ConfigError:
            pass  # no ale-py: not an Atari name this image can run; the lookup below says what is near
        else:
            if candidate in gymnasium.registry:
                return candidate
    try:
        gymnasium.spec(game)
    except gymnasium.error.Error as exc:
        ids = sorted(gymnasium.registry)
        near = difflib.get_close_matches(game, ids, n=5, cutoff=0.4) or ids[:8]
        raise ConfigError(
            "InvalidGame",
            f"spec.game: {exc} Not a registered gymnasium environment; "
            f"closest of the {len(ids)} registered: {', '.join(near)}",
        ) from None
    return game


def _atari_kwargs() -> dict[str, Any]:
    # ALE's v5 ids skip 4 frames themselves; AtariWrapper skips (and max-pools) instead, so the
    # environment steps one frame at a time, as SB3's Atari preprocessing assumes.
    return {"frameskip": 1}


def training_env(game: str, n_envs: int, seed: int | None = None) -> Any:
    """The vectorised environment a run learns on (before normalisation): `game` is a resolved id."""
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecFrameStack

    if is_atari(game):
        env = make_atari_env(game, n_envs=n_envs, seed=seed, env_kwargs=_atari_kwargs())
        return VecFrameStack(env, n_stack=FRAME_STACK)
    vec_cls = SubprocVecEnv if os.environ.get("SHOAL_SUBPROC_ENVS") == "1" else None
    return make_vec_env(game, n_envs=n_envs, seed=seed, vec_env_cls=vec_cls)


def preview_env(game: str, wrap_screen: Any) -> Any:
    """One copy of `game` for people to watch, as a VecEnv giving the policy the observations it was
    trained on. `wrap_screen` wraps the rendering environment (recording, frames) before any
    preprocessing, so what people see is the full-size screen."""
    import gymnasium
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

    kwargs = _atari_kwargs() if is_atari(game) else {}
    screen = wrap_screen(gymnasium.make(game, render_mode="rgb_array", **kwargs))
    if not is_atari(game):
        return DummyVecEnv([lambda: screen])
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    return VecFrameStack(DummyVecEnv([lambda: AtariWrapper(screen)]), n_stack=FRAME_STACK)
