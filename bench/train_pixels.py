"""Pixel vs state world-model training on two-rooms: samples/s side by side, and the wall
time until a linear probe reads the position from the latent with R^2 >= 0.9.

Same episodes for both (one collection key; the pixel variant only renders them as
32x32x2 uint8 frames), same JEPA config (default batch 256, windows of 24 steps),
chunks of scanned updates as `hplan train` runs them. After each chunk the position is
probed from the latents of 512 episodes. A "sample" is one training window.
Target (issue 16, item 0): pixels reach R^2 >= 0.9 within 15 minutes of CPU training.
Run: .venv/bin/python -m bench.train_pixels [--episodes 512] [--min-steps 1000] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

if __package__ in (None, ""):  # run as a file: make the repository root importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table, write
from hplan import data, tasks
from hplan.wm import jepa
from hplan.wm.diagnostics import probe_r2
from hplan.wm.models import WMConfig


def pixel_task(name: str, size: int):
    task = tasks.load(name)
    spec = dataclasses.replace(task.spec, env_args={**task.spec.env_args, "obs": "pixels",
                                                     "image_size": size})
    return tasks.build(spec, base_dir=tasks.TASKS_DIR)


def run(ds, pixels: bool, tc: jepa.TrainConfig, max_steps: int, min_steps: int,
        target: float, max_s: float, probe_idx) -> dict:
    """Train in chunks until the probe reaches `target` (after at least `min_steps`, so
    the throughput is a median over several chunks), `max_steps` or `max_s` seconds."""
    wm = WMConfig(pixels=pixels)
    t0 = time.perf_counter()
    model = jepa.build_model(ds.obs.shape[2:], ds.actions.shape[-1], wm, tc.seed)
    graph, opt, state = jepa.init_state(model, tc)
    fn, data = jepa.make_chunk(graph, opt, jnp.asarray(ds.obs), jnp.asarray(ds.actions), wm, tc)
    compiled = jax.jit(fn).lower(state, data).compile()

    def chunk(s):
        return compiled(s, data)

    compile_s = time.perf_counter() - t0
    rows, reached, wall = [], None, compile_s
    for k in range(max_steps // tc.chunk):
        t1 = time.perf_counter()
        state, metrics = jax.block_until_ready(chunk(state))
        dt = time.perf_counter() - t1
        t2 = time.perf_counter()
        z = jepa.encode_all(graph, state["params"], ds.obs[probe_idx])
        r2 = probe_r2(z, ds.xy[probe_idx])
        wall += dt + time.perf_counter() - t2
        rows.append({"obs": "pixels" if pixels else "state", "updates": (k + 1) * tc.chunk,
                     "chunk_s": dt, "samples_per_s": tc.chunk * tc.batch / dt,
                     "probe_r2": r2, "wall_s": wall, "loss": float(np.mean(metrics["loss"])),
                     "latent_std": float(metrics["std"][-1])})
        print(f"  {rows[-1]['obs']} {rows[-1]['updates']} updates: probe R2 {r2:.3f}, "
              f"latent std {rows[-1]['latent_std']:.3f}, "
              f"{rows[-1]['samples_per_s']:.0f} samples/s, {wall:.0f}s", flush=True)
        if reached is None and r2 >= target:
            reached = rows[-1]
        if (reached and rows[-1]["updates"] >= min_steps) or wall > max_s:
            break
    return {"obs": rows[0]["obs"], "compile_s": compile_s,
            "samples_per_s": float(np.median([r["samples_per_s"] for r in rows])),
            "updates": rows[-1]["updates"], "probe_r2": rows[-1]["probe_r2"],
            "latent_std": rows[-1]["latent_std"],
            f"wall_s_to_r2_{target:g}": reached["wall_s"] if reached else None,
            f"updates_to_r2_{target:g}": reached["updates"] if reached else None,
            "rows": rows}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", default="two-rooms")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--episodes", type=int, default=512)
    p.add_argument("--batch", type=int, default=jepa.TrainConfig.batch)
    p.add_argument("--chunk", type=int, default=250)
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--min-steps", type=int, default=1000)
    p.add_argument("--max-minutes", type=float, default=15.0)
    p.add_argument("--target", type=float, default=0.9)
    p.add_argument("--only", choices=("state", "pixels"), default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    tc = jepa.TrainConfig(steps=args.max_steps, batch=args.batch, chunk=args.chunk)
    probe_idx = np.random.default_rng(0).permutation(args.episodes)[:512]
    results, sets = [], {}
    for obs in ("state", "pixels"):
        if args.only and obs != args.only:
            continue
        task = pixel_task(args.task, args.image_size) if obs == "pixels" else tasks.load(args.task)
        t0 = time.perf_counter()
        ds = data.collect(task, jax.random.key(0), args.episodes, 64)
        sets[obs] = {"collect_s": time.perf_counter() - t0, "shape": list(ds.obs.shape[2:]),
                     "dtype": str(ds.obs.dtype), "mbytes": ds.obs.nbytes / 1e6}
        print(f"{obs}: {args.episodes} episodes {tuple(ds.obs.shape[2:])} {ds.obs.dtype} "
              f"collected in {sets[obs]['collect_s']:.1f}s", flush=True)
        results.append(run(ds, obs == "pixels", tc, args.max_steps, args.min_steps,
                           args.target, 60 * args.max_minutes, probe_idx))
    key = f"wall_s_to_r2_{args.target:g}"
    print(f"\nworld-model training on {args.task}, backend {jax.default_backend()}, batch "
          f"{tc.batch} windows of {jepa.span(WMConfig(), tc)} steps, {args.episodes} episodes")
    cols = ["obs", "compile_s", "samples_per_s", key, f"updates_to_r2_{args.target:g}",
            "updates", "probe_r2", "latent_std"]
    print(table(results, cols))
    summary = {r["obs"]: {k: v for k, v in r.items() if k != "rows"} for r in results}
    if len(results) == 2:
        summary["pixel_over_state_throughput"] = (results[1]["samples_per_s"]
                                                  / results[0]["samples_per_s"])
    out = write("train_pixels", {"task": args.task, "image_size": args.image_size,
                                 "episodes": args.episodes, "batch": tc.batch,
                                 "chunk": tc.chunk, "target_r2": args.target,
                                 "target_wall_s": 60 * args.max_minutes, "data": sets,
                                 "summary": summary,
                                 "rows": [r for res in results for r in res["rows"]]},
                args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
