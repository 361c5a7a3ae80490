"""How finely does a trained level-0 model resolve one base step? On fresh exploration
episodes (a key the stack never trained on):

- `error_over_move`: one-step prediction error / the latent move of that step (median over
  steps that moved); 1 means the model does no better than predicting "no move";
- `model_action_error`: the action recovered from a transition (o, o') by searching the
  action box for the one whose predicted latent lands nearest encode(o'), against the
  action taken (L-inf, action units: 1 = a full-speed step), median and p90;
- `critic_action_error`: the same, picking by the level-0 critic instead of latent distance;
- `inverse_action_error`: the same, read off the inverse-dynamics head (when trained);
- `identity_error`: the same for always answering "no move" (all-zero action), a floor to
  beat.

Only transitions whose latent moved more than a fifth of the median move are used, so an
action into a wall (which any answer explains) does not count. This is where the level-0
planner's precision ends: it cannot put the agent on a subgoal more finely than this.

Run: .venv/bin/python bench/level0_precision.py --task maze32 --seeds 0,1,2 [--cache DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from bench.common import table, write
from hplan import data as data_lib
from hplan import tasks
from hplan.train import pipeline
from hplan.wm.jepa import step_rms


def candidates(size: int, n: int = 441, seed: int = 0) -> np.ndarray:
    """Actions to search: a grid over a 2-D box, else random points and the corners."""
    if size == 2:
        u = np.linspace(-1, 1, int(round(np.sqrt(n))))
        return np.stack(np.meshgrid(u, u), -1).reshape(-1, 2).astype(np.float32)
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, size)).astype(np.float32)


def measure(stack, ds, n: int = 2000, seed: int = 0) -> dict:
    model, c0 = stack.model(), stack.critic(0)
    rng = np.random.default_rng(seed)
    e = rng.integers(0, ds.obs.shape[0], n)
    t = rng.integers(0, ds.actions.shape[1], n)
    o0, o1, act = (jnp.asarray(x) for x in (ds.obs[e, t], ds.obs[e, t + 1], ds.actions[e, t]))
    grid = jnp.asarray(candidates(act.shape[-1]))

    @jax.jit
    def run(o0, o1, act):
        z0, z1 = model.encode(o0), model.encode(o1)
        step = jax.vmap(lambda z, a: model.step(0, z, a))
        err = jnp.linalg.norm(step(z0, act) - z1, axis=-1)
        move = jnp.linalg.norm(z1 - z0, axis=-1)

        def pick(z, g):
            zs = jax.vmap(lambda a: model.step(0, z, a))(grid)
            by_latent = grid[jnp.argmin(jnp.linalg.norm(zs - g, axis=-1))]
            by_critic = grid[jnp.argmin(c0(zs, jnp.broadcast_to(g, zs.shape)))]
            return by_latent, by_critic

        a_lat, a_crit = jax.vmap(pick)(z0, z1)
        a_inv = (model.read_action(z0, z1, step_rms(z1 - z0)) if stack.wm_cfg.inverse
                 else jnp.full_like(a_lat, jnp.nan))
        return err, move, a_lat, a_crit, a_inv

    err, move, a_lat, a_crit, a_inv = map(np.asarray, run(o0, o1, act))
    act = np.asarray(act)
    ok = move > 0.2 * np.median(move)

    def linf(a):
        d = np.max(np.abs(np.clip(a, -1, 1) - np.clip(act, -1, 1)), axis=-1)[ok]
        return float(np.median(d)), float(np.percentile(d, 90))

    (ml, ml90), (cl, cl90), (il, il90) = linf(a_lat), linf(a_crit), linf(0 * act)
    vl, vl90 = linf(a_inv)
    return {"transitions": int(ok.sum()), "error_over_move": float(np.median(err[ok] / move[ok])),
            "inverse_action_error": vl, "inverse_action_error_p90": vl90,
            "model_action_error": ml, "model_action_error_p90": ml90,
            "critic_action_error": cl, "critic_action_error_p90": cl90,
            "identity_error": il, "identity_error_p90": il90}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", default="maze32")
    p.add_argument("--seeds", default="0")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--episodes", type=int, default=256)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    task = tasks.load(args.task)
    fresh = data_lib.collect(task, jax.random.key(10_007), args.episodes)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        stack, _, where = pipeline.get_stack(task, args.cache, seed=seed, show=False)
        rows.append({"seed": seed, "stack": Path(where).name, **measure(stack, fresh)})
    cols = ["seed", "error_over_move", "model_action_error", "model_action_error_p90",
            "critic_action_error", "inverse_action_error", "inverse_action_error_p90",
            "identity_error", "transitions"]
    print(table(rows, cols))
    out = write(f"level0_precision_{args.task}", {"task": args.task, "rows": rows}, args.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
