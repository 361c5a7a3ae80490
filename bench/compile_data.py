"""Compile time of one world-model training chunk against dataset size: the data as an
argument of the compiled chunk (as `hplan train` runs it) against the data closed over
as a constant (as it ran before), same chunk, same run.

Pixel two-rooms (32x32x2 uint8 frames, 64 steps per episode); a state task for scale.
Run: .venv/bin/python bench/compile_data.py [--episodes 512,4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax

from bench.common import table, write
from bench.train_pixels import pixel_task
from hplan import data, tasks
from hplan.wm import jepa
from hplan.wm.models import WMConfig


def compile_s(fn, *args) -> float:
    t0 = time.perf_counter()
    jax.jit(fn).lower(*args).compile()
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--episodes", default="512,4096")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    tc = jepa.TrainConfig(chunk=250)
    rows = []
    for obs in ("state", "pixels"):
        task = pixel_task("two-rooms", 32) if obs == "pixels" else tasks.load("two-rooms")
        for n in map(int, args.episodes.split(",")):
            ds = data.collect(task, jax.random.key(0), n, 64)
            wm = WMConfig(pixels=obs == "pixels")
            model = jepa.build_model(ds.obs.shape[2:], ds.actions.shape[-1], wm, 0)
            graph, opt, state = jepa.init_state(model, tc)
            fn, arrays = jepa.make_chunk(graph, opt, ds.obs, ds.actions, wm, tc)
            arrays = jax.device_put(arrays)
            # a fresh function each time, so no compile is served from jax's caches
            arg = [compile_s(lambda s, a, f=fn: f(s, a), state, arrays)
                   for _ in range(args.repeats)]
            const = [compile_s(lambda s, a=arrays, f=fn: f(s, a), state)
                     for _ in range(args.repeats)]
            rows.append({"obs": obs, "episodes": n, "mbytes": ds.obs.nbytes / 1e6,
                         "argument_s": statistics.median(arg),
                         "constant_s": statistics.median(const),
                         "constant_over_argument": statistics.median(const)
                         / statistics.median(arg)})
            print(rows[-1], flush=True)
    print(table(rows, list(rows[0])))
    print(write("compile_data", {"repeats": args.repeats, "chunk": tc.chunk,
                                 "note": "medians of repeated compiles (no persistent cache)",
                                 "rows": rows}, args.out))


if __name__ == "__main__":
    main()
