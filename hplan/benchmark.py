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
from typing import NamedTuple

import jax
import numpy as np

from hplan import mpc
from hplan.mpc import Policy
from hplan.tasks import Task


def optimal_steps(task: Task, start_pos: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Optimal steps per episode from its start through every target (`Geodesic`: the
    point mass moves up to `max_step` along both axes at once, round walls)."""
    geo = _geodesic(task)
    pts = np.concatenate([start_pos[:, None], targets], axis=1)  # [N, K+1, 2]
    legs = geo.cells(pts[:, :-1].reshape(-1, 2), pts[:, 1:].reshape(-1, 2))
    return legs.reshape(len(pts), -1).sum(1) / task.env.config.max_step


def bfs_steps(task: Task, start_pos: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The older optimum: 4-connected cell BFS through every target / max_step (longer
    than `optimal_steps`, which lets the agent move diagonally)."""
    lay = task.layout
    idx = lay.cell_index()
    dist = lay.distances()
    cells = np.floor(np.concatenate([start_pos[:, None], targets], axis=1)).astype(int)
    ids = idx[cells[..., 0], cells[..., 1]]  # [N, K+1]
    legs = dist[ids[:, :-1], ids[:, 1:]]
    return legs.sum(1) / task.env.config.max_step


def _geodesic(task: Task):
    from hplan.layout import Geodesic

    geo = getattr(task, "_geodesic", None)
    if geo is None:
        geo = Geodesic(task.layout)
        object.__setattr__(task, "_geodesic", geo)
    return geo


def episode_records(task: Task, out: dict) -> list[dict]:
    """One JSON-ready record per episode: start, goal, success, steps, optimal steps,
    final distance to the goal, and the cell where the agent spent the most steps."""
    pos = np.asarray(out["positions"])
    goal = np.asarray(out["goal"])
    opt = optimal_steps(task, pos[:, 0], np.asarray(out["targets"]))
    recs = []
    for e in range(len(pos)):
        cells, counts = np.unique(np.floor(pos[e]).astype(int), axis=0, return_counts=True)
        steps = int(out["steps_to_goal"][e])
        recs.append({"start": pos[e, 0].round(3).tolist(), "goal": goal[e].round(3).tolist(),
                     "success": bool(out["success"][e]), "steps": steps,
                     "optimal_steps": float(opt[e]),
                     "final_distance": float(np.linalg.norm(pos[e, -1] - goal[e])),
                     "most_visited_cell": cells[np.argmax(counts)].tolist(),
                     "most_visited_steps": int(counts.max())})
    return recs


def spl(success: np.ndarray, optimal: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """Success weighted by path length, per episode: S * optimal / max(optimal, taken)."""
    taken = np.where(success, taken, np.inf)
    return np.where(success, optimal / np.maximum(np.maximum(optimal, taken), 1e-9), 0.0)


def evaluate_agent(task: Task, policy: Policy, key: jax.Array, episodes: int,
                   steps: int | None = None, repeats: int = 3,
                   make_eval=mpc.make_evaluate, reset=None) -> tuple[dict, dict]:
    """(summary row, raw per-episode arrays) for one agent. `reset(key, i)`: the start
    of episode `i` (default: the task's own draw)."""
    steps = steps or task.episode_length
    run = jax.jit(make_eval(task, policy, steps, reset=reset))
    keys = jax.random.split(key, episodes)
    t0 = time.perf_counter()
    out = jax.device_get(run(keys))
    batch_first = time.perf_counter() - t0
    # Single-episode latency: its own program, timed after its compilation.
    one = jax.jit(make_eval(task, policy, steps, reset=reset))
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
    start, targets = np.asarray(out["positions"][:, 0]), np.asarray(out["targets"])
    opt = optimal_steps(task, start, targets)
    bfs = bfs_steps(task, start, targets)
    taken = np.asarray(out["steps_to_goal"], float)
    ratio = taken[success] / np.maximum(opt[success], 1)
    ratio_bfs = taken[success] / np.maximum(bfs[success], 1)
    evals = out.get("n_model")
    if evals is None and "n_evals" in out:  # oracle MPC counts rollouts: x horizon steps
        evals = np.asarray(out["n_evals"]) * getattr(policy, "horizon", 1)
    out["spl"] = spl(success, opt, taken)
    out["records"] = episode_records(task, out)
    row = {
        "success_rate": float(success.mean()),
        "spl": float(out["spl"].mean()),
        "mean_steps": float(taken[success].mean()) if success.any() else float("nan"),
        "path_ratio": float(ratio.mean()) if success.any() else float("nan"),
        "path_ratio_bfs": float(ratio_bfs.mean()) if success.any() else float("nan"),
        "guardrail_violations": float(np.asarray(out["violations"]).mean()),
        "plan_ms_per_step": 1e3 * episode_s / steps,
        "episode_s": episode_s,
        "compile_s": max(first - episode_s, 0.0),
        "batch_s": batch_first,
        "model_evals_per_step": float(np.mean(evals)) if evals is not None else float("nan"),
        "episodes": episodes,
    }
    return row, out


def compare(task: Task, agents: Mapping[str, tuple], seed: int, episodes: int,
            steps: int | None = None, progress: bool = True, reset=None
            ) -> tuple[dict, dict]:
    """Run every agent on the same episode keys; returns (JSON-ready results, raw).
    The results hold a summary row and the per-episode records of every agent."""
    from tqdm.auto import tqdm

    key = jax.random.key(seed)
    rows, raw = {}, {}
    for name, (policy, make_eval) in tqdm(agents.items(), desc=f"evaluate {task.name}",
                                          unit="agent", disable=not progress):
        rows[name], raw[name] = evaluate_agent(task, policy, key, episodes, steps,
                                               make_eval=make_eval, reset=reset)
    return {"agents": rows, "task": task.name, "seed": seed, "episodes": episodes,
            "episode_records": {n: raw[n]["records"] for n in raw}}, raw


COLUMNS = ["success_rate", "spl", "mean_steps", "path_ratio", "guardrail_violations",
           "plan_ms_per_step", "episode_s", "compile_s", "model_evals_per_step"]


def format_table(results: dict) -> str:
    rows = results["agents"]
    width = max(len(n) for n in rows) + 2
    head = "agent".ljust(width) + " ".join(f"{c[:12]:>12}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(name.ljust(width) + " ".join(f"{r[c]:>12.4g}" for c in COLUMNS))
    return "\n".join(lines)


# -- the `hplan bench` job ------------------------------------------------------------------
def layout_task(path: str, start=None, goal=None, min_distance: int | None = None,
                episode_length: int | None = None) -> Task:
    """A task for any ASCII layout file, sized from the layout so it needs no tuning."""
    from pathlib import Path

    from hplan import tasks
    from hplan.layout import load_layout

    lay = load_layout(path)
    maxd = int(lay.distances().max())
    fixed = (start is not None and goal is not None) or (
        start is None and goal is None and lay.start is not None and lay.goal is not None)
    spec = tasks.TaskSpec(
        name=Path(path).stem, layout=lay.text,
        episode_length=episode_length or int(np.clip(3 * maxd / 0.5, 60, 800)),
        start_goal="fixed" if fixed else "random",
        min_distance=0 if fixed else (min_distance if min_distance is not None
                                      else min(15, max(1, maxd // 2))),
        start=tuple(start) if start else None, goal=tuple(goal) if goal else None)
    return tasks.build(spec, source=str(path))


def get_stack(task: Task, cache: str, episodes: int = 4096, wm_steps: int = 8000,
              critic_steps: int = 20000, seed: int = 0, show: bool = True,
              lr_final: float | None = None, critic_nodes: int | None = None):
    """Reuse the cached stack for this layout, or collect data and train one.

    `lr_final` (default: `TrainConfig`'s) is where the world model's cosine-decayed rate
    ends, as a fraction of the initial rate (1: constant); it is in the cache name unless
    1, and `critic_nodes` (the critic's graph size) unless left at the default."""
    import dataclasses
    from pathlib import Path

    from hplan import critic, data, stack, wm_train
    from hplan.data import layout_hash
    from hplan.models import WMConfig

    wm = WMConfig()
    if lr_final is None:
        lr_final = wm_train.TrainConfig().lr_final
    cc = dataclasses.replace(critic.CriticConfig(), steps=critic_steps, seed=seed)
    if critic_nodes is not None:
        cc = dataclasses.replace(cc, nodes=critic_nodes)
    extra = (f"-lr{lr_final:g}" if lr_final != 1.0 else "") + (
        f"-n{cc.nodes}" if critic_nodes is not None else "")
    out = Path(cache) / (f"{task.name}-{layout_hash(task)}-s{seed}-{wm_steps}-{critic_steps}"
                         f"-h{wm.hidden}{extra}")
    if (out / "metrics.json").is_file():
        st = stack.load(out, task)
        return st, data.load(out / "data", task), out
    if (out / "data" / "meta.json").is_file():
        ds = data.load(out / "data", task)
    else:
        ds = data.collect(task, jax.random.key(seed), episodes, 64)
        data.save(ds, out / "data")
    tc = dataclasses.replace(wm_train.TrainConfig(), steps=wm_steps, seed=seed,
                             lr_final=lr_final)
    return stack.train(task, ds, out, wm, tc, cc, show=show), ds, out


def build_agents(task: Task, names: list[str], stack, data) -> dict[str, tuple]:
    """name -> (policy, make_evaluate). `flat-true` is flat MPC on the true dynamics."""
    import optax

    from hplan import agent, agents, mpc
    from hplan import planners as P

    known = ["flat-true", *agents.available()]
    out, banks = {}, {}
    for name in names:
        if name == "flat-true":
            cfg = agents.load_agent("flat-mpc")  # same budget as the learned flat agent
            planner = P.gradient(optax.adam(cfg.lr), restarts=cfg.restarts,
                                 init_noise=cfg.init_noise)
            pol = mpc.flat_mpc(task, planner, mpc.MPCConfig(cfg.horizon, cfg.iters))
            out[name] = (_WithHorizon(pol.init, pol.step, cfg.horizon), mpc.make_evaluate)
            continue
        if name not in agents.available():
            raise ValueError(f"unknown agent {name!r}. Known: {', '.join(known)}. "
                             "Fix: pick from these or add agents/NAME.toml")
        cfg = agents.load_agent(name)
        key = (cfg.bank, cfg.edges) if agent.needs_bank(cfg) else None
        if key not in banks:  # agents with the same bank share it (and its graph)
            banks[key] = agent.graph_for(cfg, task, stack, data)
        out[name] = (agent.build(cfg, task, stack, banks[key]), agent.make_evaluate)
    return out


class _WithHorizon(NamedTuple):
    """A Policy that also says its rollout length, to count model evaluations."""

    init: object
    step: object
    horizon: int


def plot(task: Task, results: dict, raw: dict, stack, out: str, per_agent: int = 3):
    """Layout with a few trajectories per agent and the subgoals each level set."""
    import matplotlib.pyplot as plt

    from hplan.render import _save, draw_task

    names = list(raw)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.4), squeeze=False)
    w, b = stack.probe if stack.probe is not None else (None, None)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes[0], names, strict=True):
        draw_task(ax, task)
        r = raw[name]
        for e in range(min(per_agent, len(r["positions"]))):
            c = colors[e % len(colors)]
            pos = np.asarray(r["positions"][e])
            t_end = int(r["steps_to_goal"][e]) if r["success"][e] else len(pos) - 1
            ax.plot(pos[: t_end + 1, 1], pos[: t_end + 1, 0], "-", c=c, lw=1.4)
            ax.plot(pos[0, 1], pos[0, 0], "o", c=c, ms=5)
            g = np.asarray(r["goal"][e]) if "goal" in r else None
            if g is not None:
                ax.plot(g[1], g[0], "*", c=c, ms=12, mec="k")
            if "subgoal" in r and w is not None:
                sg = np.asarray(r["subgoal"][e][:t_end]) @ w + b
                ax.scatter(sg[:, 1], sg[:, 0], s=10, color=c, marker="x", alpha=0.6)
        row = results["agents"][name]
        ax.set_title(f"{name}: success {row['success_rate']:.0%}, SPL "
                     f"{row['spl']:.2f}", fontsize=9)
    fig.suptitle(f"{task.name}: trajectories (lines), subgoals (x), goals (*)", fontsize=10)
    return _save(fig, out)
