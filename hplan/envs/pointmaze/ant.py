"""brax's ant in a maze built from any hplan layout (one cell = 4 m by default, the
convention of the public ant mazes: JaxGCRL, OGBench).

The ant is brax's own MJCF (`brax/envs/assets/ant.xml`: 8 hinge joints, torques in
[-1, 1]^8 with gear 150); only its contacts change. Walls are merged boxes, 2 m tall,
that collide with the torso and the 4 feet only (contype/conaffinity bits: torso 2, feet
1, walls accept both, nothing else touches them; legs pass through walls, the torso
never does), no self-collision, and MJX's broadphase limit is the first numeric of
<custom> (see `physics`), sized so that no touching pair is dropped.

Backends: "spring" (default: timestep 0.005, 10 substeps per 0.05 s control step; calmer
under random torques) or "mjx" (timestep 0.01, 5 substeps, Newton with one iteration, as
brax's ant). The ant never terminates here (a flipped ant stays flipped; `metrics
["height"]` is the torso's z).

Observation (29): the torso's (row, col) scaled to [-1, 1] over the layout (as the point
mazes observe position), then brax's 27 (torso z, orientation quaternion, 8 joint angles,
6 torso velocities in world x/y/z and angular, 8 joint velocities; raw units). Goal
space, `metrics["xy"]`, is the torso's (row, col) in cells. `goal_obs(xy)` is the ant in
its initial pose, standing still at `xy`.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np

from hplan.core import ConfigError, State
from hplan.envs.pointmaze import physics
from hplan.envs.pointmaze.layout import Layout

TORSO_RADIUS = 0.25
# The farthest a foot's sphere reaches from the torso centre: 0.2 + 0.2 + 0.4 m along a
# diagonal, plus its radius 0.08 m. The ant fits in a cell wider than twice that.
ANT_REACH = float(np.hypot(0.8, 0.8) + 0.08)
WALL_HEIGHT = 2.0  # metres
NOMINAL_SPEED = 3.0  # m/s: the pace the oracle's optimal steps (SPL) count as full speed
_FRAMES = {"spring": (0.005, 10), "mjx": (0.01, 5)}  # timestep, substeps


@dataclasses.dataclass(frozen=True)
class AntMazeConfig:
    cell_size: float = 4.0  # metres per layout cell
    backend: str = "spring"
    gait: str | None = None  # a gait file (`gait.save`): actions become velocity commands
    gait_repeat: int = 5  # control steps (0.05 s) per command

    def __post_init__(self):
        physics.check_backend(self.backend, tuple(_FRAMES))
        if not self.cell_size > 2 * ANT_REACH:
            raise ConfigError("cell_size", f"cell_size={self.cell_size} m is too small for the "
                              f"ant (it spans {2 * ANT_REACH:.2f} m from foot to foot): it "
                              "would not fit in a one-cell corridor",
                              f"use a cell_size above {2 * ANT_REACH:.2f} m; the public ant "
                              "mazes use 4")
        if self.gait is not None and self.backend != "spring":
            raise ConfigError("backend", f"the gait was trained on the spring backend, not "
                              f"{self.backend!r}", 'use backend = "spring" with a gait')
        if not (isinstance(self.gait_repeat, int) and self.gait_repeat >= 1):
            raise ConfigError("gait_repeat", f"gait_repeat={self.gait_repeat!r}",
                              "use a whole number of control steps >= 1, e.g. 5")

    @property
    def dt(self) -> float:
        """Seconds per env step (a command lasts `gait_repeat` control steps)."""
        timestep, frames = _FRAMES[self.backend]
        return timestep * frames * (self.gait_repeat if self.gait else 1)


class AntMaze(physics.MazeFrame):
    """`reset`/`explore_reset` at a random free position and heading, `reset_at` a given
    position (initial pose, facing +x, joint angles jittered by up to 0.1 rad, at rest);
    `goal_obs` and `oracle` like the point mazes. No `action_scale`: an action is a
    torque, not a displacement."""

    def __init__(self, layout: Layout, config: AntMazeConfig = AntMazeConfig()):
        super().__init__(layout, config.cell_size)
        self.config = config
        self.gait, self.max_speed = None, NOMINAL_SPEED  # m/s at full speed
        if config.gait is not None:
            from hplan.envs.pointmaze import gait

            self.gait, gait_config = gait.load(config.gait)
            self.max_speed = gait_config.max_speed
        self.max_step = self.max_speed * config.dt / config.cell_size  # cells/step
        s = config.cell_size
        self.walls = physics.build_walls(layout, reach=TORSO_RADIUS / s,
                                         half_height=WALL_HEIGHT / 2 / s, parts=5)
        self.xml = ant_xml(self.walls, s)
        timestep, frames = _FRAMES[config.backend]
        self.pipeline = physics.Pipeline(_load(self.xml, config.backend, timestep),
                                         config.backend, frames)
        self._init_q = jnp.asarray(self.pipeline.sys.init_q, jnp.float32)

    # -- protocol -------------------------------------------------------------------------
    @property
    def action_size(self) -> int:
        return 2 if self.gait is not None else 8

    def step(self, state: State, action: jax.Array) -> State:
        """Torques, or with a gait a command in the unit disk (longer ones are shortened)
        that the gait follows for `gait_repeat` control steps."""
        if self.gait is None:
            return super().step(state, action)
        cmd = physics.sanitize(action)
        cmd = cmd / jnp.maximum(1.0, jnp.linalg.norm(cmd))

        def control(s, _):
            return super(AntMaze, self).step(s, self.gait(s.obs[2:], cmd)), None

        return jax.lax.scan(control, state, (), self.config.gait_repeat)[0]

    @property
    def observation_size(self) -> int:
        return 29

    @property
    def body_radius(self) -> float:
        """The torso's radius in cells: its centre keeps at least this far from walls."""
        return TORSO_RADIUS / self.cell_size

    def explore_reset(self, key: jax.Array) -> State:
        """A uniformly random free position (every foot inside the cell) and heading."""
        k_pos, k_yaw, k_next = jax.random.split(key, 3)
        jitter = max(0.0, 0.5 - ANT_REACH / self.cell_size - 0.02)
        yaw = jax.random.uniform(k_yaw, (), minval=-jnp.pi, maxval=jnp.pi)
        return self._reset(k_next, self.random_free(k_pos, jitter), yaw)

    def reset_at(self, key: jax.Array, xy: jax.Array) -> State:
        """The ant at `xy` ((row, col) cells), facing +x (along the columns)."""
        return self._reset(key, xy, jnp.float32(0))

    def goal_obs(self, xy: jax.Array) -> jax.Array:
        """The observation of the ant in its initial pose, standing still at `xy`."""
        xy = jnp.asarray(xy, jnp.float32)
        return jnp.concatenate([self.scaled(xy), self._init_q[2:], jnp.zeros(14, jnp.float32)])

    # -- helpers --------------------------------------------------------------------------
    def _reset(self, key, xy, yaw) -> State:
        q = self._init_q.at[:2].set(self.to_world(xy))
        q = q.at[3:7].set(yaw_quaternion(yaw))
        q = q.at[7:].add(jax.random.uniform(key, (8,), minval=-0.1, maxval=0.1))
        return self.state_of(self.pipeline.init(q, jnp.zeros(14, jnp.float32)))

    def state_of(self, ps) -> State:
        """The `State` of a brax pipeline state (for resets of your own, e.g. with a
        velocity: `state_of(pipeline.init(q, qd))`)."""
        xy = self.to_cells(ps.q[:2])
        obs = jnp.concatenate([self.scaled(xy), ps.q[2:], ps.qd])
        return State(env_state=ps, obs=obs, reward=jnp.float32(0), done=jnp.bool_(False),
                     metrics={"xy": xy, "height": ps.q[2]}, info={})


