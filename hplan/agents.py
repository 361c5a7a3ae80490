"""Agent definitions: a short TOML file (or an `AgentConfig` in Python) -> frozen config.

`load_agent("hier-2")` reads `agents/hier-2.toml`; a path to any `.toml` works too. Every
mistake raises `ValueError("FILE:LINE:COL: what. Fix: how")` before any compute. Build
the policy with `hplan.agent.build(config, task, stack, bank)`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from hplan import shipped

AGENTS_DIR = Path(os.environ.get("HPLAN_AGENTS_DIR",
                                 Path(__file__).resolve().parents[1] / "agents"))
KINDS = ("flat", "hier")
PLANNERS = ("gradient", "cem", "mppi", "hybrid")
TOPS = ("critic", "macro", "critic+macro", "critic+critic")
CRITIC_ON = ("terminal", "path")
EDGES = ("critic", "data")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Everything an agent definition sets. Distances and costs are in base steps."""

    name: str = "flat-mpc"
    kind: str = "flat"  # "flat": one level; "hier": a subgoal selector above level 0
    description: str = ""
    # low level (level-0 MPC)
    planner: str = "gradient"  # gradient | cem | mppi | hybrid
    horizon: int = 12
    iters: int = 8
    lr: float = 0.3  # gradient: adam step size on actions
    restarts: int = 4  # gradient: parallel restarts
    init_noise: float = 0.5  # gradient: noise of restarts 1..R
    samples: int = 64  # cem / mppi / hybrid sampler
    elites: int = 8  # cem
    temperature: float = 0.5  # mppi
    sample_iters: int = 2  # hybrid: sampler iterations before gradient refinement
    running: float = 1.0  # weight of summed latent distance to the (sub)goal, in steps
    terminal: float = 1.0  # extra weight on the last step's latent distance
    use_critic: bool = False  # add critic0(z_H, goal) as terminal cost
    critic_weight: float = 1.0
    # "terminal": critic0 at the rollout's end only; "path": its mean over the rollout, so
    # reaching the (sub)goal early is cheaper than dawdling (terminal-only leaves the first
    # action free once the target is closer than the horizon, and the agent dithers)
    critic_on: str = "terminal"
    guard_weight: float = 20.0  # keep-out penalty on probed positions
    guard_margin: float = 0.1
    # high level (kind = "hier")
    # "critic": bank subgoal selector; "macro": CEM on top-level macro-actions;
    # "critic+macro": three layers, a far critic subgoal that level-1 CEM aims at;
    # "critic+critic": three layers, a far graph subgoal, then a near one on the way to it
    top: str = "critic"
    bank: int = 2048  # encoded dataset states the selector chooses among
    # bank graph links: "critic" (short critic0 hops) or "data" (the transitions the
    # dataset itself made between bank states: never through a wall, however the critic errs)
    edges: str = "critic"
    candidates: int = 0  # score only this many latent-nearest bank states (0: all)
    reach: float = 5.0  # max critic0 cost-to-go (base steps) to a chosen subgoal
    progress: float = 0.5  # extra weight on the subgoal's cost-to-go to the goal
    replan: int = 4  # re-select the subgoal every `replan` control steps ...
    reached: float = 1.0  # ... or when within this latent distance (steps) of it; 0: off
    commit: float = 0.0  # selector hysteresis: + commit * D(previous subgoal, candidate)
    # graph selectors: after `patience` control steps without a step of progress towards
    # the target, the subgoal's graph neighbourhood is no subgoal for `ban_steps`; 0: off
    patience: int = 0
    ban_steps: int = 16
    # graph tops: the cut made after `patience` steps without progress (see graph_level)
    cut_radius: float = 1.0
    max_cuts: int = 8
    far_reach: float = 16.0  # critic+macro: reach of the far subgoal (base steps)
    far_replan: int = 8  # critic+macro: steps between far subgoal selections
    top_horizon: int = 3  # macro: level-1 macro-actions planned
    top_samples: int = 64  # macro: CEM samples
    top_elites: int = 8
    top_iters: int = 3

    def __post_init__(self):
        checks = [
            (isinstance(self.patience, int) and self.patience >= 0, "patience",
             f"patience={self.patience!r}", "use an integer >= 0 (0 turns the ban off)"),
            (self.kind in KINDS, "kind", f"kind={self.kind!r}", f"use one of {KINDS}"),
            (self.planner in PLANNERS, "planner", f"planner={self.planner!r}",
             f"use one of {PLANNERS}"),
            (self.top in TOPS, "top", f"top={self.top!r}", f"use one of {TOPS}"),
            (self.critic_on in CRITIC_ON, "critic_on", f"critic_on={self.critic_on!r}",
             f"use one of {CRITIC_ON}"),
            (self.edges in EDGES, "edges", f"edges={self.edges!r}", f"use one of {EDGES}"),
        ]
        for key in ("horizon", "iters", "restarts", "samples", "elites", "bank", "replan",
                    "ban_steps", "max_cuts",
                    "far_replan", "top_horizon", "top_samples", "top_elites", "top_iters"):
            v = getattr(self, key)
            checks.append((isinstance(v, int) and v >= 1, key, f"{key}={v!r}",
                           "use a positive integer"))
        checks.append((self.candidates >= 0, "candidates", f"candidates={self.candidates!r}",
                       "use 0 (score the whole bank) or a positive count"))
        for key in ("lr", "reach", "far_reach", "temperature", "cut_radius"):
            v = getattr(self, key)
            checks.append((v > 0, key, f"{key}={v!r}", "use a positive number"))
        checks.append((self.commit >= 0, "commit", f"commit={self.commit!r}",
                       "use a number >= 0 (0 turns hysteresis off)"))
        checks.append((self.reached >= 0, "reached", f"reached={self.reached!r}",
                       "use a number >= 0 (0 turns the trigger off)"))
        checks.append((self.elites <= self.samples, "elites",
                       f"elites={self.elites} > samples={self.samples}", "use elites <= samples"))
        checks.append((self.top_elites <= self.top_samples, "top_elites",
                       f"top_elites={self.top_elites} > top_samples={self.top_samples}",
                       "use top_elites <= top_samples"))
        for ok, key, what, fix in checks:
            if not ok:
                raise _ConfigError(key, what, fix)


