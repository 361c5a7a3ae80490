"""Cost of a hierarchical control step vs a flat one with the same low-level horizon.

Target: a hier-2 control step costs <= 1.5x a flat control step of the same level-0
horizon. Every agent's single-episode program is compiled first, then the agents
are timed in interleaved rounds (so machine noise hits all of them alike) and compared as
ratios of medians. Run: .venv/bin/python bench/step_cost.py [--task trap]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax

from bench.common import table, write
from hplan import agents, tasks
from hplan.eval.runner import make_evaluate
from hplan.train import pipeline


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", default="trap")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    task = tasks.load(args.task)
    st, ds, _ = pipeline.get_stack(task, args.cache)
    hier = agents.load_agent("hier-2")
    flat = agents.load_agent("flat-mpc-critic")
    h, hf = hier.actuator.horizon, flat.actuator.horizon

    def at(cfg, horizon):
        return dataclasses.replace(cfg, actuator=dataclasses.replace(cfg.actuator,
                                                                     horizon=horizon))

    configs = {
        "hier-2": hier,
        f"flat-mpc-critic (H={h})": at(flat, h),
        f"flat-mpc-critic (H={hf})": flat,
        f"flat-mpc (H={h})": at(agents.load_agent("flat-mpc"), h),
    }
    ctx = agents.Context(task, st, ds)
    keys = jax.random.split(jax.random.key(0), 1)
    progs, compile_s = {}, {}
    for name, cfg in configs.items():
        run = jax.jit(make_evaluate(task, agents.build(cfg, ctx)))
        t0 = time.perf_counter()
        jax.block_until_ready(run(keys))
        compile_s[name] = time.perf_counter() - t0
        progs[name] = run
    times = {name: [] for name in progs}
    for _ in range(args.rounds):
        for name, run in progs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(run(keys))
            times[name].append(time.perf_counter() - t0)
    ref = f"flat-mpc-critic (H={h})"
    med = {n: statistics.median(t) for n, t in times.items()}
    rows = [{"agent": n, "ms_per_step": 1e3 * med[n] / task.episode_length,
             "ratio_vs_flat_critic_same_H": med[n] / med[ref],
             "first_call_s": compile_s[n]} for n in progs]
    print(f"{task.name}: {task.episode_length} control steps per episode, median of "
          f"{args.rounds} interleaved rounds")
    print(table(rows, list(rows[0])))
    out = write("step_cost", {"task": task.name, "rounds": args.rounds, "rows": rows,
                              "times_s": times}, args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
