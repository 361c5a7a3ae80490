"""Can the ant's level-0 latent tell a wall from the open? A fresh, larger predictor (3 x
512 MLP, residual; optionally with random Fourier features of the latent, which let an
MLP draw sharp, position-dependent edges) is trained on the stack's frozen latents
(z_t, a_t) -> z_t+1 of 90 % of the recorded episodes. On the other 10 %, for steps blocked
by a wall (torso within 0.15 cells of one, under 0.2 of the commanded speed along the
command) and free ones (over 0.4 cells from any wall), it reports the probed move along
the command and the error of the probed move, in cells, beside the stack's own model and
the truth. If the error in the open is as large as the step itself, a wall's effect is
lost in that noise. `--direct` also regresses the torso's move itself on the latent and
on the raw observation: what the state can tell of the next step at all.

Run: .venv/bin/python bench/ant_level0_noise.py --task antmaze-medium-gait --seed 0
     [--updates 3000] [--fourier 1.0] [--direct] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

from bench.ant_walls import command_share, wall_distance
from bench.common import table, write
from bench.frozen_predictor import fit_predictor
from hplan import tasks
from hplan.train import pipeline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="antmaze-medium-gait")
    p.add_argument("--seed", type=int, default=0, help="stack seed")
    p.add_argument("--updates", type=int, default=3000)
    p.add_argument("--fourier", type=float, default=1.0, help="0: skip that variant")
    p.add_argument("--direct", action="store_true",
                   help="also regress the torso's move on the latent and on the observation")
    p.add_argument("--cache", default="out/cache")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    task = tasks.load(a.task)
    env = task.env.unwrapped
    if not hasattr(env, "to_world"):
        sys.exit(f"{a.task} is not an ant maze: use e.g. antmaze-medium-gait")
    st, ds, where = pipeline.get_stack(task, a.cache, seed=a.seed, show=False)
    z = np.asarray(st.encode(np.asarray(ds.obs)))
    xy, act = np.asarray(ds.xy), np.asarray(ds.actions)
    n_ep, n_t = act.shape[:2]
    wd = wall_distance(np.asarray(env.layout.walls), xy[:, :-1].reshape(-1, 2))
    mag, share = command_share(env, xy, act)
    share = share.reshape(-1)
    test = np.repeat(np.arange(n_ep) >= int(0.9 * n_ep), n_t)
    d = z.shape[-1]
    z0, z1 = z[:, :-1].reshape(-1, d), z[:, 1:].reshape(-1, d)
    A, mg, p0 = act.reshape(-1, 2), mag.reshape(-1), xy[:, :-1].reshape(-1, 2)
    blocked = test & (wd < 0.15) & (share < 0.2) & (mg > 0.5)
    free = test & (wd > 0.4) & (mg > 0.5)
    w = np.asarray(st.probe[0])

    dxy = (xy[:, 1:] - xy[:, :-1]).reshape(-1, 2)

    def summary(name, dp, dt):
        """Medians of a predicted move `dp` (cells) along the command and of its error
        against the move `dt`, on the blocked and the free steps."""
        err = np.linalg.norm(dp - dt, axis=-1)
        moved = (np.asarray(env.to_world(p0 + dp)) - np.asarray(env.to_world(p0))) / env.cell_size
        al = (moved * A).sum(-1) / np.maximum(mg, 1e-6)
        return {"predictor": name,
                "move along command, blocked": float(np.median(al[blocked])),
                "move along command, free": float(np.median(al[free])),
                "error, blocked": float(np.median(err[blocked])),
                "error, free": float(np.median(err[free]))}

    def row(name, pred):
        return summary(name, (pred - z0) @ w, (z1 - z0) @ w)

    def fresh(fourier):
        predict, _ = fit_predictor(z0[~test], z1[~test], A[~test], a.updates, a.seed,
                                   init_seed=a.seed, fourier=fourier)
        return predict(z0, A)

    def direct(name, feat):
        """The torso's move regressed on (features, command) directly, no latent step."""
        predict, _ = fit_predictor(feat[~test], dxy[~test], A[~test], a.updates, a.seed,
                                   init_seed=a.seed, residual=False)
        return summary(name, predict(feat, A), dxy)

    model = st.model()
    rows = [row("truth", z1),
            row("stack's level 0", np.asarray(jax.jit(jax.vmap(
                lambda zz, aa: model.step(0, zz, aa)))(z0, A))),
            row("fresh 3x512 MLP", fresh(0.0))]
    if a.fourier:
        rows.append(row(f"fresh MLP + Fourier {a.fourier:g}", fresh(a.fourier)))
    if a.direct:
        obs = np.asarray(ds.obs)[:, :-1].reshape(-1, ds.obs.shape[-1])
        obs = (obs - obs.mean(0)) / (obs.std(0) + 1e-6)
        rows += [direct("torso move from the latent (no latent step)", z0),
                 direct("torso move from the observation", obs)]
    print(f"{a.task} stack {a.seed}: held-out steps, blocked {int(blocked.sum())}, free "
          f"{int(free.sum())} (cells per 0.5 s step, probed)")
    print(table(rows, list(rows[0])))
    out = write(f"ant_level0_noise_{task.name}_s{a.seed}",
                {"task": task.name, "seed": a.seed, "updates": a.updates, "stack": str(where),
                 "blocked_n": int(blocked.sum()), "free_n": int(free.sum()), "rows": rows},
                a.json)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
