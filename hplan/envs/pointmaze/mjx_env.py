"""A MuJoCo (MJX) point mass in any hplan layout: a ball pushed by forces, with inertia.

The ball (radius 0.25 m, mass 1 kg) slides on two slide joints (along the rows and the
columns) with viscous damping, driven by two force actuators; the action is the force in
[-1, 1]^2, along (row, col) like the pure-JAX maze's displacement. Under a
constant full force it tends to `max_step` cells per control step along each axis; from
rest it takes `time_constant` control steps to reach 63 % of that, and it coasts as long
when the force stops, so a planner has to brake. One control step is 0.1 s, 10 physics
steps of 0.01 s. Walls are merged boxes (`physics.build_walls`), frictionless (condim 1),
so the ball slides along them.

Observation (4): the (row, col) position scaled to [-1, 1] over the layout (as the
pure-JAX maze observes it) and the velocity in cells per step over `max_step` (about
[-1, 1] at full speed). Goal space, `metrics["xy"]`, is (row, col) in cells. Velocities
are zero at every reset; `goal_obs(xy)` is the ball standing still at `xy`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from hplan.core import ConfigError, State
from hplan.envs.pointmaze import physics
from hplan.envs.pointmaze.layout import Layout

BALL_RADIUS = 0.25  # metres
BALL_MASS = 1.0  # kg
CONTROL_DT = 0.1  # seconds per control step
N_FRAMES = 10  # physics steps per control step


@dataclasses.dataclass(frozen=True)
class MJXMazeConfig:
    cell_size: float = 1.0  # metres per layout cell
    max_step: float = 0.5  # cells per control step at full force (terminal speed)
    time_constant: float = 3.0  # control steps to reach 63 % of full speed from rest
    backend: str = "mjx"

    def __post_init__(self):
        physics.check_backend(self.backend, ("mjx",))
        if not self.cell_size > 2 * BALL_RADIUS:
            raise ConfigError("cell_size", f"cell_size={self.cell_size} m is too small for "
                              f"the ball (diameter {2 * BALL_RADIUS} m): it would not fit "
                              "in a one-cell corridor",
                              f"use a cell_size above {2 * BALL_RADIUS} m, e.g. 1.0")
        if not 0 < self.max_step < 1:
            raise ConfigError("max_step", f"max_step={self.max_step} must be in (0, 1) cells",
                              "use e.g. 0.5")
        if not 0.5 <= self.time_constant <= 100:
            raise ConfigError("time_constant", f"time_constant={self.time_constant} control "
                              "steps is out of range", "use 0.5 to 100, e.g. 3")


class PointMazeMJX(physics.MazeFrame):
    """`reset`/`explore_reset` at a random free position, `reset_at` a given one (at
    rest); `goal_obs`, `action_scale` and `oracle` like the pure-JAX `PointMaze`."""

    def __init__(self, layout: Layout, config: MJXMazeConfig = MJXMazeConfig()):
        super().__init__(layout, config.cell_size)
        self.config = config
        s = config.cell_size
        self.walls = physics.build_walls(layout, reach=BALL_RADIUS / s, half_height=0.1,
                                         parts=1)
        damping = BALL_MASS / (config.time_constant * CONTROL_DT)
        gear = config.max_step * s / CONTROL_DT * damping  # terminal speed = gear / damping
        xml = _XML.format(
            timestep=CONTROL_DT / N_FRAMES, custom=_custom(self.walls.numeric_xml()),
            walls=self.walls.geoms_xml(s, 0.0, 0.1 * s, 'contype="0" conaffinity="1"'),
            damping=damping, radius=BALL_RADIUS, mass=BALL_MASS, gear=gear)
        self.xml = xml
        self.pipeline = physics.Pipeline(_load(xml), config.backend, N_FRAMES)

    # -- protocol -------------------------------------------------------------------------
    @property
    def action_size(self) -> int:
        return 2

    @property
    def observation_size(self) -> int:
        return 4

    @property
    def body_radius(self) -> float:
        """The ball's radius in cells: its centre keeps this far from walls."""
        return BALL_RADIUS / self.cell_size

    @property
    def action_scale(self) -> float:
        """Cells per step along one axis at full force (the terminal speed)."""
        return self.config.max_step

    def explore_reset(self, key: jax.Array) -> State:
        """At rest at a uniformly random free position (the ball fully inside its cell)."""
        k_pos, k_next = jax.random.split(key)
        jitter = 0.5 - BALL_RADIUS / self.cell_size - 0.02
        return self.reset_at(k_next, self.random_free(k_pos, jitter))

    def reset_at(self, key: jax.Array, xy: jax.Array) -> State:
        """The ball at rest at `xy` ((row, col) cells)."""
        del key  # deterministic: the physics has no noise
        q = jnp.asarray(xy, jnp.float32) * self.cell_size  # the joints slide along row, col
        ps = self.pipeline.init(q, jnp.zeros(2, jnp.float32))
        return self.state_of(ps)

    def goal_obs(self, xy: jax.Array) -> jax.Array:
        """The observation of the ball standing still at `xy`."""
        xy = jnp.asarray(xy, jnp.float32)
        return jnp.concatenate([self.scaled(xy), jnp.zeros(2, jnp.float32)])

    # -- helpers --------------------------------------------------------------------------
    def state_of(self, ps) -> State:
        """The `State` of a brax pipeline state (for resets of your own, e.g. with a
        velocity: `state_of(pipeline.init(q, qd))`)."""
        xy = ps.q[:2] / self.cell_size
        vel = ps.qd[:2] / self.cell_size * CONTROL_DT / self.config.max_step
        obs = jnp.concatenate([self.scaled(xy), vel])
        return State(env_state=ps, obs=obs, reward=jnp.float32(0), done=jnp.bool_(False),
                     metrics={"xy": xy}, info={})


def _custom(numeric: str) -> str:
    return f"  <custom>{numeric}</custom>" if numeric else ""


def _load(xml: str):
    import warnings

    import mujoco
    from brax.io import mjcf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # brax's "not maintained" notice
        sys = mjcf.loads(xml)
    return sys.tree_replace({"opt.solver": mujoco.mjtSolver.mjSOL_NEWTON,
                             "opt.iterations": 1, "opt.ls_iterations": 4})


_XML = """<mujoco model="pointmaze">
  <compiler angle="radian"/>
  <option timestep="{timestep}" gravity="0 0 0"/>
{custom}
  <default><geom condim="1"/></default>
  <worldbody>
{walls}
    <body name="ball" pos="0 0 0">
      <joint name="row" type="slide" axis="0 -1 0" damping="{damping}" limited="false"/>
      <joint name="col" type="slide" axis="1 0 0" damping="{damping}" limited="false"/>
      <geom name="ball" type="sphere" size="{radius}" mass="{mass}" contype="1"
            conaffinity="0"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="row" gear="{gear}" ctrllimited="true" ctrlrange="-1 1"/>
    <motor joint="col" gear="{gear}" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""
