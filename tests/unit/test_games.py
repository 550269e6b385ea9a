"""Which environment a session's game names, and the preview acting on what the policy learnt on."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shoal.agent.games import ConfigError, preview_env, resolve_game, training_env


@pytest.mark.parametrize(
    ("game", "resolved"),
    [
        ("breakout", "ALE/Breakout-v5"),  # the seed's short names
        ("pong", "ALE/Pong-v5"),
        ("space_invaders", "ALE/SpaceInvaders-v5"),
        ("ALE/Pong-v5", "ALE/Pong-v5"),
        ("CartPole-v1", "CartPole-v1"),
    ],
)
def test_a_game_resolves_to_the_registered_id_it_names(game: str, resolved: str) -> None:
    assert resolve_game(game) == resolved


@pytest.mark.parametrize(
    ("game", "near"), [("cartpole", "CartPole-v1"), ("ALE/Breakou-v5", "ALE/Breakout-v5")]
)
def test_an_unknown_game_is_refused_naming_the_closest_ids(game: str, near: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_game(game)
    assert caught.value.reason == "InvalidGame"
    assert caught.value.message.startswith("spec.game:") and near in caught.value.message


def test_the_atari_preview_gives_the_policy_stacked_frames_and_people_the_full_screen() -> None:
    screens: list[Any] = []

    def keep(env: Any) -> Any:
        screens.append(env)
        return env

    game = resolve_game("breakout")
    trained_on = training_env(game, 1)
    preview = preview_env(game, keep)
    obs = preview.reset()
    assert preview.observation_space == trained_on.observation_space
    assert obs.shape == (1, 84, 84, 4) and obs.dtype == np.uint8
    for _ in range(3):  # the paddle moving right (action 2): each stacked frame shows it elsewhere
        obs, _, _, _ = preview.step(np.array([2]))
    assert len({obs[0, :, :, k].tobytes() for k in range(4)}) > 1, "the stack holds four different frames"
    assert screens[0].render().shape == (210, 160, 3)  # what the stream shows: ALE's own screen
    trained_on.close()
    preview.close()
