"""A locomotion primitive for the ant: a command-conditioned gait trained with brax's PPO.

Random torques do not make an ant travel (`../shared/notes/physics.md`), and gradient
planning through a learned model of 8 torques did not make it walk either (issue 15).
The public ant mazes solve this the same way: a trained locomotion policy (OGBench's
datasets come from one; HIQL-style agents plan over what it can do). Here the gait maps
(the ant's 27 body observations, a world-frame velocity command in the unit disk) to 8
torques, trained on an open floor with brax's own PPO on the same physics as
`AntMaze` (brax's ant.xml, spring backend, 0.05 s control step). It knows nothing of
mazes; `AntMaze` with a `gait` file (in `ant.py`) puts it under the planner, so that the
planner's action is the command and the ant's legs are the gait's business.

The command c is the torso's target planar velocity, `max_speed * c` m/s. The reward
tracks it linearly (an exponential kernel gives no signal while the ant is still far off):
`1 + max_speed - |v_xy - max_speed * c| - ctrl_cost * |a|^2`, ending the episode when
the torso leaves the healthy height range (brax's ant convention). Commands are drawn at
reset and redrawn with probability `switch_prob` per step (so that it learns to change
course); a fraction are zero (stand still: goals need the ant to stop).

`init` fine-tunes a saved gait and `pillars` trains among walls (the maze env's physics
in a `generate.pillar_room`). Neither made the shipped gait faster under the planner
(`bench/results/ant_gait_variants_cpu.json`): commands every 0.5 s cost it its top speed,
and walls did not teach it to slide along them.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp

from hplan.core import ConfigError
from hplan.envs.pointmaze.ant import yaw_quaternion

BODY_OBS = 27  # brax's ant observation without the torso's (x, y)
GAIT_OBS = BODY_OBS + 3


@dataclasses.dataclass(frozen=True)
class GaitConfig:
    max_speed: float = 2.0  # m/s at |command| = 1
    ctrl_cost: float = 0.25
    switch_prob: float = 0.01  # per control step: a new command about every 5 s
    still_frac: float = 0.1
    timesteps: int = 20_000_000
    num_envs: int = 512
    batch_size: int = 512
    num_minibatches: int = 16
    unroll_length: int = 10
    updates_per_batch: int = 4
    learning_rate: float = 3e-4
    entropy_cost: float = 1e-2
    discounting: float = 0.97
    reward_scaling: float = 1.0
    episode_length: int = 1000
    seed: int = 0
    init: str = ""  # a gait file to start from (its policy; the value net starts fresh)
    pillars: float = 0.0  # >0: train among walls, in a room with this share of wall cells
    room: int = 12  # that room's side in cells (4 m each, as the ant mazes)

    def __post_init__(self):
        if not 0 <= self.pillars < 1:
            raise ConfigError("pillars", f"pillars={self.pillars!r}",
                              "use a share of wall cells in [0, 1), e.g. 0.2 (0: open floor)")
        if not self.max_speed > 0:
            raise ConfigError("max_speed", f"max_speed={self.max_speed} must be positive",
                              "use a speed in m/s, e.g. 2.0")


def heading_frame(body_obs: jax.Array, command: jax.Array) -> jax.Array:
    """The gait's input: the body observation with the torso's planar velocity, and the
    command, turned into the torso's heading frame (the ant walks the same way whatever
    its yaw, so the network need not learn rotations), then the command's norm."""
    w, x, y, z = (body_obs[..., i] for i in range(1, 5))
    yaw = jnp.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    cos, sin = jnp.cos(yaw), jnp.sin(yaw)

    def turn(v):  # world -> heading frame
        return jnp.stack([cos * v[..., 0] + sin * v[..., 1],
                          -sin * v[..., 0] + cos * v[..., 1]], -1)

    vel = turn(body_obs[..., 13:15])
    body = jnp.concatenate([body_obs[..., :13], vel, body_obs[..., 15:]], -1)
    return jnp.concatenate([body, turn(command),
                            jnp.linalg.norm(command, axis=-1, keepdims=True)], -1)


def sample_command(key: jax.Array, still_frac: float) -> jax.Array:
    k_dir, k_mag, k_still = jax.random.split(key, 3)
    angle = jax.random.uniform(k_dir, (), minval=-jnp.pi, maxval=jnp.pi)
    mag = jnp.sqrt(jax.random.uniform(k_mag, (), minval=0.1, maxval=1.0))
    mag = jnp.where(jax.random.uniform(k_still) < still_frac, 0.0, mag)
    return mag * jnp.stack([jnp.cos(angle), jnp.sin(angle)])


