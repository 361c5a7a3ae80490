"""Shared benchmark plumbing: timing medians, machine/commit stamps, table + JSON output."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import jax
import numpy as np

from hplan.eval.provenance import stamp

RESULTS = Path(__file__).resolve().parent / "results"


def timeit(fn, repeats: int = 5) -> tuple[float, float, list[float]]:
    """(compile+first-call seconds, median seconds after compile, all timings)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times), times


def table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def write(name: str, payload: dict, out: str | None = None) -> Path:
    tag = "gpu" if jax.default_backend() == "gpu" else "cpu"
    path = Path(out) if out else RESULTS / f"{name}_{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**stamp(), **payload}
    path.write_text(json.dumps(payload, indent=2))
    return path


def overridden(task, override: dict):
    """The task's stack configuration with `override` (a `[stack]`-style table, e.g.
    `{"train": {"step_floor_weight": 1.0}}`) merged over its own `[stack]` table."""
    from hplan.wm.config import stack_config

    return stack_config(override, base=stack_config(task.spec.stack))


def family_env(task, tool: str):
    """The point-maze env of a family task (maps that change per episode), or exit."""
    env = task.env.unwrapped
    if len(getattr(env, "layouts", [])) < 2:
        raise SystemExit(f"{task.name}: {tool} needs a point-maze family task "
                         "(env_args.family), e.g. two-rooms-random")
    return env


def dividing_wall(layout) -> int:
    """The inner column with the most wall cells (a two-rooms map's dividing wall)."""
    return int(np.argmax(layout.walls[1:-1, 1:-1].sum(0))) + 1


def graph_agent_episodes(task, agent: str, seed: int, key: int, episodes: int, cache: str,
                         tool: str):
    """(agent config, its Context, `runner.evaluate` result, the bank's goal-space
    positions) for an agent whose lowest level is a graph level, on stack `seed`, episodes
    drawn with `key`. Exits naming `tool` for any other agent."""
    import jax

    from hplan import agents as A
    from hplan.agents.graph_level import bank_draw
    from hplan.eval import runner
    from hplan.train import pipeline

    cfg = A.load_agent(agent)
    if not cfg.levels or cfg.levels[-1].kind != "graph":
        raise SystemExit(f"{agent}: {tool} reads subgoals off a graph level's bank; "
                         "use an agent whose lowest level is a graph level (e.g. hier-2-data)")
    st, ds, _ = pipeline.get_stack(task, cache, seed=seed, show=False)
    ctx = A.Context(task, st, ds)
    pol, _ = A.make(cfg, task, st, ds, ctx=ctx)  # the same context: one bank
    res = runner.evaluate(task, pol, jax.random.key(key), episodes)
    lowest = cfg.levels[-1].config
    return cfg, ctx, res, ctx.bank_xy(lowest.bank, bank_draw(lowest))
