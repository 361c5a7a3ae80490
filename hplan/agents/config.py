"""Agent definitions: a short TOML file (or an `AgentConfig` in Python) -> frozen config.

    name = "hier-2"
    description = "..."
    [actuator]            # level-0 MPC (hplan.agents.actuator.MPCConfig)
    horizon = 8
    critic = "path"
    [surprise]            # prediction-error spikes (hplan.agents.surprise.SurpriseConfig)
    react = true
    [[levels]]            # top first; each is hplan.agents.<kind>_level (Config, make)
    kind = "graph"
    every = 1             # re-select every N control steps (hold the subgoal between)
    reach = 2.0

No `[[levels]]`: flat MPC. `[actuator] kind = "true-dynamics"`: MPC through the env's
own step (the oracle baseline); `"system1"` / `"system1+mpc"`: a distilled policy acts,
alone or as the planner's warm start (`hplan.agents.system1`). A new kind of level is one file,
`hplan/agents/<kind>_level.py`, with a `Config` dataclass and `make(cfg, ctx) -> Level`.
`load_agent("hier-2")` reads `agents/hier-2.toml`; a path to any `.toml` works too. Every
mistake raises `ValueError("FILE:LINE:COL: what. Fix: how")` before any compute.

A variant names its `base` (a shipped name, or a path relative to the file) and says only
what differs: top-level keys replace, `[actuator]` / `[surprise]` keys replace one by one,
`[level.N]` patches keys of the base's level N (0: the top), and `[[levels]]` replaces
them all:

    base = "hier-2"
    name = "hier-2-track"
    [level.0]
    track = 1.5
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any

from hplan import shipped
from hplan.agents.actuator import MPCConfig
from hplan.agents.surprise import SurpriseConfig
from hplan.core import ConfigError

AGENTS_DIR = Path(os.environ.get("HPLAN_AGENTS_DIR",
                                 Path(__file__).resolve().parents[2] / "agents"))
ACTUATORS = ("mpc", "true-dynamics", "system1", "system1+mpc")


@dataclasses.dataclass(frozen=True)
class LevelSpec:
    kind: str
    config: Any
    every: int = 1


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    name: str = "flat-mpc"
    description: str = ""
    actuator: MPCConfig = MPCConfig()
    actuator_kind: str = "mpc"
    levels: tuple[LevelSpec, ...] = ()
    surprise: SurpriseConfig = SurpriseConfig()

    @property
    def flat(self) -> bool:
        return not self.levels


def level_module(kind: str):
    """The module of a level kind: `hplan.agents.<kind>_level`."""
    if not kind.replace("_", "").isalnum():
        raise ConfigError("kind", f"kind={kind!r} is not a level name", "use e.g. 'graph'")
    try:
        return importlib.import_module(f"hplan.agents.{kind}_level")
    except ModuleNotFoundError:
        known = sorted(p.stem[: -len("_level")] for p in Path(__file__).parent.glob(
            "*_level.py"))
        raise ConfigError("kind", f"unknown level kind {kind!r}",
                          f"use one of: {', '.join(known)}") from None


def _typed(cls, raw: dict, what: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(key, f"unknown key {key!r} in {what}",
                              f"use one of: {', '.join(sorted(fields)) or '(none)'}")
        want = type(fields[key].default)
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ConfigError(key, f"{key} = {value!r} is not a {want.__name__}",
                              f"write {key} = <{want.__name__}>")
        out[key] = value
    return cls(**out)


_TOP = {"name", "description", "actuator", "levels", "surprise", "base", "level"}


def _inherit(raw: dict, where: shipped.Where, source: str, seen: tuple[str, ...]) -> dict:
    """`raw` merged over its `base` file's (itself merged over its own base, if any)."""
    path = shipped.base_file(raw, where, source, AGENTS_DIR, "agent", seen)
    if path is None:
        if "level" in raw:
            first = next(iter(raw["level"]), "0")
            raise where.error(next(iter(raw["level"].get(first) or {}), "level"),
                              "[level.N] patches a base agent's levels, and this file has "
                              "no base", 'add base = "<agent>" or write [[levels]]',
                              f"level.{first}")
        return raw
    base = raw["base"]
    # the base must be valid on its own (its errors point into its own file)
    _, merged = _parse(path.read_text(), str(path), seen + (str(path.resolve()),))
    merged = dict(merged)
    merged.pop("base", None)
    for table in ("actuator", "surprise"):
        if table in raw:
            merged[table] = {**merged.get(table, {}), **raw[table]}
    if "levels" in raw:
        merged["levels"] = raw["levels"]
    levels = [dict(lv) for lv in merged.get("levels", [])]
    for i, patch in raw.get("level", {}).items():
        if not (i.isdigit() and int(i) < len(levels)):
            raise where.error(next(iter(patch), "level"), f"[level.{i}]: the base "
                              f"{base!r} has levels 0 to {len(levels) - 1}",
                              f"patch one of [level.0] .. [level.{len(levels) - 1}]",
                              f"level.{i}")
        levels[int(i)].update(patch)
    if levels:
        merged["levels"] = levels
    if "description" in raw:
        merged["description"] = raw["description"]
    # a variant is never called by its base's name: a bench would print two of them
    merged["name"] = raw.get("name", Path(source).stem)
    return merged


