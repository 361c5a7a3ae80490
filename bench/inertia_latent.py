"""Does the level-0 latent keep the velocity of a body with inertia? Encoder variants on
the cached pointmaze-mjx data, same data, same updates, held-out episodes.

The first inertia benchmark failed for every agent; its latent held position (probe R2
0.91) but little velocity (0.50, effective rank 2.2). Variants: the default loss, an
inverse-dynamics term (the action must be readable from two consecutive latents), a
covariance penalty on the latent itself.

Run: .venv/bin/python bench/inertia_latent.py [--task pointmaze-mjx-large] [--steps 3000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bench.common import write
from hplan import data as data_lib
from hplan import tasks
from hplan.train import pipeline
from hplan.wm import diagnostics as diag
from hplan.wm import jepa
from hplan.wm.config import stack_config

VARIANTS = {
    "default": {},
    "inverse-1": {"inverse_weight": 1.0},
    "latent-cov-0.04": {"latent_cov_weight": 0.04},
    "inverse-1+latent-cov": {"inverse_weight": 1.0, "latent_cov_weight": 0.04},
}


def evaluate(model, ho) -> dict:
    z = np.asarray(jax.jit(model.encode)(jnp.asarray(ho.obs)))
    roll = jax.jit(jax.vmap(lambda z0, a: model.rollout(0, z0, a)))
    k, errs = 32, []
    for s0 in (0, 32):
        zt = z[:, s0:s0 + k + 1]
        pred = np.asarray(roll(jnp.asarray(zt[:, 0]), jnp.asarray(ho.actions[:, s0:s0 + k])))
        errs.append(diag.prediction_error(pred, zt))
    err = np.concatenate(errs).mean(0)
    stats = diag.latent_stats(z)
    return {"l0_rel_err": {h: float(err[h - 1]) for h in (1, 8, 32)},
            "probe_r2_pos": diag.probe_r2(z, ho.xy),
            "probe_r2_vel": diag.probe_r2(z, ho.obs[..., 2:]),
            "effective_rank": stats["effective_rank"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="pointmaze-mjx-large")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--episodes", type=int, default=2048, help="training episodes")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    task = tasks.load(a.task)
    base = pipeline.for_task(task, stack_config(task.spec.stack))
    ds = data_lib.collect(task, jax.random.key(0), a.episodes, base.data.steps, base.data.policy)
    ho = data_lib.collect(task, jax.random.key(987654), 512, 64, "mixed")
    rows = {}
    for name in a.variants.split(","):
        cfg = stack_config({"train": {**VARIANTS[name], "steps": a.steps}}, base)
        t0 = time.perf_counter()
        train = jax.jit(jepa.make_train(cfg.wm, cfg.train, ds.obs, ds.actions))
        params, _ = jax.block_until_ready(train(0))
        graphdef, _ = nnx.split(jepa.build_model(ds.obs.shape[2:], ds.actions.shape[-1], cfg.wm))
        rows[name] = {**evaluate(nnx.merge(graphdef, params), ho),
                      "train_s": time.perf_counter() - t0}
        r = rows[name]
        print(f"{name:24s} pos R2 {r['probe_r2_pos']:.3f}  vel R2 {r['probe_r2_vel']:.3f}  "
              f"rank {r['effective_rank']:.2f}  rel err 1/8/32 "
              + "/".join(f"{v:.4f}" for v in r["l0_rel_err"].values())
              + f"  ({r['train_s']:.0f} s)", flush=True)
    out = {"task": a.task, "steps": a.steps, "episodes": a.episodes, "variants": rows}
    write(f"inertia_latent_{a.task}", out, a.json)
    return out


if __name__ == "__main__":
    main()
