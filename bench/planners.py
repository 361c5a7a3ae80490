"""Planner benchmark: latency, gradient vs sampling in mazes, flat true-model MPC success.

(a) latency of one plan (median after compile) and compile time, horizon 16/64, batch
    1/256, every planner at the same budget of cost evaluations per plan;
(b) flat MPC success per maze task for every planner at matched evaluations per control
    step (the true model, so differences are the optimiser's alone);
(c) flat true-model MPC with the default planner (CEM) on every shipped task, at the
    matched budget and at 4x budget with a 2x horizon; greedy distance costs are expected
    to fail where the straight line leads into a dead end (trap, large, maze32);
(d) the LQ known-optimum gaps of the test configurations.

`amortized_ms_per_step` is the wall time of a whole jitted batch of episodes divided by
episodes x steps (planning plus env), i.e. throughput, not single-episode latency; the
latency of one plan is in (a). `load_avg` records competing load on the machine.

Run: .venv/bin/python -m bench.planners [--episodes 32] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.common import table, timeit, write
from hplan import tasks
from hplan.agents.actuator import MPCConfig
from hplan.agents.true_dynamics import true_cost, true_mpc
from hplan.eval.runner import make_evaluate
from hplan.planning import planners as P

BUDGET = 256  # cost evaluations per plan / per control step


def planners(budget: int = BUDGET) -> dict[str, tuple[P.Planner, int]]:
    """name -> (planner, iterations), every one spending `budget` evaluations."""
    adam = optax.adam(0.1)
    return {
        "gradient": (P.gradient(adam, restarts=8, init_noise=0.5), budget // 8),
        "cem": (P.cem(budget // 4, 8), 4),
        "mppi": (P.mppi(budget // 4, 0.5), 4),
        "hybrid": (P.hybrid(P.cem(budget // 8, 4), P.gradient(adam, restarts=8), 4),
                   4 + budget // 16),
    }


def time_plan(task: tasks.Task, planner: P.Planner, iters: int, horizon: int, batch: int,
              repeats: int) -> tuple[float, float, list[float]]:
    """Time one vmapped plan over `batch` random (position, target) pairs of `task`."""
    k_s, k_g, k_p = jax.random.split(jax.random.key(horizon + batch), 3)
    env = task.env.unwrapped
    starts = jax.vmap(env.explore_reset)(jax.random.split(k_s, batch))
    goals = jax.vmap(env.explore_reset)(jax.random.split(k_g, batch)).metrics["xy"]
    keys = jax.random.split(k_p, batch)
    init = jnp.zeros((batch, horizon, 2))
    cost = true_cost(task, MPCConfig(horizon=horizon, running=1.0, terminal=0.0))

    def one(state, goal, a0, key):
        state = state.replace(info={**state.info, "target_xy": goal})
        return P.solve(planner, lambda a: cost(state, a), a0, key, iters)

    run = jax.jit(jax.vmap(one))
    return timeit(lambda: run(starts, goals, init, keys), repeats)


def latency(repeats: int) -> list[dict]:
    task = tasks.load("medium")
    rows = []
    for horizon in (16, 64):
        for batch in (1, 256):
            for name, (planner, iters) in planners().items():
                first, med, times = time_plan(task, planner, iters, horizon, batch, repeats)
                rows.append({"planner": name, "horizon": horizon, "batch": batch,
                             "evals": BUDGET, "compile_s": first - med, "median_ms": 1e3 * med,
                             "ms_per_problem": 1e3 * med / batch, "timings_s": times})
                print(f"  latency {name} H={horizon} B={batch}: {1e3 * med:.1f} ms", flush=True)
    return rows


def mpc_success(task: tasks.Task, planner: P.Planner, iters: int, horizon: int,
                episodes: int) -> dict:
    policy = true_mpc(task, MPCConfig(horizon=horizon, iters=iters, running=1.0,
                                      terminal=0.0), planner)
    run = jax.jit(make_evaluate(task, policy))
    keys = jax.random.split(jax.random.key(0), episodes)
    t0 = time.perf_counter()
    jax.block_until_ready(run(keys))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.device_get(run(keys))
    wall = time.perf_counter() - t0
    ok = out["success"]
    steps = out["steps_to_goal"][ok]
    return {"task": task.name, "episodes": episodes, "horizon": horizon,
            "evals_per_step": int(out["info"]["n_evals"][0, 0]), "success": float(ok.mean()),
            "median_steps": float(statistics.median(steps)) if len(steps) else None,
            "violations": int(out["violations"].sum()), "compile_s": first - wall,
            "amortized_ms_per_step": 1e3 * wall / (episodes * task.episode_length),
            "episode_batch_s": wall}


def lq_gaps() -> list[dict]:
    from hplan.planning import lq as T

    rows = []
    for name, (make, iters, tol) in T.LQ_CASES.items():
        planner = make()
        run = jax.jit(lambda x0, k, p=planner, n=iters: P.solve(p, T.lq_cost(x0),
                                                                jnp.zeros((T.H, 1)), k, n))
        gaps = []
        for seed in range(3):
            x0 = T.lq_x0(seed)
            _, c_star = T.lq_optimum(x0)
            _, info = run(jnp.asarray(x0, jnp.float32), jax.random.key(seed))
            gaps.append((float(info["cost"]) - c_star) / c_star)
        rows.append({"planner": name, "iters": iters, "n_evals": int(info["n_evals"]),
                     "tolerance": tol, "max_gap": max(gaps), "gaps": gaps})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--episodes", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    print(f"backend {jax.default_backend()}, {jax.devices()}")

    print("(d) LQ known optimum")
    lq = lq_gaps()
    print(table(lq, ["planner", "iters", "n_evals", "tolerance", "max_gap"]))

    print("(a) plan latency")
    lat = latency(args.repeats)
    print(table(lat, ["planner", "horizon", "batch", "evals", "compile_s", "median_ms",
                      "ms_per_problem"]))

    print(f"(b) flat true-model MPC, {BUDGET} evaluations per control step, horizon 16")
    names = list(tasks.available())
    matched = []
    for name in names:
        task = tasks.load(name)
        for pname, (planner, iters) in planners().items():
            row = {"planner": pname, **mpc_success(task, planner, iters, 16, args.episodes)}
            matched.append(row)
            print(f"  {name} {pname}: success {row['success']:.2f}", flush=True)
    print(table(matched, ["task", "planner", "evals_per_step", "success", "median_steps",
                          "violations", "amortized_ms_per_step", "compile_s"]))

    print("(c) flat true-model MPC (CEM) on every task: matched budget and 4x budget, H=32")
    flat = []
    for name in names:
        task = tasks.load(name)
        base = next(r for r in matched if r["task"] == task.name and r["planner"] == "cem")
        big = mpc_success(task, P.cem(128, 16), 8, 32, args.episodes)
        flat.append({"task": task.name, "success": base["success"],
                     "success_4x_budget_H32": big["success"],
                     "median_steps": base["median_steps"], "violations": base["violations"],
                     "violations_4x": big["violations"],
                     "amortized_ms_per_step": base["amortized_ms_per_step"],
                     "amortized_ms_per_step_4x": big["amortized_ms_per_step"]})
        print(f"  {name}: {base['success']:.2f} / {big['success']:.2f}", flush=True)
    print(table(flat, ["task", "success", "success_4x_budget_H32", "median_steps",
                       "violations", "violations_4x", "amortized_ms_per_step",
                       "amortized_ms_per_step_4x"]))

    total = time.perf_counter() - t_start
    out = write("planners", {
        "budget_evals": BUDGET, "episodes_per_task": args.episodes,
        "planner_configs": {
            "gradient": "adam(0.1), 8 restarts, init_noise 0.5, 32 iters",
            "cem": "64 samples, 8 elites, std 0.5->min 0.05, momentum 0.1, 4 iters",
            "mppi": "64 samples, temperature 0.5 (x cost std), 4 iters",
            "hybrid": "cem(32, 4 elites) x 4 iters, then adam(0.1) 8 restarts x 16 iters",
            "cem_4x": "128 samples, 16 elites, 8 iters, horizon 32",
        },
        "lq": lq, "latency": lat, "matched_mpc": matched, "flat_mpc": flat,
        "medians": {
            "latency_ms_H16_B1": {r["planner"]: r["median_ms"] for r in lat
                                  if r["horizon"] == 16 and r["batch"] == 1},
            "success_by_planner": {pn: float(np.median([r["success"] for r in matched
                                                         if r["planner"] == pn]))
                                   for pn in planners()},
        },
        "total_s": total, "load_avg": {"start": load_start, "end": os.getloadavg()},
    }, args.out)
    print(f"wrote {out} in {total:.0f} s")


if __name__ == "__main__":
    main()
