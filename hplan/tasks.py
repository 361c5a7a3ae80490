"""Task definitions: a TOML file (or a `TaskSpec` in Python) -> a ready `Task`.

A task file names the layout, how starts and goals are drawn, the episode length and
success radius, optional guardrails and optional staged goals (waypoints). Every
mistake raises `ValueError("FILE:LINE:COL: what. Fix: how")` before any compute.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from hplan import shipped
from hplan.layout import Layout, parse_layout
from hplan.maze import MazeConfig, PointMaze

TASKS_DIR = Path(os.environ.get("HPLAN_TASKS_DIR", Path(__file__).resolve().parents[1] / "tasks"))
MAX_PAIRS = 4096  # candidate start/goal pairs kept for random sampling


@dataclasses.dataclass(frozen=True)
class KeepOut:
    """A disc the agent must stay out of; centre in continuous (row, col) cell units."""

    center: tuple[float, float]
    radius: float


@dataclasses.dataclass(frozen=True)
class SpeedLimit:
    """Upper bound on displacement per step, in cells."""

    max_speed: float


Guardrail = KeepOut | SpeedLimit


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Everything a user sets for a task. `layout` is ASCII text or a path to a layout file."""

    name: str
    layout: str
    episode_length: int = 100
    # "fixed" (S/G cells or start/goal), "random" (pairs >= min_distance apart) or
    # "pairs" (the listed `pairs`, one drawn per episode)
    start_goal: str = "fixed"
    min_distance: int = 0  # geodesic cells between random start and goal
    start: tuple[int, int] | None = None
    goal: tuple[int, int] | None = None
    success_radius: float = 0.5
    max_step: float = 0.5
    slip_prob: float = 0.0
    obs: str = "state"
    image_size: int = 32
    guardrails: tuple[Guardrail, ...] = ()
    waypoints: tuple[tuple[int, int], ...] = ()
    pairs: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = ()
    description: str = ""


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    spec: TaskSpec
    layout: Layout
    env: PointMaze
    source: str = "<python>"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def episode_length(self) -> int:
        return self.spec.episode_length

    @property
    def guardrails(self) -> tuple[Guardrail, ...]:
        return self.spec.guardrails

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.env.starts), np.asarray(self.env.goals)


class _Where:
    """Finds the line/column of a key in a TOML file so errors can point at it."""

    def __init__(self, text: str, source: str):
        self.lines, self.source = text.split("\n"), source

    def of(self, key: str, nth: int = 0) -> tuple[int, int]:
        pat = re.compile(rf"^\s*{re.escape(key)}\s*=")
        hits = [i for i, ln in enumerate(self.lines) if pat.match(ln)]
        if len(hits) > nth:
            i = hits[nth]
            return i + 1, self.lines[i].index(key) + 1
        return 1, 1

    def error(self, key: str, msg: str, fix: str, nth: int = 0) -> ValueError:
        line, col = self.of(key, nth)
        return ValueError(f"{self.source}:{line}:{col}: {msg}. Fix: {fix}")


def build(spec: TaskSpec, source: str = "<python>", where: _Where | None = None,
          base_dir: Path | None = None) -> Task:
    """Validate a spec and build its environment."""
    where = where or _Where("", source)
    if not isinstance(spec.episode_length, int) or spec.episode_length <= 0:
        raise where.error("episode_length", f"episode_length={spec.episode_length!r} must be "
                          "a positive integer", "set episode_length to e.g. 100")
    layout = _layout(spec, source, where, base_dir)
    if spec.start_goal not in ("fixed", "random", "pairs"):
        raise where.error("start_goal", f"unknown start_goal={spec.start_goal!r}",
                          "use 'fixed', 'random' or 'pairs'")
    for key in ("start", "goal"):
        cell = getattr(spec, key)
        if cell is not None and not layout.is_free(cell):
            what = "outside the layout" if not _inside(layout, cell) else "on a wall"
            raise where.error(key, f"{key} cell {tuple(cell)} is {what}",
                              f"pick a '.' cell; layout is {layout.shape[0]}x{layout.shape[1]}")
    for i, cell in enumerate(spec.waypoints):
        if not layout.is_free(cell):
            raise where.error("waypoints", f"waypoint {i} at cell {tuple(cell)} is not a free cell",
                              "put every waypoint on a '.' cell")
    for i, g in enumerate(spec.guardrails):
        if isinstance(g, KeepOut) and g.radius <= 0:
            raise where.error("radius", f"keep-out radius {g.radius} must be > 0",
                              "use a positive radius in cells", nth=i)
        if isinstance(g, SpeedLimit) and g.max_speed <= 0:
            raise where.error("max_speed", f"max_speed {g.max_speed} must be > 0",
                              "use a positive speed in cells per step")
    starts, goals = _pairs(spec, layout, where)
    config = MazeConfig(max_step=spec.max_step, success_radius=spec.success_radius,
                        slip_prob=spec.slip_prob, obs_type=spec.obs, image_size=spec.image_size)
    env = PointMaze(layout, starts, goals, waypoints=np.array(spec.waypoints, int).reshape(-1, 2),
                    config=config)
    return Task(spec=spec, layout=layout, env=env, source=source)


def _inside(layout: Layout, cell) -> bool:
    return 0 <= cell[0] < layout.shape[0] and 0 <= cell[1] < layout.shape[1]


