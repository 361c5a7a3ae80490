"""The point-mass maze: layouts, the pure-JAX env, its oracle, generated maze families.

Registered as `env = "pointmaze"`. Its `[env_args]`: `layout` (ASCII text, or a file
relative to the task file; a list of them, or a folder of `*.txt` files, is a family of
same-sized maps) or `family` (a generated family of same-sized maps, one per
episode, from `generate.FAMILIES`, with `family_args`), `start_goal` ("fixed": the S/G
cells or `start`/`goal`; "random": pairs at least `min_distance` BFS cells apart (and at most
`max_distance`, when set), and with
`out_of_sight = true` only pairs whose straight line crosses a wall; "pairs": the listed
`pairs`),
`waypoints` (cells visited in order before the goal), `success_radius` (cells),
`max_step`, `slip_prob`, `obs` ("state" or "pixels"), `image_size`, and `events`: a world
that changes during an episode, e.g. `events = [{step = 12, close = [[3, 6]]}]` (a door
that closes at step 12; `open = [...]` frees cells). Exploration data never sees events.

Physics mazes on the same layouts, starts, goals and goal space ((row, col) in cells):
- `env = "pointmaze-mjx"` (`mjx_env`): a MuJoCo/MJX ball pushed by forces, with inertia.
  `[env_args]` as above (no `slip_prob`, `obs`, `image_size`) plus `cell_size` (metres,
  1.0), `max_step` (full-speed cells per step, 0.5), `time_constant` (control steps, 3),
  `backend` ("mjx").
- `env = "antmaze"` (`ant`): brax's ant, one cell = `cell_size` metres (4.0);
  `success_radius` in cells (0.125 = 0.5 m, as JaxGCRL and OGBench's ant mazes),
  `backend` ("spring" or "mjx").
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hplan.core import ConfigError, register
from hplan.envs.pointmaze.env import MazeConfig, PointMaze, WallEvent
from hplan.envs.pointmaze.layout import Layout, load_layout, parse_layout
from hplan.envs.wrappers import GoalWrapper

MAX_PAIRS = 4096  # candidate start/goal pairs kept for random sampling

__all__ = ["MazeConfig", "PointMaze", "Layout", "load_layout", "parse_layout", "make_maze",
           "make_maze_mjx", "make_antmaze"]


def _cell(value, key: str) -> tuple[int, int]:
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(isinstance(v, int | np.integer) for v in value)):
        raise ConfigError(key, f"{key} = {value!r} is not a cell", f"write {key} = [row, col]")
    return int(value[0]), int(value[1])


def read_layout(layout: str, base_dir: str | Path | None = None) -> Layout:
    """ASCII text, or the name of a layout file (relative to `base_dir`)."""
    text = layout.strip()
    if "\n" not in text and not set(text) <= set("#.SG"):
        path = Path(base_dir or ".") / text
        if not path.is_file():
            raise ConfigError("layout", f"layout file {str(path)!r} not found",
                              "give a path relative to the task file, or an inline layout")
        return parse_layout(path.read_text(), source=str(path))
    try:
        return parse_layout(layout, source="<layout>")
    except ValueError as e:  # point into the task file: where in the value it went wrong
        m = re.match(r"<layout>:(\d+):(\d+): (.*)\. Fix: (.*)", str(e), re.S)
        if m is None:
            raise
        raise ConfigError("layout", m.group(3), m.group(4),
                          at=(int(m.group(1)), int(m.group(2)))) from None


def pairs_of(layout: Layout, start_goal: str, min_distance: int = 0, start=None, goal=None,
             pairs=(), max_distance: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Start and goal cells [n, 2] for a start/goal rule."""
    free, idx, dist = layout.free_cells, layout.cell_index(), layout.distances()

    def check_free(cell, key, what):
        if not layout.is_free(cell):
            h, w = layout.shape
            where = "outside the layout" if not (0 <= cell[0] < h and 0 <= cell[1] < w) \
                else "on a wall"
            raise ConfigError(key, f"{what} cell {tuple(cell)} is {where}",
                              f"pick a '.' cell; the layout is {h}x{w}")

    def check_joined(s, g, key):
        if dist[idx[tuple(s)], idx[tuple(g)]] < 0:
            raise ConfigError(key, f"goal {tuple(g)} is unreachable from start {tuple(s)}",
                              "choose cells joined by free cells")

    if start_goal == "fixed":
        s = _cell(start, "start") if start is not None else layout.start
        g = _cell(goal, "goal") if goal is not None else layout.goal
        if s is None or g is None:
            raise ConfigError("start_goal", "fixed start_goal needs a start and a goal",
                              "put 'S' and 'G' in the layout, or set start = [r, c] and "
                              "goal = [r, c], or use start_goal = 'random'")
        check_free(s, "start", "start")
        check_free(g, "goal", "goal")
        check_joined(s, g, "goal")
        return np.array([s]), np.array([g])
    if start_goal == "pairs":
        if not pairs:
            raise ConfigError("pairs", "start_goal = 'pairs' needs a list of pairs",
                              "add pairs = [[[row, col], [row, col]], ...] (start, goal)")
        out = []
        for i, p in enumerate(pairs):
            if not isinstance(p, list | tuple) or len(p) != 2:
                raise ConfigError("pairs", f"pair {i} = {p!r} is not [start, goal]",
                                  "write pairs = [[[row, col], [row, col]], ...]")
            s, g = _cell(p[0], "pairs"), _cell(p[1], "pairs")
            check_free(s, "pairs", f"pair {i}: start")
            check_free(g, "pairs", f"pair {i}: goal")
            check_joined(s, g, "pairs")
            out.append((s, g))
        return np.array([s for s, _ in out]), np.array([g for _, g in out])
    if start_goal != "random":
        raise ConfigError("start_goal", f"unknown start_goal={start_goal!r}",
                          "use 'fixed', 'random' or 'pairs'")
    band = dist >= max(min_distance, 1)
    if max_distance:
        if max_distance < min_distance:
            raise ConfigError("max_distance", f"max_distance={max_distance} < min_distance="
                              f"{min_distance}", "set max_distance >= min_distance (0: none)")
        band &= dist <= max_distance
    si, gi = np.nonzero(band)
    if len(si) == 0:
        within = f"{min_distance}-{max_distance}" if max_distance else f"{min_distance}"
        raise ConfigError("min_distance", f"no start/goal pair of {layout.source} is {within} "
                          f"cells apart; the longest geodesic distance there is {dist.max()}",
                          f"set min_distance <= {dist.max()}")
    if len(si) > MAX_PAIRS:
        keep = np.random.default_rng(0).choice(len(si), MAX_PAIRS, replace=False)
        si, gi = si[keep], gi[keep]
    return free[si], free[gi]