def command_ant(config: GaitConfig):
    """brax's ant (spring backend) with a random heading at reset and a velocity command
    appended to its observation: the env PPO trains the gait on."""
    from brax.envs.ant import Ant

    maze = None
    if config.pillars > 0:  # the maze env's walls, contacts and (row, col) frame
        import numpy as np

        from hplan.envs.pointmaze import generate
        from hplan.envs.pointmaze.ant import AntMaze

        maze = AntMaze(generate.pillar_room(np.random.default_rng(config.seed), config.room,
                                            config.pillars))

    class CommandAnt(Ant):
        def __init__(self):
            super().__init__(backend="spring", ctrl_cost_weight=config.ctrl_cost)
            if maze is not None:
                self.sys = maze.pipeline.sys

        @property
        def observation_size(self) -> int:
            return GAIT_OBS

        def reset(self, rng):
            k_yaw, k_cmd, k_rest = jax.random.split(rng, 3)
            s = super().reset(k_rest)
            yaw = jax.random.uniform(k_yaw, (), minval=-jnp.pi, maxval=jnp.pi)
            q = s.pipeline_state.q.at[3:7].set(yaw_quaternion(yaw))
            if maze is not None:  # anywhere on the floor, every foot inside its cell
                k_pos, k_rest = jax.random.split(k_rest)
                q = q.at[:2].set(maze.to_world(maze.random_free(k_pos, 0.25)))
            ps = self.pipeline_init(q, s.pipeline_state.qd)
            cmd = sample_command(k_cmd, config.still_frac)
            info = {"command": cmd, "rng": k_rest}
            metrics = {"tracking_error": jnp.float32(0), "speed": jnp.float32(0)}
            return s.replace(pipeline_state=ps, obs=self._obs(ps, cmd), info=info,
                             metrics=metrics)

        def step(self, state, action):
            ps0 = state.pipeline_state
            ps = self.pipeline_step(ps0, action)
            v = (ps.x.pos[0, :2] - ps0.x.pos[0, :2]) / self.dt
            cmd = state.info["command"]
            err = jnp.linalg.norm(v - config.max_speed * cmd)
            z = ps.x.pos[0, 2]
            healthy = (z > self._healthy_z_range[0]) & (z < self._healthy_z_range[1])
            reward = (1.0 + config.max_speed - err
                      - config.ctrl_cost * jnp.sum(jnp.square(action)))
            k_switch, k_cmd, k_next = jax.random.split(state.info["rng"], 3)
            new = jax.random.uniform(k_switch) < config.switch_prob
            cmd = jnp.where(new, sample_command(k_cmd, config.still_frac), cmd)
            info = {**state.info, "command": cmd, "rng": k_next}
            metrics = {**state.metrics, "tracking_error": err, "speed": jnp.linalg.norm(v)}
            return state.replace(pipeline_state=ps, obs=self._obs(ps, cmd), reward=reward,
                                 done=1.0 - healthy.astype(jnp.float32), info=info,
                                 metrics=metrics)

        def _obs(self, ps, cmd):
            return heading_frame(jnp.concatenate([ps.q[2:], ps.qd]), cmd)

    return CommandAnt()


def _networks(config: GaitConfig):
    from brax.training.acme import running_statistics
    from brax.training.agents.ppo import networks

    return networks.make_ppo_networks(
        GAIT_OBS, 8, preprocess_observations_fn=running_statistics.normalize)


