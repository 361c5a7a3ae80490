"""Agents side by side on the same episodes: success, SPL, steps, path ratio, guardrails,
time and compute, a table, per-episode records and a plot.

Every agent's whole batch of episodes is one jitted program (`hplan.eval.runner`).
Timing: `plan_ms_per_step` is the median wall time of a single-episode program after
compilation, divided by its control steps (it includes the cheap env step); `episode_s`
is that median for the whole episode; `compile_s` is the first call minus the median.
Optimal steps (for SPL and path ratio) come from the env's oracle; without one those
columns are n/a.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

import jax
import numpy as np

from hplan.core import Policy
from hplan.eval.runner import make_evaluate, shard_keys


def spl(success: np.ndarray, optimal: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """Success weighted by path length, per episode: S * optimal / max(optimal, taken)."""
    taken = np.where(success, taken, np.inf)
    return np.where(success, optimal / np.maximum(np.maximum(optimal, taken), 1e-9), 0.0)


def _first(out: dict):
    """The batched first states' metrics and info, as the oracle reads them."""
    from types import SimpleNamespace

    info = {k: out["first"][k] for k in ("targets", "context") if k in out["first"]}
    return SimpleNamespace(metrics=out["first"]["metrics"], info=info)


def episode_records(task, out: dict) -> list[dict]:
    """One JSON-ready record per episode: start, goal, success, steps, optimal steps, final
    distance to the goal, and the place (the oracle's region: a maze cell) where the agent
    spent the most steps."""
    n = len(out["success"])
    oracle = task.oracle
    opt = out.get("optimal_steps", np.full(n, np.nan))
    recs = []
    for e in range(n):
        r = {"success": bool(out["success"][e]), "steps": int(out["steps_to_goal"][e]),
             "optimal_steps": float(opt[e]), "cuts": int(out["cuts"][e]),
             "surprises": int(out["surprises"][e])}
        if "positions" in out:
            pos = np.asarray(out["positions"][e])
            r.update(start=pos[0].round(3).tolist(), goal=np.asarray(out["goal"][e]).round(3)
                     .tolist(), final_distance=float(np.linalg.norm(pos[-1] - out["goal"][e])))
            places = oracle.region(pos) if oracle is not None else np.round(pos, 1)
            cells, counts = np.unique(places, axis=0, return_counts=True)
            r.update(most_visited=cells[np.argmax(counts)].tolist(),
                     most_visited_steps=int(counts.max()))
        recs.append(r)
    return recs


def evaluate_agent(task, policy: Policy, key: jax.Array, episodes: int,
                   steps: int | None = None, repeats: int = 3, reset=None,
                   devices: int | None = None, latency: bool = True) -> tuple[dict, dict]:
    """(summary row, raw per-episode arrays) for one agent. `reset(key, i)`: the start of
    episode `i` (default: the task's own draw); `devices`: the episodes sharded over them;
    `latency=False` skips timing a single episode (a second compilation), leaving the
    per-episode times n/a."""
    steps = steps or task.episode_length
    run = jax.jit(make_evaluate(task, policy, steps, reset))
    keys = jax.random.split(key, episodes)
    t0 = time.perf_counter()
    out = jax.device_get(run(shard_keys(keys, devices)))
    batch_first = time.perf_counter() - t0
    first = episode_s = float("nan")
    if latency:  # single-episode latency: its own program, timed after its compilation
        one = jax.jit(make_evaluate(task, policy, steps, reset))
        t0 = time.perf_counter()
        jax.block_until_ready(one(keys[:1]))
        first = time.perf_counter() - t0
        times = []
        for r in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(one(keys[r + 1: r + 2] if r + 2 <= episodes
                                      else keys[:1]))
            times.append(time.perf_counter() - t0)
        episode_s = statistics.median(times)
    success = np.asarray(out["success"], bool)
    taken = np.asarray(out["steps_to_goal"], float)
    info = out["info"]
    # Events until the goal (an agent parked on it keeps "stalling"), all steps when missed.
    until = np.where(success, taken, steps)
    out["cuts"] = _until(info.get("cut"), until)
    out["surprises"] = _until(info.get("surprise"), until)
    surprise_rate = (1e3 * out["surprises"].sum() / max(until.sum(), 1) if "surprise" in info
                     else float("nan"))
    oracle = task.oracle
    nan = float("nan")
    row = {"success_rate": float(success.mean()), "spl": nan,
           "mean_steps": float(taken[success].mean()) if success.any() else nan,
           "path_ratio": nan, "path_ratio_bfs": nan}
    if oracle is not None and "targets" in out["first"]:
        opt = np.asarray(oracle.optimal_steps(_first(out)))
        out["optimal_steps"] = opt
        out["spl"] = spl(success, opt, taken)
        row["spl"] = float(out["spl"].mean())
        if success.any():
            row["path_ratio"] = float(np.mean(taken[success] / np.maximum(opt[success], 1)))
            if hasattr(oracle, "bfs_steps"):
                bfs = np.asarray(oracle.bfs_steps(_first(out)))
                row["path_ratio_bfs"] = float(np.mean(taken[success]
                                                      / np.maximum(bfs[success], 1)))
    out["records"] = episode_records(task, out)
    evals = info.get("n_model")
    row.update({
        "guardrail_violations": float(np.asarray(out["violations"]).mean()),
        "cuts_per_episode": float(np.mean(out["cuts"])),
        "surprises_per_1k_steps": float(surprise_rate),
        "plan_ms_per_step": 1e3 * episode_s / steps,
        "episode_s": episode_s,
        "compile_s": max(first - episode_s, 0.0) if latency else nan,
        "batch_s": batch_first,
        "model_evals_per_step": float(np.mean(evals)) if evals is not None else nan,
        "episodes": episodes,
    })
    return row, out


