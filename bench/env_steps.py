"""Environment throughput: env-steps/s and compile time for vmapped batches, any task.

Defaults (the pure-JAX maze, task large): batches 1, 256 and 4096 with 20000, 2000 and
500 steps; target >= 2e6 env-steps/s at batch 4096 on a 2-core CPU; written to
bench/results/env_steps_<cpu|gpu>.json. Any other task (the action size comes from the
env) is written to bench/results/env_steps_<task>_<cpu|gpu>.json.
Run: .venv/bin/python bench/env_steps.py [--task large] [--batches 1,64,256]
     [--steps 200 | --steps 400,100,50] [--repeats 5] [--backend mjx] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp

if __package__ in (None, ""):  # run as a file: make the repository root importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table, timeit, write
from hplan import tasks

DEFAULT_TASK = "large"
DEFAULT_PLAN = ((1, 20_000), (256, 2_000), (4096, 500))


def make_run(env, batch: int, steps: int):
    size = env.action_size

    @jax.jit
    def run(key):
        k_reset, k_act = jax.random.split(key)
        states = jax.vmap(env.reset)(jax.random.split(k_reset, batch))
        # One random action per env, turned each step (for 2-D actions a rotation): cheap,
        # so the env dominates.
        a0 = jax.random.uniform(k_act, (batch, size), minval=-1, maxval=1)
        sign = jnp.where(jnp.arange(size) % 2 == 0, -1.0, 1.0)
        turned = sign * jnp.roll(a0, 1, axis=-1)

        def body(s, t):
            a = jnp.clip(jnp.cos(0.3 * t) * a0 + jnp.sin(0.3 * t) * turned, -1.0, 1.0)
            return jax.vmap(env.step)(s, a), None

        s, _ = jax.lax.scan(body, states, jnp.arange(steps, dtype=jnp.float32))
        return s  # the whole final State, so nothing the env computes is dead code

    return run


def _ints(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers; write e.g. "
                                         "1,64,256") from None
    if not out or min(out) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers")
    return out


def plan(batches: list[int] | None, steps: list[int] | None) -> list[tuple[int, int]]:
    """(batch, steps) rows: the defaults, or the given batches with one step count for
    all (default 100) or one per batch."""
    if batches is None and steps is None:
        return list(DEFAULT_PLAN)
    batches = batches or [b for b, _ in DEFAULT_PLAN]
    steps = steps or [100]
    if len(steps) == 1:
        steps = steps * len(batches)
    if len(steps) != len(batches):
        raise SystemExit(f"--steps has {len(steps)} values for {len(batches)} batches; give "
                         "one, or one per batch")
    return list(zip(batches, steps, strict=True))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--batches", type=_ints, default=None, help="e.g. 1,64,256")
    p.add_argument("--steps", type=_ints, default=None,
                   help="steps per run: one value, or one per batch")
    p.add_argument("--repeats", type=int, default=5, help="timed runs after the first")
    p.add_argument("--backend", default=None,
                   help="override the task's env_args backend (physics mazes: mjx, spring); "
                        "the result file's name then ends in _<backend>")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    task = tasks.load(args.task)
    if args.backend:
        spec = dataclasses.replace(task.spec, env_args={**task.spec.env_args,
                                                        "backend": args.backend})
        task = tasks.build(spec, source=task.source, base_dir=task.base_dir)
    env = task.env
    rows = []
    for batch, steps in plan(args.batches, args.steps):
        run = make_run(env, batch, steps)
        first, med, times = timeit(lambda run=run: run(jax.random.key(0)), args.repeats)
        rows.append({"batch": batch, "steps": steps, "compile_s": first - med,
                     "median_s": med, "env_steps_per_s": batch * steps / med,
                     "ms_per_step": 1e3 * med / steps, "timings_s": times})
        print(f"batch {batch}: {rows[-1]['env_steps_per_s']:,.0f} env-steps/s, compile "
              f"{first - med:.1f} s", flush=True)
    unwrapped = env.unwrapped
    backend = getattr(getattr(unwrapped, "config", None), "backend", None)
    print(f"env throughput on task {args.task!r} (env {task.spec.env}"
          f"{', backend ' + backend if backend else ''}), jax backend {jax.default_backend()}")
    print(table(rows, ["batch", "steps", "compile_s", "median_s", "env_steps_per_s",
                       "ms_per_step"]))
    payload = {"task": args.task, "env": task.spec.env, "env_args": task.spec.env_args,
               "physics_backend": backend, "action_size": env.action_size,
               "observation_size": env.observation_size, "rows": rows}
    walls = getattr(unwrapped, "walls", None)
    if hasattr(walls, "max_pairs"):
        payload["wall_boxes"] = int(len(walls.boxes))
        payload["max_geom_pairs"] = int(walls.max_pairs)
    if args.task == DEFAULT_TASK:
        payload["target_steps_per_s_at_4096"] = 2e6
    name = "env_steps" if args.task == DEFAULT_TASK else f"env_steps_{args.task}"
    if args.backend:
        name += f"_{args.backend}"
    out = write(name, payload, args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
