"""Task definitions: a TOML file (or a `TaskSpec` in Python) -> a ready `Task`.

A task names an environment from the registry and its factory's keyword arguments,
the episode length, optional guardrails (in the env's goal space) and optionally the
world-model stack to train for it:

    name = "large"
    env = "pointmaze"              # registered name (hplan.envs.register)
    env_module = "my.envs"         # optional: imported first, so it can register its own
    episode_length = 200
    [env_args]                     # the factory's keyword arguments
    layout = "layouts/large.txt"
    [[guardrails]]
    kind = "keep_out"              # or "speed_limit" (max_speed)
    center = [4.5, 3.5]
    radius = 1.0
    [stack.train]                  # overrides of the default stack (see hplan.wm.config)
    steps = 8000

A variant names its `base` (a shipped name, or a path relative to the file) and says only
what differs: top-level keys replace, `[env_args]` and `[stack.<part>]` keys replace one by
one, `[[guardrails]]` replace the base's; its name defaults to the file's stem:

    base = "two-rooms-random"
    [stack.wm]
    spatial = 8

Every mistake raises `ValueError("FILE:LINE:COL: what. Fix: how")` before any compute,
the factory's own complaints included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from hplan import shipped
from hplan.core import ConfigError, Guardrail, KeepOut, SpeedLimit, import_env_module
from hplan.core import factory as env_factory
from hplan.envs.wrappers import ActionFilter, EpisodeLength
from hplan.shipped import Where

TASKS_DIR = Path(os.environ.get("HPLAN_TASKS_DIR", Path(__file__).resolve().parents[1] / "tasks"))


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Everything a user sets for a task."""

    name: str
    env: str = "pointmaze"
    env_args: dict = dataclasses.field(default_factory=dict)
    env_module: str | None = None
    episode_length: int = 100
    guardrails: tuple[Guardrail, ...] = ()
    stack: dict = dataclasses.field(default_factory=dict)
    description: str = ""

    def key(self, base_dir: Path | None = None) -> str:
        """Hash of the environment (name and kwargs; a kwarg naming a file, such as a
        layout, counts by the file's content): datasets and stacks are keyed by it. A
        factory may list its `world_args`, the kwargs that shape the world itself (not
        starts, goals or success radius); then only those count."""
        import inspect

        fn = env_factory(self.env)
        world = getattr(fn, "world_args", None)
        given = dict(self.env_args)
        if world is not None:  # defaults spelled out or not, the same world
            params = inspect.signature(fn).parameters
            given = {k: given.get(k, params[k].default) for k in world}
            # An unset optional (None) is no part of the world: keys stay as they were
            # before the factory gained it.
            given = {k: v for k, v in given.items() if v is not None}
        args = {}
        for k, v in given.items():
            path = Path(base_dir or TASKS_DIR) / v if isinstance(v, str) else None
            if path is not None and "\n" not in v and path.is_file():
                v = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
            elif path is not None and "\n" not in v and path.is_dir():  # a folder of maps
                v = "dir:" + hashlib.sha256(b"".join(
                    f.read_bytes() for f in sorted(path.glob("*.txt")))).hexdigest()
            args[k] = v
        blob = json.dumps({"env": self.env, "args": args}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    spec: TaskSpec
    env: Any
    source: str = "<python>"
    base_dir: Path | None = None

    def key(self) -> str:
        """The env hash that datasets and stacks are keyed by (see `TaskSpec.key`)."""
        return self.spec.key(self.base_dir)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def episode_length(self) -> int:
        return self.spec.episode_length

    @property
    def guardrails(self) -> tuple[Guardrail, ...]:
        return self.spec.guardrails

    @property
    def oracle(self):
        """The env's oracle (optimal steps, geodesics, pictures), or None."""
        return getattr(self.env, "oracle", None)


def build(spec: TaskSpec, source: str = "<python>", where: Where | None = None,
          base_dir: Path | None = None) -> Task:
    """Validate a spec and build its (wrapped) environment."""
    where = where or Where("", source)
    if not isinstance(spec.episode_length, int) or spec.episode_length <= 0:
        raise where.error("episode_length", f"episode_length={spec.episode_length!r} must be "
                          "a positive integer", "set episode_length to e.g. 100")
    if spec.env_module:
        try:
            import_env_module(spec.env_module)
        except ValueError as e:
            raise where.error("env_module", str(e).split(". Fix:")[0],
                              "put the module on PYTHONPATH, or fix its name") from None
    try:
        fn = env_factory(spec.env)
    except ValueError as e:
        raise where.error("env", str(e).split(". Fix:")[0],
                          "pick a registered env, or set env_module to the module that "
                          "registers it") from None
    import inspect

    params = inspect.signature(fn).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    for key in spec.env_args:
        if not takes_any and key not in params:
            allowed = [p for p in params if p != "base_dir"]
            raise where.error(key, f"env {spec.env!r} does not take {key!r}",
                              f"use one of: {', '.join(allowed)}", table="env_args")
    args = dict(spec.env_args)
    if "base_dir" in params:
        args["base_dir"] = str(base_dir or TASKS_DIR)
    try:
        env = fn(**args)
    except ConfigError as e:
        table = "env_args" if e.key in spec.env_args else None
        if e.at is not None and where.lines != [""]:
            line, _ = where.of(e.key, table)
            raise ValueError(f"{where.source}:{line + e.at[0]}:{e.at[1]}: {e.what}. "
                             f"Fix: {e.fix}") from None
        raise where.error(e.key, e.what, e.fix, table=table) from None
    for i, g in enumerate(spec.guardrails):
        if isinstance(g, KeepOut) and g.radius <= 0:
            raise where.error("radius", f"keep-out radius {g.radius} must be > 0",
                              "use a positive radius", table="guardrails", nth=i)
        if isinstance(g, SpeedLimit) and g.max_speed <= 0:
            raise where.error("max_speed", f"max_speed {g.max_speed} must be > 0",
                              "use a positive speed per step", table="guardrails")
    limits = [g for g in spec.guardrails if isinstance(g, SpeedLimit)]
    try:
        env = ActionFilter(env, limits)
    except ConfigError as e:
        raise where.error(e.key, e.what, e.fix, table="guardrails") from None
    env = EpisodeLength(env, spec.episode_length)
    return Task(spec=spec, env=env, source=source, base_dir=base_dir)


_KEYS = {f.name for f in dataclasses.fields(TaskSpec)}


def parse_task(text: str, source: str = "<string>", base_dir: Path | None = None) -> Task:
    """Parse a task file's TOML text (with its `base` file's settings under it) into a Task."""
    return _parse(text, source, base_dir, ())[0]


def _parse(text: str, source: str, base_dir: Path | None,
           seen: tuple[str, ...]) -> tuple[Task, dict]:
    """The task, and the settings it was built from (merged over any bases)."""
    raw = shipped.read_toml(text, source)
    where = Where(text, source)
    for key in raw:
        if key not in _KEYS | {"base"}:
            raise where.error(key, f"unknown key {key!r}",
                              f"use one of: {', '.join(sorted(_KEYS | {'base'}))}")
    for table in ("env_args", "stack"):
        if table in raw and not isinstance(raw[table], dict):
            raise where.error(table, f"{table} must be a table", f"write [{table}] and its "
                              "keys below it")
    raw = _inherit(raw, where, source, base_dir, seen)
    if "name" not in raw:
        raise ValueError(f"{source}:1:1: missing required key 'name'. Fix: add name = ...")
    fields = {k: v for k, v in raw.items() if k != "base"}
    fields["guardrails"] = tuple(_guardrail(g, i, where)
                                 for i, g in enumerate(raw.get("guardrails", [])))
    if "stack" in raw:
        from hplan.wm.config import check_overrides

        try:
            check_overrides(raw["stack"])
        except ConfigError as e:
            part = next((p for p, v in raw["stack"].items()
                         if isinstance(v, dict) and e.key in v), None)
            raise where.error(e.key, e.what, e.fix,
                              table=f"stack.{part}" if part else "stack") from None
    task = build(TaskSpec(**fields), source=source, where=where, base_dir=base_dir)
    return task, raw


def _inherit(raw: dict, where: Where, source: str, base_dir: Path | None,
             seen: tuple[str, ...]) -> dict:
    """`raw` merged over its `base` task's: top-level keys replace, `[env_args]` keys
    replace one by one, `[stack.<part>]` keys replace one by one, `[[guardrails]]`
    replace the base's. The base's file arguments (layouts) stay relative to its folder."""
    path = shipped.base_file(raw, where, source, TASKS_DIR, "task", seen)
    if path is None:
        return raw
    # the base must be valid on its own (its errors point into its own file)
    _, merged = _parse(path.read_text(), str(path), path.parent,
                       seen + (str(path.resolve()),))
    merged = {k: v for k, v in merged.items() if k != "base"}
    here = Path(base_dir) if base_dir is not None else Path(source).parent
    merged["env_args"] = {k: _anchored(v, path.parent, here)
                          for k, v in merged.get("env_args", {}).items()}
    for key, value in raw.items():
        if key == "env_args":
            merged[key] = {**merged[key], **value}
        elif key == "stack":
            stack = {part: dict(v) for part, v in merged.get("stack", {}).items()}
            for part, values in value.items():
                stack[part] = {**stack.get(part, {}), **values} if isinstance(values, dict) \
                    else values
            merged[key] = stack
        elif key != "base":
            merged[key] = value
    # a variant is never called by its base's name: its stacks would share a cache name
    merged["name"] = raw.get("name", Path(source).stem)
    return merged


def _anchored(value: Any, base: Path, here: Path) -> Any:
    """A file or folder argument of a task in folder `base`, as the same file seen from
    folder `here`; anything else unchanged."""
    if isinstance(value, str) and "\n" not in value and value and (base / value).exists():
        return os.path.relpath((base / value).resolve(), here.resolve())
    return value


def _guardrail(g: dict, i: int, where: Where) -> Guardrail:
    kind = g.get("kind")
    if kind == "keep_out":
        c = g.get("center")
        if not (isinstance(c, list) and len(c) == 2) or "radius" not in g:
            raise where.error("kind", f"guardrail {i}: keep_out needs center = [x, y] and "
                              "radius", "add both", table="guardrails", nth=i)
        return KeepOut(center=(float(c[0]), float(c[1])), radius=float(g["radius"]))
    if kind == "speed_limit":
        if "max_speed" not in g:
            raise where.error("kind", f"guardrail {i}: speed_limit needs max_speed",
                              "add max_speed = <goal-space units per step>",
                              table="guardrails", nth=i)
        return SpeedLimit(max_speed=float(g["max_speed"]))
    raise where.error("kind", f"guardrail {i}: unknown kind {kind!r}",
                      "use kind = 'keep_out' or 'speed_limit'", table="guardrails", nth=i)


def available() -> dict[str, Path]:
    """Shipped task names -> files."""
    return shipped.available(TASKS_DIR)


def load(name_or_path: str | Path) -> Task:
    """Load a task by shipped name (see `hplan tasks`) or by path to a .toml file."""
    path = shipped.resolve(name_or_path, TASKS_DIR, "task")
    return parse_task(path.read_text(), source=str(path), base_dir=path.parent)