def _until(flags, until: np.ndarray) -> np.ndarray:
    """Per-episode count of the per-step `flags` [E, T] before step `until` [E] (zeros
    when the policy does not report them)."""
    if flags is None:
        return np.zeros(len(until), int)
    flags = np.asarray(flags, bool)
    return (flags & (np.arange(flags.shape[1])[None] < until[:, None])).sum(1)


def compare(task, agents: Mapping[str, Policy], seed: int, episodes: int,
            steps: int | None = None, progress: bool = True, reset=None,
            devices: int | None = None, latency: bool = True) -> tuple[dict, dict]:
    """Run every agent on the same episode keys; returns (JSON-ready results, raw).
    The results hold a summary row and the per-episode records of every agent."""
    from tqdm.auto import tqdm

    key = jax.random.key(seed)
    rows, raw = {}, {}
    for name, policy in tqdm(agents.items(), desc=f"evaluate {task.name}", unit="agent",
                             disable=not progress):
        rows[name], raw[name] = evaluate_agent(task, policy, key, episodes, steps,
                                               reset=reset, devices=devices,
                                               latency=latency)
    return {"agents": rows, "task": task.name, "seed": seed, "episodes": episodes,
            "episode_records": {n: raw[n]["records"] for n in raw}}, raw


def build_agents(task, names: list[str], stack, data, policy: str | None = None,
                 ctx=None) -> dict[str, Policy]:
    """name -> policy for shipped agent names (or .toml paths); agents that name the same
    bank share it and its graph. `policy`: a distilled System 1 policy's directory.
    `ctx`: an `agents.Context` of the same task, stack and data whose banks and graphs
    earlier agents already built."""
    from hplan import agents as A

    if ctx is None:
        ctx = A.Context(task, stack, data, policy=policy)
    elif (ctx.task is not task or ctx.stack is not stack or ctx.data is not data
          or (policy is not None and ctx.policy != policy)):
        raise ValueError("build_agents: ctx was built for another task, stack, data or "
                         "policy. Fix: pass the Context made from these, or none")
    out = {}
    for name in names:
        out[name] = A.make(name, task, stack, data, ctx=ctx)[0]
    return out


COLUMNS = ["success_rate", "spl", "mean_steps", "path_ratio", "guardrail_violations",
           "cuts_per_episode", "surprises_per_1k_steps", "plan_ms_per_step", "episode_s",
           "compile_s", "model_evals_per_step"]


def format_table(results: dict) -> str:
    rows = results["agents"]
    width = max(len(n) for n in rows) + 2
    head = "agent".ljust(width) + " ".join(f"{c[:12]:>12}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(name.ljust(width) + " ".join(
            f"{r[c]:>12.4g}" if np.isfinite(r[c]) else f"{'n/a':>12}" for c in COLUMNS))
    return "\n".join(lines)