def _layout(spec: TaskSpec, source: str, where: _Where, base_dir: Path | None) -> Layout:
    text = spec.layout
    if "\n" not in text.strip() and not set(text.strip()) <= set("#.SG"):
        path = (base_dir or TASKS_DIR) / text
        if not path.is_file():
            raise where.error("layout", f"layout file {str(path)!r} not found",
                              "give a path relative to the task file, or an inline layout")
        return parse_layout(path.read_text(), source=str(path))
    line, _ = where.of("layout")
    # tomllib drops the newline right after an opening triple quote.
    return parse_layout(text, source=source, line_offset=line if where.lines else 0)


def _pairs(spec: TaskSpec, layout: Layout, where: _Where) -> tuple[np.ndarray, np.ndarray]:
    free = layout.free_cells
    idx = layout.cell_index()
    dist = layout.distances()
    if spec.start_goal == "fixed":
        start = spec.start or layout.start
        goal = spec.goal or layout.goal
        if start is None or goal is None:
            raise where.error("start_goal", "fixed start_goal needs a start and a goal",
                              "put 'S' and 'G' in the layout, or set start = [r, c] and "
                              "goal = [r, c], or use start_goal = 'random'")
        if dist[idx[tuple(start)], idx[tuple(goal)]] < 0:
            raise where.error("goal", f"goal {tuple(goal)} is unreachable from start "
                              f"{tuple(start)}", "choose cells joined by free cells")
        return np.array([start]), np.array([goal])
    if spec.start_goal == "pairs":
        if not spec.pairs:
            raise where.error("start_goal", "start_goal = 'pairs' needs a list of pairs",
                              "add pairs = [[[row, col], [row, col]], ...] (start, goal)")
        for i, (s, g) in enumerate(spec.pairs):
            for what, cell in (("start", s), ("goal", g)):
                if not layout.is_free(cell):
                    raise where.error("pairs", f"pair {i}: {what} cell {tuple(cell)} is not "
                                      "a free cell", "put every start and goal on a '.' cell")
            if dist[idx[tuple(s)], idx[tuple(g)]] < 0:
                raise where.error("pairs", f"pair {i}: goal {tuple(g)} is unreachable from "
                                  f"start {tuple(s)}", "choose cells joined by free cells")
        return (np.array([s for s, _ in spec.pairs]), np.array([g for _, g in spec.pairs]))
    si, gi = np.nonzero(dist >= max(spec.min_distance, 1))
    if len(si) == 0:
        raise where.error("min_distance", f"no start/goal pair is {spec.min_distance} cells "
                          f"apart; the longest geodesic distance here is {dist.max()}",
                          f"set min_distance <= {dist.max()}")
    if len(si) > MAX_PAIRS:
        keep = np.random.default_rng(0).choice(len(si), MAX_PAIRS, replace=False)
        si, gi = si[keep], gi[keep]
    return free[si], free[gi]


def _cell(value, key: str, where: _Where) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) for v in value)):
        raise where.error(key, f"{key} = {value!r} is not a cell", f"write {key} = [row, col]")
    return int(value[0]), int(value[1])


_KEYS = {f.name for f in dataclasses.fields(TaskSpec)}


def parse_task(text: str, source: str = "<string>", base_dir: Path | None = None) -> Task:
    """Parse a task file's TOML text into a Task."""
    raw = shipped.read_toml(text, source)
    where = _Where(text, source)
    for key in raw:
        if key not in _KEYS:
            raise where.error(key, f"unknown key {key!r}",
                              f"use one of: {', '.join(sorted(_KEYS))}")
    if "name" not in raw or "layout" not in raw:
        missing = "name" if "name" not in raw else "layout"
        raise ValueError(f"{source}:1:1: missing required key {missing!r}. "
                         f"Fix: add {missing} = ...")
    fields = dict(raw)
    for key in ("start", "goal"):
        if key in fields:
            fields[key] = _cell(fields[key], key, where)
    fields["waypoints"] = tuple(_cell(w, "waypoints", where) for w in raw.get("waypoints", []))
    pairs = raw.get("pairs", [])
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise where.error("pairs", f"pairs = {pairs!r} is not a list of [start, goal]",
                          "write pairs = [[[row, col], [row, col]], ...]")
    fields["pairs"] = tuple((_cell(s, "pairs", where), _cell(g, "pairs", where))
                            for s, g in pairs)
    fields["guardrails"] = tuple(_guardrail(g, i, where)
                                 for i, g in enumerate(raw.get("guardrails", [])))
    return build(TaskSpec(**fields), source=source, where=where, base_dir=base_dir)


def _guardrail(g: dict, i: int, where: _Where) -> Guardrail:
    kind = g.get("kind")
    if kind == "keep_out":
        c = g.get("center")
        if not (isinstance(c, list) and len(c) == 2) or "radius" not in g:
            raise where.error("kind", f"guardrail {i}: keep_out needs center = [row, col] and "
                              "radius", "add both", nth=i)
        return KeepOut(center=(float(c[0]), float(c[1])), radius=float(g["radius"]))
    if kind == "speed_limit":
        if "max_speed" not in g:
            raise where.error("kind", f"guardrail {i}: speed_limit needs max_speed",
                              "add max_speed = <cells per step>", nth=i)
        return SpeedLimit(max_speed=float(g["max_speed"]))
    raise where.error("kind", f"guardrail {i}: unknown kind {kind!r}",
                      "use kind = 'keep_out' or 'speed_limit'", nth=i)


def available() -> dict[str, Path]:
    """Shipped task names -> files."""
    return shipped.available(TASKS_DIR)


def load(name_or_path: str | Path) -> Task:
    """Load a task by shipped name (see `hplan tasks`) or by path to a .toml file."""
    path = shipped.resolve(name_or_path, TASKS_DIR, "task")
    return parse_task(path.read_text(), source=str(path), base_dir=path.parent)
