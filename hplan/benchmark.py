"""Evaluate agents side by side: success, steps, path ratio, guardrails, time and compute.

Every agent's whole batch of episodes is one jitted program (`mpc.make_evaluate`).
Timing: `plan_ms_per_step` is the median wall time of a single-episode program after
compilation, divided by its control steps (it includes the cheap env step); `episode_s`
is that median for the whole episode; `compile_s` is the first call minus the median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

import jax
import numpy as np

from hplan import mpc
from hplan.mpc import Policy
from hplan.tasks import Task


def optimal_steps(task: Task, start_pos: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """BFS-optimal steps per episode: cell distances through every target / max_step."""
    lay = task.layout
    idx = lay.cell_index()
    dist = lay.distances()
    cells = np.floor(np.concatenate([start_pos[:, None], targets], axis=1)).astype(int)
    ids = idx[cells[..., 0], cells[..., 1]]  # [N, K+1]
    legs = dist[ids[:, :-1], ids[:, 1:]]
    return legs.sum(1) / task.env.config.max_step


def evaluate_agent(task: Task, policy: Policy, key: jax.Array, episodes: int,
                   steps: int | None = None, repeats: int = 3) -> tuple[dict, dict]:
    """(summary row, raw per-episode arrays) for one agent."""
    steps = steps or task.episode_length
    run = jax.jit(mpc.make_evaluate(task, policy, steps))
    keys = jax.random.split(key, episodes)
    t0 = time.perf_counter()
    out = jax.device_get(run(keys))
    batch_first = time.perf_counter() - t0
    # Single-episode latency: its own program, timed after its compilation.
    one = jax.jit(mpc.make_evaluate(task, policy, steps))
    t0 = time.perf_counter()
    jax.block_until_ready(one(keys[:1]))
    first = time.perf_counter() - t0
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(one(keys[r + 1: r + 2] if r + 2 <= episodes else keys[:1]))
        times.append(time.perf_counter() - t0)
    episode_s = statistics.median(times)
    success = np.asarray(out["success"], bool)
    s0 = jax.vmap(task.env.reset)(jax.vmap(lambda k: jax.random.split(k)[0])(keys))
    opt = optimal_steps(task, np.asarray(s0.env_state.pos), np.asarray(s0.env_state.targets))
    taken = np.asarray(out["steps_to_goal"], float)
    ratio = taken[success] / np.maximum(opt[success], 1)
    evals = out.get("n_model", out.get("n_evals"))
    row = {
        "success_rate": float(success.mean()),
        "mean_steps": float(taken[success].mean()) if success.any() else float("nan"),
        "path_ratio": float(ratio.mean()) if success.any() else float("nan"),
        "guardrail_violations": float(np.asarray(out["violations"]).mean()),
        "plan_ms_per_step": 1e3 * episode_s / steps,
        "episode_s": episode_s,
        "compile_s": max(first - episode_s, 0.0),
        "batch_s": batch_first,
        "model_evals_per_step": float(np.mean(evals)) if evals is not None else float("nan"),
        "episodes": episodes,
    }
    return row, out


def compare(task: Task, agents: Mapping[str, Policy], seed: int, episodes: int,
            steps: int | None = None, progress: bool = True) -> tuple[dict, dict]:
    """Run every agent on the same episode keys; returns (JSON-ready results, raw)."""
    from tqdm.auto import tqdm

    key = jax.random.key(seed)
    rows, raw = {}, {}
    for name, policy in tqdm(agents.items(), desc=f"evaluate {task.name}", unit="agent",
                             disable=not progress):
        rows[name], raw[name] = evaluate_agent(task, policy, key, episodes, steps)
    return {"agents": rows, "task": task.name, "seed": seed, "episodes": episodes}, raw


COLUMNS = ["success_rate", "mean_steps", "path_ratio", "guardrail_violations",
           "plan_ms_per_step", "episode_s", "compile_s", "model_evals_per_step"]


def format_table(results: dict) -> str:
    rows = results["agents"]
    width = max(len(n) for n in rows) + 2
    head = "agent".ljust(width) + " ".join(f"{c[:12]:>12}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(name.ljust(width) + " ".join(f"{r[c]:>12.4g}" for c in COLUMNS))
    return "\n".join(lines)
