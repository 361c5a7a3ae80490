"""Is the encoder's latent enough to know a family map's wall? A fresh, larger predictor
(3 x 512 MLP, residual) is trained on the stack's frozen latents (z_t, a_t) -> z_t+1 of
90 % of the recorded episodes; on the other 10 % it is asked how far a push into the
dividing wall moves the agent (read by the stack's probe, in cells, towards the wall),
for blocked transitions (the agent beside the wall, away from the door: it did not move)
and free ones. If a predictor trained this long still moves blocked pushes like free
ones, the latent does not hold what it needs: the encoder, not the joint training, is at
fault. The stack's own level-0 model is reported beside it.

With `--frame N`, a second fresh predictor also reads the frame (`hplan.wm.frame_step`,
N updates): the encoder's own next latent, from (z, a) and a translation-invariant
summary of the frame (patch features, a 3x3 convolution, pooled by a learned attention
over locations), so what it learns of walls beside the agent holds wherever the wall is.
Reported with the share of held-out pushes it reads the right way (blocked under 0.3
cells, free over 0.3).

Run: .venv/bin/python bench/frozen_predictor.py --task two-rooms-random --seed 0
     [--override JSON] [--updates 20000] [--frame 1500] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bench.common import dividing_wall, family_env, overridden, write
from hplan import tasks
from hplan.train import pipeline
from hplan.wm import frame_step
from hplan.wm.models import MLP


def transitions(env, ds):
    """Masks over [episodes, steps]: pushes into the dividing wall from beside it that did
    not move (blocked), and pushes along columns that moved freely."""
    xy, a, g = np.asarray(ds.xy), np.asarray(ds.actions), np.asarray(ds.groups)
    cols = np.array([dividing_wall(lay) for lay in env.layouts])
    wc = cols[g][:, None]
    c0 = np.floor(xy[:, :-1, 1])
    push, dc = a[..., 1], xy[:, 1:, 1] - xy[:, :-1, 1]
    into = ((c0 == wc - 1) & (push > 0.3)) | ((c0 == wc + 1) & (push < -0.3))
    blocked = into & (np.abs(dc) < 0.25 * np.abs(push))
    free = (np.abs(dc) > 0.4 * np.abs(push)) & (np.abs(push) > 0.3)
    return blocked, free


def fit_predictor(z0, z1, act, updates: int, seed: int, init_seed: int = 0,
                  fourier: float = 0.0, residual: bool = True) -> tuple[Callable, float]:
    """A fresh residual 3 x 512 MLP (z, a[, sin / cos(zB), B ~ N(0, fourier^2)]) -> z',
    fitted by Adam to frozen latents; returns (predict(z, a) -> z' as numpy, final loss).
    Random Fourier features let an MLP draw sharp, position-dependent edges (walls).
    `residual=False`: regress any target `z1` [N, k] on (z, a) directly."""
    d = z0.shape[-1]
    proj = jax.random.normal(jax.random.key(seed + 1), (d, 128)) * fourier
    net = MLP([d + act.shape[-1] + (256 if fourier else 0), 512, 512, 512, z1.shape[-1]],
              nnx.Rngs(init_seed))
    gd, params = nnx.split(net)
    opt = optax.adam(optax.cosine_decay_schedule(1e-3, updates, 0.05))
    state = opt.init(params)
    x0, x1, u = (jnp.asarray(v) for v in (z0, z1, act))

    def predict(prm, zz, aa):
        parts = [zz, aa]
        if fourier:
            parts += [jnp.sin(zz @ proj), jnp.cos(zz @ proj)]
        out = nnx.merge(gd, prm)(jnp.concatenate(parts, -1))
        return zz + out if residual else out

    @jax.jit
    def update(prm, state, key):
        i = jax.random.randint(key, (1024,), 0, x0.shape[0])
        loss, grad = jax.value_and_grad(
            lambda q: jnp.mean(jnp.sum((predict(q, x0[i], u[i]) - x1[i]) ** 2, -1)))(prm)
        upd, state = opt.update(grad, state, prm)
        return optax.apply_updates(prm, upd), state, loss

    key = jax.random.key(seed)
    for it in range(updates):
        params, state, loss = update(params, state, jax.random.fold_in(key, it))
    apply = jax.jit(predict)
    return (lambda zz, aa: np.asarray(apply(params, jnp.asarray(zz), jnp.asarray(aa))),
            float(loss))


def fit_frame_predictor(obs, z0, z1, act, updates: int, seed: int) -> tuple[Callable, float]:
    """`hplan.wm.frame_step.fit` on these transitions; returns (predict(obs, z, a) -> z'
    as numpy, final loss in squared step rms)."""
    model, loss = frame_step.fit(obs, z0, z1, act, updates, seed)
    apply = jax.jit(jax.vmap(lambda o, z, a: model.step(model.context(o), z, a)))

    def run(oo, zz, aa):
        return np.concatenate([np.asarray(apply(*(jnp.asarray(v[k: k + 4096])
                                                  for v in (oo, zz, aa))))
                               for k in range(0, len(zz), 4096)])

    return run, loss


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="two-rooms-random")
    p.add_argument("--seed", type=int, default=0, help="stack seed")
    p.add_argument("--override", default="{}")
    p.add_argument("--updates", type=int, default=20000)
    p.add_argument("--frame", type=int, default=0,
                   help="also fit a predictor that reads the frame, this many updates")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    task = tasks.load(a.task)
    env = family_env(task, "frozen_predictor")
    st, ds, where = pipeline.get_stack(task, a.cache, cfg=overridden(task, json.loads(
        a.override)), seed=a.seed, show=False)
    if a.frame and np.asarray(ds.obs).ndim != 5:
        raise SystemExit(f"{a.task}: --frame reads image observations [H, W, C]; this "
                         "task's observations are not images")
    z = st.encode(np.asarray(ds.obs))
    d = z.shape[-1]
    blocked, free = transitions(env, ds)
    test = np.repeat(np.arange(z.shape[0]) >= int(0.9 * z.shape[0]), blocked.shape[1])
    z0, z1 = z[:, :-1].reshape(-1, d), z[:, 1:].reshape(-1, d)
    act = np.asarray(ds.actions).reshape(-1, 2)
    blocked, free = blocked.reshape(-1)[test], free.reshape(-1)[test]
    w = st.probe[0][:, 1]
    sign = np.sign(act[test, 1])

    def moves(pred):
        mv = (pred - z0[test]) @ w * sign
        return {"blocked": float(np.median(mv[blocked])), "free": float(np.median(mv[free])),
                "blocked_read_blocked": float(np.mean(mv[blocked] < 0.3)),
                "free_read_free": float(np.mean(mv[free] > 0.3))}

    model = st.model()
    rows = {"true": moves(z1[test]), "stack_model": moves(np.asarray(jax.jit(jax.vmap(
        lambda zz, aa: model.step(0, zz, aa)))(z0[test], act[test])))}
    predict, loss = fit_predictor(z0[~test], z1[~test], act[~test], a.updates, a.seed)
    rows["fresh_mlp"] = moves(predict(z0[test], act[test]))
    rows["fresh_mlp"]["final_loss"] = loss
    if a.frame:
        obs = np.asarray(ds.obs)[:, :-1].reshape(-1, *ds.obs.shape[2:])
        predict, loss = fit_frame_predictor(obs[~test], z0[~test], z1[~test], act[~test],
                                            a.frame, a.seed)
        rows["frame_mlp"] = moves(predict(obs[test], z0[test], act[test]))
        rows["frame_mlp"]["final_loss"] = loss
    print(f"{a.task} stack {a.seed}: median move towards the wall (cells), held-out episodes")
    for k, v in rows.items():
        print(f"  {k:12s} blocked {v['blocked']:.3f}   free {v['free']:.3f}   read the right "
              f"way: blocked {v['blocked_read_blocked']:.3f}, free {v['free_read_free']:.3f}")
    out = {"task": a.task, "seed": a.seed, "override": json.loads(a.override),
           "updates": a.updates, "frame_updates": a.frame,
           "blocked_n": int(blocked.sum()), "free_n": int(free.sum()),
           "stack": str(where), "moves": rows}
    print(f"wrote {write(f'frozen_predictor_{a.task}', out, a.json)}")
    return out


if __name__ == "__main__":
    main()