def out_of_sight(layout: Layout, starts: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """[n] True where the straight segment between the cell centres crosses a wall cell
    (in a two-room map: start and goal in different rooms)."""
    u = np.linspace(0.0, 1.0, 4 * int(max(layout.shape)) + 1)
    pts = (starts[:, None] + u[None, :, None] * (goals - starts)[:, None] + 0.5)
    cells = np.floor(pts).astype(int)
    return layout.walls[cells[..., 0], cells[..., 1]].any(1)


def family_layouts(family: str, family_args: dict | None) -> list[Layout]:
    """The maps of a generated family (`generate.FAMILIES`)."""
    from hplan.envs.pointmaze.generate import FAMILIES

    if family not in FAMILIES:
        raise ConfigError("family", f"unknown family {family!r}",
                          f"use one of: {', '.join(FAMILIES)}")
    try:
        return FAMILIES[family](**dict(family_args or {}))
    except (TypeError, ValueError) as e:
        raise ConfigError("family_args", f"family {family!r}: {e}".split(". Fix:")[0],
                          "see hplan.envs.pointmaze.generate for its arguments") from None


def maze_layouts(layout, family, family_args, base_dir) -> list[Layout]:
    """One layout, or a family's maps: exactly one of `layout` and `family`."""
    if (layout is None) == (family is None):
        raise ConfigError("layout", "give exactly one of layout and family",
                          "set layout = FILE for one map, or family = NAME for many")
    if family is not None:
        return family_layouts(family, family_args)
    folder = Path(base_dir or ".") / layout.strip() if isinstance(layout, str) \
        and "\n" not in layout.strip() else None
    if folder is not None and folder.is_dir():
        layout = sorted(str(p) for p in folder.glob("*.txt"))
        if not layout:
            raise ConfigError("layout", "the layout folder holds no *.txt maps",
                              "put one ASCII layout per .txt file there")
    if isinstance(layout, list | tuple):
        lays = [x if isinstance(x, Layout) else read_layout(x, base_dir) for x in layout]
        if not lays:
            raise ConfigError("layout", "an empty list of layouts", "name at least one map")
        for lay in lays[1:]:
            if lay.shape != lays[0].shape:
                raise ConfigError("layout", f"{lay.source} is {lay.shape[0]}x{lay.shape[1]} "
                                  f"cells but {lays[0].source} is {lays[0].shape[0]}x"
                                  f"{lays[0].shape[1]}", "a family's maps share one size")
        return lays
    return [layout if isinstance(layout, Layout) else read_layout(layout, base_dir)]


def unseen_map_args(env_args: dict, layout_file: str, base_dir: str | None = None) -> dict:
    """A task's `[env_args]` with its map(s) replaced by one layout file it never trained
    on (same world otherwise: observations, step size, frame size). Refused with the fix
    when the layout's size differs from the maps the task's stack was trained on."""
    trained = maze_layouts(env_args.get("layout"), env_args.get("family"),
                           env_args.get("family_args"), base_dir)
    h, w = trained[0].shape
    for new in maze_layouts(str(Path(layout_file).resolve()), None, None, None):
        if new.shape != (h, w):
            raise ConfigError("layout", f"{new.source} is {new.shape[0]}x{new.shape[1]} "
                              f"cells; the task's maps are {h}x{w}",
                              f"draw the test map on a {h}x{w} grid (border walls included)")
    out = {k: v for k, v in env_args.items()
           if k not in ("layout", "family", "family_args", "start", "goal", "pairs")}
    return {**out, "layout": str(Path(layout_file).resolve())}


def goal_task(world, layout: str | Layout | None, base_dir: str | None, start_goal: str,
              min_distance: int, start, goal, pairs, waypoints,
              success_radius: float, family: str | None = None, family_args=None,
              sight: bool = True, max_distance: int = 0) -> GoalWrapper:
    """`world(layout or [layouts]) -> env` (any maze world in goal space (row, col)) with
    the task's start/goal pairs and waypoints (cell centres), checked before the world is
    built. A family's pairs are drawn on every map, each pair tagged with its map."""
    lays = maze_layouts(layout, family, family_args, base_dir)
    if len(lays) > 1 and (start_goal != "random" or waypoints):
        raise ConfigError("start_goal", "a family of maps draws its pairs on each map",
                          "use start_goal = 'random' and no waypoints with a family")
    per_map = max(1, MAX_PAIRS // len(lays))
    rng = np.random.default_rng(0)
    starts, goals, ctx = [], [], []
    for i, lay in enumerate(lays):
        s, g = pairs_of(lay, start_goal, min_distance, start, goal, pairs, max_distance)
        if not sight:
            keep = out_of_sight(lay, s, g)
            if not keep.any():
                raise ConfigError("out_of_sight", f"no start/goal pair of {lay.source} is "
                                  "out of sight", "set out_of_sight = false")
            s, g = s[keep], g[keep]
        if len(s) > per_map:
            pick = rng.choice(len(s), per_map, replace=False)
            s, g = s[pick], g[pick]
        starts.append(s)
        goals.append(g)
        ctx.append(np.full(len(s), i))
    starts, goals = np.concatenate(starts), np.concatenate(goals)
    lay = lays[0]
    wps = [_cell(w, "waypoints") for w in waypoints]
    for i, w in enumerate(wps):
        if not lay.is_free(w):
            raise ConfigError("waypoints", f"waypoint {i} at cell {w} is not a free cell",
                              "put every waypoint on a '.' cell")
    env = world(lays if len(lays) > 1 else lay)
    return GoalWrapper(env, starts + 0.5, goals + 0.5,
                       np.asarray(wps, np.float32).reshape(-1, 2) + 0.5, success_radius,
                       contexts=np.concatenate(ctx) if len(lays) > 1 else None)


def wall_events(events) -> tuple[WallEvent, ...]:
    """`[{step = k, close = [[r, c], ...]}, {step = k, open = [...]}]` as `WallEvent`s."""
    out = []
    for i, e in enumerate(events):
        kinds = [k for k in ("close", "open") if isinstance(e, dict) and k in e]
        if (not isinstance(e, dict) or len(kinds) != 1 or set(e) != {"step", kinds[0]}
                or not isinstance(e["step"], int) or e["step"] < 0):
            raise ConfigError("events", f"event {i} = {e!r}",
                              "write {step = 12, close = [[row, col]]} (or open = ...), "
                              "step an integer >= 0")
        cells = tuple(_cell(c, "events") for c in e[kinds[0]])
        out.append(WallEvent(step=e["step"], cells=cells, wall=kinds[0] == "close"))
    return tuple(out)


def make_maze(layout: str | Layout | None = None, start_goal: str = "fixed",
              min_distance: int = 0, start=None, goal=None, pairs=(), waypoints=(),
              success_radius: float = 0.5, max_step: float = 0.5, slip_prob: float = 0.0,
              obs: str = "state", image_size: int = 32, events=(),
              family: str | None = None, family_args: dict | None = None,
              out_of_sight: bool = False, max_distance: int = 0,
              base_dir: str | None = None) -> GoalWrapper:
    """A goal-reaching point maze (the `pointmaze` factory)."""
    cfg = MazeConfig(max_step=max_step, slip_prob=slip_prob, obs_type=obs,
                     image_size=image_size, events=wall_events(events))
    return goal_task(lambda lay: PointMaze(lay, cfg), layout, base_dir, start_goal,
                     min_distance, start, goal, pairs, waypoints, success_radius,
                     family, family_args, sight=not out_of_sight, max_distance=max_distance)


def make_maze_mjx(layout: str | Layout, start_goal: str = "fixed", min_distance: int = 0,
                  start=None, goal=None, pairs=(), waypoints=(), success_radius: float = 0.5,
                  cell_size: float = 1.0, max_step: float = 0.5, time_constant: float = 3.0,
                  backend: str = "mjx", base_dir: str | None = None) -> GoalWrapper:
    """A goal-reaching MuJoCo/MJX point mass with inertia (the `pointmaze-mjx` factory)."""
    from hplan.envs.pointmaze.mjx_env import MJXMazeConfig, PointMazeMJX

    cfg = MJXMazeConfig(cell_size=cell_size, max_step=max_step,
                        time_constant=time_constant, backend=backend)
    return goal_task(lambda lay: PointMazeMJX(lay, cfg), layout, base_dir, start_goal,
                     min_distance, start, goal, pairs, waypoints, success_radius)


def make_antmaze(layout: str | Layout, start_goal: str = "fixed", min_distance: int = 0,
                 start=None, goal=None, pairs=(), waypoints=(),
                 success_radius: float = 0.125, cell_size: float = 4.0,
                 backend: str = "spring", gait: str | None = None,
                 gait_repeat: int | None = None,
                 base_dir: str | None = None) -> GoalWrapper:
    """brax's ant in a goal-reaching maze (the `antmaze` factory). With `gait` (a file,
    relative to the task file) actions are velocity commands its gait follows for
    `gait_repeat` control steps (None: `AntMazeConfig`'s 5, and the key of tasks without
    a gait stays as it was)."""
    from hplan.envs.pointmaze.ant import AntMaze, AntMazeConfig

    if gait is not None:  # a file, relative to the task file like a layout
        gait = str(Path(base_dir or ".") / gait)
    cfg = AntMazeConfig(cell_size=cell_size, backend=backend, gait=gait,
                        gait_repeat=AntMazeConfig.gait_repeat if gait_repeat is None
                        else gait_repeat)
    return goal_task(lambda lay: AntMaze(lay, cfg), layout, base_dir, start_goal,
                     min_distance, start, goal, pairs, waypoints, success_radius)


register("pointmaze", make_maze)
register("pointmaze-mjx", make_maze_mjx)
register("antmaze", make_antmaze)


def task_defaults(env_args: dict, base_dir: str | None = None) -> dict:
    """Task settings a maze needs no tuning for: an episode long enough to cross it three
    times at full speed, and (for random pairs) start/goal at least half its longest
    shortest path apart (at most 15 cells)."""
    lays = maze_layouts(env_args.get("layout"), env_args.get("family"),
                        env_args.get("family_args"), base_dir)
    maxd = max(int(lay.distances().max()) for lay in lays)
    out = {"episode_length": int(np.clip(3 * maxd / env_args.get("max_step", 0.5), 60, 800))}
    if env_args.get("start_goal", "fixed") == "random" and "min_distance" not in env_args:
        out["min_distance"] = min(15, max(1, maxd // 2))
    return out


def ant_task_defaults(env_args: dict, base_dir: str | None = None) -> dict:
    """1000-step episodes (the public ant mazes'), start/goal as `task_defaults`."""
    return {**task_defaults(env_args, base_dir), "episode_length": 1000}


make_maze.task_defaults = task_defaults
make_maze_mjx.task_defaults = task_defaults
make_antmaze.task_defaults = ant_task_defaults
# What shapes the world (and so the data and the stack); starts, goals, waypoints and the
# success radius do not.
make_maze.world_args = ("layout", "family", "family_args", "max_step", "slip_prob", "obs",
                        "image_size")
make_maze_mjx.world_args = ("layout", "cell_size", "max_step", "time_constant", "backend")
make_antmaze.world_args = ("layout", "cell_size", "backend", "gait", "gait_repeat")
make_maze.unseen_map_args = unseen_map_args
make_maze_mjx.unseen_map_args = unseen_map_args
make_antmaze.unseen_map_args = unseen_map_args