class _ConfigError(ValueError):
    def __init__(self, key: str, what: str, fix: str):
        super().__init__(f"{what}. Fix: {fix}")
        self.key, self.what, self.fix = key, what, fix


_FIELDS = {f.name: f for f in dataclasses.fields(AgentConfig)}


def _where(lines: list[str], key: str) -> tuple[int, int]:
    pat = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for i, ln in enumerate(lines):
        if pat.match(ln):
            return i + 1, ln.index(key) + 1
    return 1, 1


def parse_agent(text: str, source: str = "<string>") -> AgentConfig:
    """Parse an agent file's TOML text."""
    raw = shipped.read_toml(text, source)
    lines = text.split("\n")

    def err(key, what, fix):
        line, col = _where(lines, key)
        return ValueError(f"{source}:{line}:{col}: {what}. Fix: {fix}")

    for key, value in raw.items():
        if key not in _FIELDS:
            raise err(key, f"unknown key {key!r}", f"use one of: {', '.join(sorted(_FIELDS))}")
        want = type(_FIELDS[key].default)
        ok = (isinstance(value, want) and not (want is int and isinstance(value, bool))
              or (want is float and isinstance(value, int) and not isinstance(value, bool)))
        if not ok:
            raise err(key, f"{key} = {value!r} is not a {want.__name__}",
                      f"write {key} = <{want.__name__}>")
    fields = {k: float(v) if type(_FIELDS[k].default) is float else v for k, v in raw.items()}
    try:
        return AgentConfig(**fields)
    except _ConfigError as e:
        raise err(e.key, e.what, e.fix) from None


def available() -> dict[str, Path]:
    """Shipped agent names -> files."""
    return shipped.available(AGENTS_DIR)


def load_agent(name_or_path: str | Path) -> AgentConfig:
    """Load an agent by shipped name (`agents/*.toml`) or by path to a .toml file."""
    path = shipped.resolve(name_or_path, AGENTS_DIR, "agent")
    return parse_agent(path.read_text(), source=str(path))
