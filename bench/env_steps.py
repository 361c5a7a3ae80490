"""Maze environment throughput: env-steps/s for vmapped batches of 1, 256 and 4096.

Target: >= 2e6 env-steps/s at batch 4096 on a 2-core CPU.
Run: .venv/bin/python bench/env_steps.py [--task large] [--out FILE]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

if __package__ in (None, ""):  # run as a file: make the repository root importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table, timeit, write
from hplan import tasks


def make_run(env, batch: int, steps: int):
    @jax.jit
    def run(key):
        k_reset, k_act = jax.random.split(key)
        states = jax.vmap(env.reset)(jax.random.split(k_reset, batch))
        # One random action per env, rotated each step: cheap, so the env dominates.
        a0 = jax.random.uniform(k_act, (batch, 2), minval=-1, maxval=1)

        def body(s, t):
            c, sn = jnp.cos(0.3 * t), jnp.sin(0.3 * t)
            a = jnp.stack([c * a0[:, 0] - sn * a0[:, 1], sn * a0[:, 0] + c * a0[:, 1]], -1)
            return jax.vmap(env.step)(s, a), None

        s, _ = jax.lax.scan(body, states, jnp.arange(steps, dtype=jnp.float32))
        return s  # the whole final State, so nothing the env computes is dead code

    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", default="large")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    env = tasks.load(args.task).env
    rows = []
    for batch, steps in ((1, 20_000), (256, 2_000), (4096, 500)):
        run = make_run(env, batch, steps)
        first, med, times = timeit(lambda run=run: run(jax.random.key(0)))
        rows.append({"batch": batch, "steps": steps, "compile_s": first - med,
                     "median_s": med, "env_steps_per_s": batch * steps / med,
                     "timings_s": times})
    print(f"maze env throughput on task {args.task!r}, backend {jax.default_backend()}")
    print(table(rows, ["batch", "steps", "compile_s", "median_s", "env_steps_per_s"]))
    out = write("env_steps", {"task": args.task, "target_steps_per_s_at_4096": 2e6,
                              "rows": rows}, args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
