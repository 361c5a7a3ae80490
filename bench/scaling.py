"""Data-parallel scaling: world-model training samples/s and evaluation episodes/s on 1, 2,
4 (, 8) devices, the same global batch split over a `data` mesh (`hplan.sharding`).

On this CPU the devices are forced (`XLA_FLAGS=--xla_force_host_platform_device_count`)
and share the machine's cores: the numbers measure the SPMD program's overhead (the
partitioning, the all-reduce), not a speed-up; on a multi-GPU machine they measure the
scaling efficiency. Variants run interleaved and are compared as ratios of medians.
Run: .venv/bin/python bench/scaling.py [--devices 1,2,4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--devices", default="1,2,4")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    counts = [int(c) for c in args.devices.split(",")]
    flag = f"--xla_force_host_platform_device_count={max(counts)}"
    if "jax" not in sys.modules and flag not in os.environ.get("XLA_FLAGS", "") \
            and os.environ.get("JAX_PLATFORMS", "cpu") == "cpu":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    import dataclasses
    import functools

    import jax

    from bench.common import table, write
    from hplan import data, sharding, tasks
    from hplan.agents import MPCConfig
    from hplan.agents.true_dynamics import true_mpc
    from hplan.eval.runner import make_evaluate, shard_keys
    from hplan.wm import jepa
    from hplan.wm.models import WMConfig

    counts = [c for c in counts if c <= len(jax.devices())]
    task = tasks.load("large")
    ds = data.collect(task, jax.random.key(0), 1024, 64)
    wm = WMConfig()
    tc = dataclasses.replace(jepa.TrainConfig(), batch=args.batch, chunk=20)
    progs = {}
    for n in counts:
        m = sharding.mesh(n)
        graph, opt, state = jepa.init_state(jepa.build_model((2,), 2, wm, 0), tc)
        obs, acts = sharding.replicate((ds.obs, ds.actions), m)
        fn, data = jepa.make_chunk(graph, opt, obs, acts, wm, tc, mesh=m)
        chunk = functools.partial(jax.jit(fn), data=data)
        state = sharding.replicate(state, m)
        jax.block_until_ready(chunk(state))  # compile
        pol = true_mpc(task, MPCConfig(horizon=12, iters=8, running=1.0, terminal=0.0))
        ev = jax.jit(make_evaluate(task, pol, steps=50))
        keys = shard_keys(jax.random.split(jax.random.key(1), args.episodes), n)
        jax.block_until_ready(ev(keys))
        progs[n] = (chunk, state, ev, keys)
    train_t = {n: [] for n in counts}
    eval_t = {n: [] for n in counts}
    for _ in range(args.rounds):
        for n, (chunk, state, ev, keys) in progs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(chunk(state))
            train_t[n].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            jax.block_until_ready(ev(keys))
            eval_t[n].append(time.perf_counter() - t0)
    base_t, base_e = statistics.median(train_t[counts[0]]), statistics.median(eval_t[counts[0]])
    rows = []
    for n in counts:
        mt, me = statistics.median(train_t[n]), statistics.median(eval_t[n])
        rows.append({"devices": n, "train_samples_per_s": tc.chunk * tc.batch / mt,
                     "train_ratio_vs_1": base_t / mt,
                     "eval_episodes_per_s": args.episodes / me,
                     "eval_ratio_vs_1": base_e / me})
    print(f"backend {jax.default_backend()}, {len(jax.devices())} devices "
          f"({jax.devices()[0].device_kind}), global batch {tc.batch}, "
          f"{args.episodes} episodes x 50 steps; medians of {args.rounds} interleaved rounds")
    print(table(rows, list(rows[0])))
    out = write("scaling", {"global_batch": tc.batch, "episodes": args.episodes,
                            "rows": rows, "train_s": train_t, "eval_s": eval_t,
                            "note": "forced CPU devices share the cores: overhead, not "
                                    "speed-up" if jax.default_backend() == "cpu" else ""},
                args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
