"""A new environment is one file: this one, defined here and registered through
`env_module`, runs collect -> train -> bench through the CLI like the shipped maze.

A point mass with momentum in an open arena with one round pillar: 4-D observations
(position, velocity), 2-D force actions. hplan has never seen it."""

import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hplan.cli import main
from hplan.core import State, register
from hplan.envs.wrappers import GoalWrapper

SIZE, PILLAR, RADIUS = 6.0, np.array([3.0, 3.0]), 0.8


@struct.dataclass
class Body:
    pos: jax.Array
    vel: jax.Array


class MomentumArena:
    action_size = 2
    observation_size = 4

    def reset(self, key):
        return self.explore_reset(key)

    def explore_reset(self, key):
        p = jax.random.uniform(key, (2,), minval=0.2, maxval=SIZE - 0.2)
        away = p - PILLAR
        d = jnp.linalg.norm(away)
        return self.reset_at(key, jnp.where(d < RADIUS + 0.1,
                                            PILLAR + away / (d + 1e-6) * (RADIUS + 0.1), p))

    def reset_at(self, key, xy):
        return self._state(Body(jnp.asarray(xy, jnp.float32), jnp.zeros(2)))

    def step(self, state, action):
        b = state.env_state
        vel = 0.7 * b.vel + 0.15 * jnp.clip(action, -1.0, 1.0)
        pos = jnp.clip(b.pos + vel, 0.0, SIZE)
        away = pos - PILLAR
        d = jnp.linalg.norm(away)
        inside = d < RADIUS
        pos = jnp.where(inside, PILLAR + away / (d + 1e-6) * RADIUS, pos)
        vel = jnp.where(inside, jnp.zeros(2), vel)
        new = self._state(Body(pos, vel))
        return new.replace(info={**state.info, **new.info},
                           metrics={**state.metrics, **new.metrics})

    def goal_obs(self, xy):
        return jnp.concatenate([xy / SIZE * 2 - 1, jnp.zeros(2)])

    def _state(self, b):
        obs = jnp.concatenate([b.pos / SIZE * 2 - 1, b.vel])
        return State(env_state=b, obs=obs, reward=jnp.float32(0), done=jnp.bool_(False),
                     metrics={"xy": b.pos}, info={})


def momentum_arena(pairs: int = 64, seed: int = 0):
    """Start and goal on opposite sides of the pillar."""
    rng = np.random.default_rng(seed)
    ang = rng.uniform(0, 2 * np.pi, pairs)
    r = rng.uniform(1.8, 2.6, (pairs, 2))
    unit = np.stack([np.cos(ang), np.sin(ang)], 1)
    return GoalWrapper(MomentumArena(), PILLAR + unit * r[:, :1], PILLAR - unit * r[:, 1:],
                       radius=0.4)


register("momentum", momentum_arena)

TASK = """
name = "momentum"
env = "momentum"
env_module = "test_user_env"
episode_length = 80

[env_args]
pairs = 32

[stack.data]
episodes = 1024
steps = 32

[stack.wm]
latent_dim = 8
hidden = 64
strides = [1, 4]

[stack.train]
steps = 1000
rollout = [4, 2]
chunk = 500
lr_final = 1.0

[stack.critic]
steps = 1000
chunk = 500
nodes = 1024
"""


def test_a_users_env_runs_collect_train_bench_through_the_cli(tmp_path, capsys):
    task = tmp_path / "momentum.toml"
    task.write_text(textwrap.dedent(TASK))
    d, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "bench.json"
    assert main(["collect", "--task", str(task), "--episodes", "1024", "--steps", "32",
                 "--out", str(d)]) == 0
    assert main(["train", "--task", str(task), "--data", str(d), "--out", str(run)]) == 0
    assert (run / "critic0").is_dir() and (run / "critic1").is_dir()
    assert main(["bench", "--task", str(task), "--stack", str(run), "--data", str(d), "--agents",
                 "flat-true,hier-2", "--episodes", "8", "--json", str(out),
                 "--no-latency"]) == 0
    res = json.loads(out.read_text())
    assert res["commit"] and res["machine"]["jax_backend"]  # where it came from
    rows = res["agents"]
    printed = capsys.readouterr().out
    assert "n/a" in printed  # no oracle: SPL and path ratio are n/a, not a crash
    for name, row in rows.items():
        assert 0.0 <= row["success_rate"] <= 1.0, name
    # The oracle (MPC through this env's own step) reaches the far side of the pillar;
    # the learned hierarchy, on a tiny stack, gets closer to the goal than where it began.
    assert rows["flat-true"]["success_rate"] >= 0.75
    recs = res["episode_records"]["hier-2"]
    start = np.array([np.linalg.norm(np.subtract(r["start"], r["goal"])) for r in recs])
    end = np.array([r["final_distance"] for r in recs])
    assert np.mean(end < start) >= 0.75


def test_a_wrong_env_module_or_argument_is_a_clean_error(tmp_path, capsys):
    task = tmp_path / "bad.toml"
    task.write_text(textwrap.dedent(TASK).replace("test_user_env", "no_such_module"))
    assert main(["show", "--task", str(task), "--out", str(tmp_path / "x.png")]) == 2
    assert "env_module 'no_such_module' cannot be imported" in capsys.readouterr().err
    task.write_text(textwrap.dedent(TASK).replace("pairs = 32", "pears = 32"))
    assert main(["show", "--task", str(task), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml:8:1: env 'momentum' does not take 'pears'" in err
    assert "Fix: use one of: pairs, seed" in err