def parse_agent(text: str, source: str = "<string>") -> AgentConfig:
    """Parse an agent file's TOML text (with its `base` file's settings under it)."""
    return _parse(text, source, ())[0]


def _parse(text: str, source: str, seen: tuple[str, ...]) -> tuple[AgentConfig, dict]:
    """The config, and the settings it was built from (merged over any bases)."""
    raw = shipped.read_toml(text, source)
    where = shipped.Where(text, source)

    def err(e: ConfigError, table: str | None = None, nth: int = 0) -> ValueError:
        return where.error(e.key, e.what, e.fix, table, nth)

    for key in raw:
        if key not in _TOP:
            raise err(ConfigError(key, f"unknown key {key!r}",
                                  f"use one of: {', '.join(sorted(_TOP))} (planner settings "
                                  "go in [actuator], levels in [[levels]])"))
    patched = set(raw.get("level", {})) if "levels" not in raw else set()
    raw = _inherit(raw, where, source, seen)
    act = dict(raw.get("actuator", {}))
    kind = act.pop("kind", "mpc")
    if kind not in ACTUATORS:
        raise err(ConfigError("kind", f"actuator kind={kind!r}", f"use one of {ACTUATORS}"),
                  "actuator")
    try:
        actuator = _typed(MPCConfig, act, "[actuator]")
    except ConfigError as e:
        raise err(e, "actuator") from None
    try:
        surprise = _typed(SurpriseConfig, dict(raw.get("surprise", {})), "[surprise]")
    except ConfigError as e:
        raise err(e, "surprise") from None
    levels = []
    for i, lv in enumerate(raw.get("levels", [])):
        lv = dict(lv)
        try:
            if "kind" not in lv:
                raise ConfigError("kind", f"level {i} has no kind", "add kind = \"graph\"")
            mod = level_module(lv.pop("kind"))
            every = lv.pop("every", 1)
            if not (isinstance(every, int) and every >= 1):
                raise ConfigError("every", f"every={every!r}", "use a positive integer")
            levels.append(LevelSpec(mod.__name__.rsplit(".", 1)[1][: -len("_level")],
                                    _typed(mod.Config, lv, f"level {i}"), every))
        except ConfigError as e:
            raise (err(e, f"level.{i}") if str(i) in patched else err(e, "levels", i)) from None
    if kind == "true-dynamics" and levels:
        raise err(ConfigError("levels", "a true-dynamics actuator takes no levels",
                              "drop the [[levels]] tables"))
    return AgentConfig(name=raw.get("name", "agent"), description=raw.get("description", ""),
                       actuator=actuator, actuator_kind=kind, levels=tuple(levels),
                       surprise=surprise), raw


def available() -> dict[str, Path]:
    """Shipped agent names -> files."""
    return shipped.available(AGENTS_DIR)


def load_agent(name_or_path: str | Path) -> AgentConfig:
    """Load an agent by shipped name (`agents/*.toml`) or by path to a .toml file."""
    path = shipped.resolve(name_or_path, AGENTS_DIR, "agent")
    return parse_agent(path.read_text(), source=str(path))