def train(config: GaitConfig, progress=None, on_params=None):
    """PPO on `command_ant`; returns (params, metrics log). `progress(step, metrics)`
    after each evaluation, `on_params(step, params)` with the parameters so far."""
    from brax.training.agents.ppo import train as ppo

    log = []
    _shim_device_put_replicated()

    def on_progress(step, metrics):
        log.append({"step": int(step), **{k: float(v) for k, v in metrics.items()}})
        if progress is not None:
            progress(step, metrics)

    restore = None
    if config.init:
        stats, policy_params, _ = load_params(config.init)
        restore = (stats, policy_params, None)
    _, params, _ = ppo.train(
        environment=command_ant(config), num_timesteps=config.timesteps,
        num_envs=config.num_envs, batch_size=config.batch_size,
        num_minibatches=config.num_minibatches, unroll_length=config.unroll_length,
        num_updates_per_batch=config.updates_per_batch,
        learning_rate=config.learning_rate, entropy_cost=config.entropy_cost,
        discounting=config.discounting, reward_scaling=config.reward_scaling,
        episode_length=config.episode_length, normalize_observations=True,
        num_evals=max(2, config.timesteps // 2_000_000), num_eval_envs=64,
        seed=config.seed, progress_fn=on_progress,
        restore_params=restore, restore_value_fn=False,
        policy_params_fn=(lambda step, _, p: on_params(step, p)) if on_params else
        (lambda *a: None),
        network_factory=lambda *a, **k: _networks(config))
    return params, log


def _shim_device_put_replicated() -> None:
    """brax 0.14.2's PPO still calls `jax.device_put_replicated`, which jax 0.10 removed
    (an AttributeError at the first step): give it the documented drop-in replacement."""
    try:
        jax.device_put_replicated  # noqa: B018
    except AttributeError:
        def replicated(x, devices):  # one copy per device; pmap spreads the leading axis
            return jax.device_put(jax.tree.map(lambda a: jnp.stack([a] * len(devices)), x),
                                  devices[0])

        jax.device_put_replicated = replicated


def open_room(n: int) -> str:
    """An n x n-cell room with no inner walls (S and G in opposite corners): where the
    gait is measured without a maze in its way."""
    inner = ["#S" + "." * (n - 1) + "#"] + ["#" + "." * n + "#"] * (n - 2) \
        + ["#" + "." * (n - 1) + "G#"]
    return "\n".join(["#" * (n + 2)] + inner + ["#" * (n + 2)])


def walk(env, commands: jax.Array, start: jax.Array, steps: int, key: jax.Array):
    """Each command [B, 2] held for `steps` env steps of a gait-driven `AntMaze` from
    `start` (cells): torso (row, col) [B, steps + 1, 2] and height [B, steps]. Callers
    jit it."""
    return walk_switching(env, commands[:, None], start, steps, key)


def walk_switching(env, commands: jax.Array, start: jax.Array, hold: int, key: jax.Array):
    """Commands [B, K, 2], each held for `hold` env steps in turn (a planner's way of
    driving the gait): torso (row, col) [B, K * hold + 1, 2] and height [B, K * hold]."""
    def one(cs, k):
        s = env.reset_at(k, start)

        def body(s, c):
            s = env.step(s, c)
            return s, (s.metrics["xy"], s.metrics["height"])

        _, (xy, height) = jax.lax.scan(body, s, jnp.repeat(cs, hold, axis=0))
        return jnp.concatenate([s.metrics["xy"][None], xy]), height

    return jax.vmap(one)(commands, jax.random.split(key, commands.shape[0]))


def save(params, path: str | Path, config: GaitConfig) -> Path:
    """The gait's (normalizer, policy) parameters as one msgpack file, with its config."""
    from flax import serialization

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"normalizer": params[0], "policy": params[1],
            "config": dataclasses.asdict(config)}
    tmp = path.with_suffix(path.suffix + ".tmp")
    state = serialization.to_state_dict(jax.device_get(blob))
    tmp.write_bytes(serialization.msgpack_serialize(state))
    tmp.replace(path)  # atomic: a killed write never leaves a half file
    return path


def load(path: str | Path):
    """(policy(body_obs [27], command [2]) -> torques [8], config) from `save`'s file."""
    from brax.training.agents.ppo import networks

    stats, policy_params, config = load_params(path)
    inference = networks.make_inference_fn(_networks(config))((stats, policy_params),
                                                             deterministic=True)

    @functools.wraps(inference)
    def policy(body_obs: jax.Array, command: jax.Array) -> jax.Array:
        return inference(heading_frame(body_obs, command), jax.random.PRNGKey(0))[0]

    return policy, config


def load_params(path: str | Path):
    """(normalizer state, policy parameters, config) from `save`'s file: what `load` runs
    and what a fine-tune (`GaitConfig.init`) restarts from."""
    from brax.training.acme import running_statistics
    from flax import serialization

    path = Path(path)
    if not path.is_file():
        raise ConfigError("gait", f"no gait file at {path}",
                          "train one with `python bench/ant_gait.py train --out FILE` or "
                          "use the shipped tasks/gaits/ant.msgpack")
    blob = serialization.msgpack_restore(path.read_bytes())
    fields = {f.name for f in dataclasses.fields(GaitConfig)}
    config = GaitConfig(**{k: v for k, v in blob["config"].items() if k in fields})
    from brax.training import types

    norm = jax.tree.map(jnp.asarray, blob["normalizer"])
    if isinstance(norm["count"], dict):  # PPO's own counter type, for a restart
        norm["count"] = types.UInt64(**norm["count"])
    stats = running_statistics.RunningStatisticsState(**norm)
    return stats, jax.tree.map(jnp.asarray, blob["policy"]), config