def yaw_quaternion(yaw: jax.Array) -> jax.Array:
    """The torso's (w, x, y, z) orientation, upright and turned by `yaw` about z."""
    return jnp.stack([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)])


def ant_xml(walls: physics.Walls, cell: float) -> str:
    """brax's ant.xml with the maze's walls, torso + feet colliding with them only, and
    the broadphase limit as the first numeric of <custom>."""
    from importlib import resources

    text = (resources.files("brax") / "envs" / "assets" / "ant.xml").read_text()
    root = ET.fromstring(text)
    custom = root.find("custom")
    numeric = walls.numeric_xml()
    if numeric:  # FIRST: MJX reads it by index into numeric_data
        custom.insert(0, ET.fromstring(numeric))
    world = root.find("worldbody")
    for geom in root.iter("geom"):
        name = geom.get("name", "")
        if name == "torso_geom":
            geom.set("contype", "2")  # walls only (the floor's conaffinity is 1)
            geom.set("conaffinity", "0")
        elif name.endswith("_foot_geom"):
            geom.set("contype", "1")  # floor and walls
            geom.set("conaffinity", "0")  # not each other
    xml = walls.geoms_xml(cell, WALL_HEIGHT / 2, WALL_HEIGHT / 2,
                          'contype="0" conaffinity="3" rgba="0.6 0.6 0.7 1"')
    for g in ET.fromstring(f"<w>{xml}</w>"):
        world.append(g)
    return ET.tostring(root, encoding="unicode")


def _load(xml: str, backend: str, timestep: float):
    import warnings

    import mujoco
    from brax.io import mjcf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # brax's "not maintained" notice
        sys = mjcf.loads(xml)
    if backend == "mjx":  # as brax's own ant
        return sys.tree_replace({"opt.solver": mujoco.mjtSolver.mjSOL_NEWTON,
                                 "opt.disableflags": mujoco.mjtDisableBit.mjDSBL_EULERDAMP,
                                 "opt.iterations": 1, "opt.ls_iterations": 4})
    return sys.tree_replace({"opt.timestep": timestep})
