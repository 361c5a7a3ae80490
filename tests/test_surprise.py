"""Surprise: the level-0 prediction error spikes when the world changes, not otherwise;
a world that changes on schedule; the `[surprise]` table of agent files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hplan import tasks
from hplan.agents import load_agent, surprise
from hplan.agents.config import parse_agent
from hplan.envs.pointmaze import make_maze

OPEN = """
#########
#.......#
#.......#
#.......#
#########
"""


def _errors(events, steps=24, speed=1.0, cfg=surprise.SurpriseConfig(threshold=0.5)):
    """An agent pushing right along row 2 at `speed` (1: full speed, half a cell per step),
    predicting with the world as it was (the exact model of the layout without events):
    per-step errors and spikes."""
    env = make_maze(OPEN, start=[2, 1], goal=[2, 7], events=events)
    inner = env.env
    scale = float(np.linalg.norm(inner.observe(jnp.array([2.5, 2.0]))
                                 - inner.observe(jnp.array([2.5, 1.5]))))
    a = jnp.array([0.0, speed])

    def step(carry, _):
        state, s = carry
        z = state.obs
        s, spike = surprise.observe(cfg, s, z, scale)
        s = surprise.predicted(s, z, inner.observe(inner.move(state.metrics["xy"], a)), scale)
        return (env.step(state, a), s), (s.error, spike)

    state = env.reset(jax.random.key(0))
    _, (err, spike) = jax.lax.scan(step, (state, surprise.init(state.obs)), None, steps)
    return np.asarray(err), np.asarray(spike)


def test_surprise_fires_when_a_wall_appears_and_not_in_a_constant_world():
    err, spike = _errors(())
    assert not spike.any() and err.max() < 1e-3  # the model is exact: no false alarm
    # A wall closes across the rows at step 2, far ahead; the agent (from column 1.5 at
    # half a cell per step) meets it at column 6 at step 9, and only then is the model
    # wrong: pushing at it, it is surprised every step (the baseline does not absorb it).
    err, spike = _errors([{"step": 2, "close": [[1, 6], [2, 6], [3, 6]]}])
    first = int(np.argmax(spike))
    assert spike.any() and 9 <= first <= 11, np.round(err, 2)
    assert not spike[:first].any() and spike[first:].all()


WALL = [{"step": 2, "close": [[1, 6], [2, 6], [3, 6]]}]


def test_the_miss_rule_fires_at_any_pushing_speed_where_a_fixed_threshold_does_not():
    miss = surprise.SurpriseConfig(miss=0.9)
    for speed in (1.0, 0.4):
        err, spike = _errors((), 40, speed, miss)
        assert not spike.any(), (speed, np.round(err, 2))
        # Blocked, the agent stays put: the error is the whole predicted step, so the
        # miss rule fires every step from the first push on, slow or fast.
        err, spike = _errors(WALL, 40, speed, miss)
        first = int(np.argmax(spike))
        assert spike.any() and spike[first:].all(), (speed, np.round(err, 2))
        assert err[first] > 0.35 * speed
    # Pushing at 0.4 of a base step the error stays under baseline + 0.5: the fixed
    # threshold never fires (the door-closes stack where it missed).
    err, spike = _errors(WALL, 40, 0.4)
    assert err.max() > 0.3 and not spike.any()


def test_exploration_sees_the_world_before_its_events():
    task = tasks.load("door-closes")
    inner = task.env
    while hasattr(inner, "env"):
        inner = inner.env
    door = (3, 6)
    assert not inner.walls_at(jnp.int32(0))[door] and inner.walls_at(jnp.int32(6))[door]
    s = inner.explore_reset(jax.random.key(0))
    for _ in range(10):
        s = inner.step(s, jnp.zeros(2))
    assert not inner.walls_at(s.env_state.t)[door]  # the exploration clock never gets there


@pytest.mark.parametrize("text, match", [
    ("[surprise]\nthreshold = 0\n", "threshold=0.0.*positive"),
    ("[surprise]\nreact = 1\n", "react = 1 is not a bool"),
    ("[surprise]\npersist = 0\n", "persist=0.*integer >= 1"),
    ("[surprise]\nmiss = -1\n", "miss=-1.*fraction of the predicted step"),
    ("[surprise]\nspike = 1.0\n", "unknown key .spike.*decay, min_move, miss, persist, react"),
])
def test_bad_surprise_settings_name_the_fix(text, match):
    with pytest.raises(ValueError, match=match):
        parse_agent(text, "a.toml")


def test_bad_events_name_the_fix():
    with pytest.raises(ValueError, match="event 0.*step = 12, close"):
        make_maze(OPEN, start=[2, 1], goal=[2, 7], events=[{"step": 3, "shut": [[1, 1]]}])
    with pytest.raises(ValueError, match="outside the 5x9 layout"):
        make_maze(OPEN, start=[2, 1], goal=[2, 7], events=[{"step": 3, "close": [[9, 9]]}])


def test_agent_files_carry_surprise_settings():
    assert not load_agent("hier-2").surprise.react
    cfg = parse_agent('name = "x"\n[surprise]\nreact = true\nthreshold = 0.8\n')
    assert cfg.surprise.react and cfg.surprise.threshold == 0.8


def test_a_reaction_is_followed_by_a_refractory_period():
    cfg = surprise.SurpriseConfig(refractory=3)
    s = surprise.init(jnp.zeros(2))
    fired = []
    for spike in [True, True, True, True, False, True]:
        s, now = surprise.react(cfg, s, jnp.bool_(spike))
        fired.append(bool(now))
    assert fired == [True, False, False, False, False, True]  # three quiet steps after one


def _spikes(errors, persist):
    """Spikes of a detector fed latents whose prediction misses by `errors` (base steps)."""
    cfg = surprise.SurpriseConfig(threshold=0.5, persist=persist)
    s, out = surprise.init(jnp.zeros(2)), []
    for e in errors:
        s, spike = surprise.observe(cfg, s, jnp.array([e, 0.0]), 1.0)
        s = surprise.predicted(s, jnp.zeros(2), jnp.zeros(2), 1.0)
        out.append(bool(spike))
    return out


def test_persist_ignores_a_single_slip_and_fires_on_a_lasting_change():
    slip = [0.0, 0.1, 0.1, 0.1, 0.1, 1.0, 0.1, 0.1, 0.1]  # one bad prediction
    lasting = [0.0, 0.1, 0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 1.0]  # pushing at a closed door
    assert _spikes(slip, 1) == [False] * 5 + [True] + [False] * 3
    assert not any(_spikes(slip, 2))
    assert _spikes(lasting, 1) == [False] * 5 + [True] * 4
    assert _spikes(lasting, 3) == [False] * 7 + [True] * 2  # two steps later
