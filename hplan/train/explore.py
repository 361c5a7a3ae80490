"""Planning to explore with a learned level-0 model: data that travels.

Round 0: random-action episodes (uniform or AR(1) noise, half each) from a few spread-out
`explore_reset` draws. From them, once: the observations' slow features (linear SFA,
`hplan.data.explore.slow_features`): the directions that change least per step, which
is where the agent is, found without being told. Then, each round:

1. fine-tune the level-0 JEPA model (encoder + one-step predictor; `hplan.wm.jepa`'s loss
   and update) on all the data so far;
2. targets: the rarest states of a subsample (largest distance to their k-th neighbour in
   slow-feature space), spread out by farthest-point sampling;
3. each episode starts `lead` steps before its target on the target's own episode (a
   state of the data from which the target is known to be reachable, restarted with the
   env's `reset_at`) and goes: CEM over the model's latent rollouts, the cost being the
   distance of the slow features read linearly from the predicted latents to the
   target's, until it is within `reach` neighbour radii of it or `go` of the episode has
   passed; then it explores from there with random actions;
4. the episodes join the data; stop when an oracle-free coverage proxy (the cells of a
   grid over slow-feature space that the data occupies) grows by less than
   `min_growth`, or after `rounds` rounds.

Every round's episodes are one jitted program: `vmap` over episodes, `lax.scan` over time,
the planner a `lax.scan` over CEM iterations, with the model's parameters an argument, so
the program compiles once per run; a random-action baseline (`plan=False`) runs the same
program. Nothing here reads an oracle or knows what an observation means; the caller may
(see `on_round`), for diagnostics only.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hplan.data import explore as X
from hplan.data.dataset import Dataset
from hplan.wm import jepa
from hplan.wm.models import WMConfig


@dataclasses.dataclass(frozen=True)
class ExploreConfig:
    rounds: int = 4  # collection rounds, round 0 (random actions) included
    episodes: int = 256  # per round
    steps: int = 100  # actions per episode
    starts: int = 8  # distinct explore_reset draws that round 0's episodes share
    # the level-0 model, fine-tuned every round
    latent_dim: int = 16
    hidden: int = 128
    train_steps: int = 1000
    batch: int = 256
    rollout: int = 8  # prediction steps per training window
    # VICReg's variance weight and a covariance term on the latent itself (as
    # `[stack.train]`): the ant's latent kept its torso position only with both raised
    var_weight: float = 1.0
    latent_cov_weight: float = 0.0
    # the planner: CEM over `horizon` actions, replanned every step, warm-started
    horizon: int = 12
    samples: int = 64
    elites: int = 8
    iters: int = 3
    # targets and the coverage proxy
    rare: float = 0.05  # targets among the rarest fraction of subsampled data states
    reach: float = 3.0  # reached: within this many neighbour radii (slow features)
    go: float = 0.5  # plan for at most this fraction of an episode's steps, then explore
    lead: int = 20  # start this many steps before the target on its episode (< 0: start
    # at states drawn uniformly from the data)
    cost: str = "slow"  # planner cost: distance in slow features read from the latent,
    # or in the latent itself ("latent")
    slowness: float = 0.05  # slow features: mean squared change per step below this
    # fraction of their variance
    neighbours: int = 10  # k of the k-th-neighbour distance
    subsample: int = 2048
    min_growth: float = 0.05  # stop when the cover grows by less than this fraction
    rho: float = 0.9  # AR(1) coefficient of correlated random actions
    seed: int = 0

    def __post_init__(self):
        def need(ok, what, fix):
            if not ok:
                raise ValueError(f"{what}. Fix: {fix}")

        need(self.rounds >= 1, f"rounds={self.rounds} must be at least 1 (round 0 is "
             "random actions)", "pass --rounds 1 or more")
        need(self.episodes >= 1 and self.starts >= 1, f"episodes={self.episodes} and "
             f"starts={self.starts} must be positive", "pass positive counts")
        need(self.steps > self.rollout, f"steps={self.steps} must exceed the training "
             f"window rollout={self.rollout}", f"pass --steps {self.rollout + 1} or more")
        need(min(self.train_steps, self.batch, self.horizon, self.iters) >= 1
             and 1 <= self.elites <= self.samples, "train_steps, batch, horizon and iters "
             "must be positive and 1 <= elites <= samples", "fix the counts")
        need(0 < self.rare <= 1 and 0 <= self.go <= 1 and 0 <= self.rho < 1,
             f"rare={self.rare} and go={self.go} must be in (0, 1], rho={self.rho} in "
             "[0, 1)", "use e.g. rare = 0.05, go = 0.5, rho = 0.9")
        need(self.reach > 0 and self.slowness > 0, f"reach={self.reach} and slowness="
             f"{self.slowness} must be positive", "use e.g. reach = 3, slowness = 0.05")
        need(self.cost in ("slow", "latent"), f"cost={self.cost!r} is unknown",
             "use 'slow' or 'latent'")
        need(self.neighbours < self.subsample, f"neighbours={self.neighbours} must be "
             f"below subsample={self.subsample}", "use e.g. 10 and 2048")


def _configs(cfg: ExploreConfig):
    wm = WMConfig(latent_dim=cfg.latent_dim, hidden=cfg.hidden, strides=(1,))
    chunk = math.gcd(cfg.train_steps, 100)
    tc = jepa.TrainConfig(steps=cfg.train_steps, batch=cfg.batch, rollout=(cfg.rollout,),
                          chunk=chunk, seed=cfg.seed, var_weight=cfg.var_weight,
                          latent_cov_weight=cfg.latent_cov_weight)
    return wm, tc


def make_explorer(graphdef, cfg: ExploreConfig, action_size: int, obs_ndim: int
                  ) -> X.Explorer:
    """Go, then explore. With `params["plan"]` (a scalar: the whole round plans or none
    does), CEM over the model's latent rollouts drives the episode toward
    `arg["target"]` (a latent) until its slow features are within `params["radius"]` of
    `arg["target_slow"]`; from then on, and in rounds that do not plan, random actions
    (`arg["correlated"]`: AR(1))."""
    h, a_dim = cfg.horizon, action_size
    go_steps = int(round(cfg.go * cfg.steps))

    def cem(model, z, target, readout, mean, key):
        def cost(seq):
            zs = model.rollout(0, z, seq)
            if cfg.cost == "slow":  # where the latents say the agent is
                zs = zs @ readout[0] + readout[1]
            return jnp.mean(jnp.sum((zs - target) ** 2, -1))

        def it(c, k):
            mu, sd = c
            seqs = jnp.clip(mu + sd * jax.random.normal(k, (cfg.samples, h, a_dim)), -1, 1)
            seqs = seqs.at[0].set(mu)  # the warm start competes too
            _, idx = jax.lax.top_k(-jax.vmap(cost)(seqs), cfg.elites)
            elite = seqs[idx]
            return (elite.mean(0), elite.std(0) + 0.05), None

        (mu, _), _ = jax.lax.scan(it, (mean, jnp.ones_like(mean)),
                                  jax.random.split(key, cfg.iters))
        return mu

    def init(arg, obs, key):
        return {"a": jnp.zeros(a_dim), "mean": jnp.zeros((h, a_dim)),
                "reached": jnp.bool_(False), "t": jnp.int32(0), **arg}

    def step(params, carry, obs, key):
        k_rand, k_plan = jax.random.split(key)
        rand = X.random_action(k_rand, carry["a"], carry["correlated"], cfg.rho)
        slow = X.project(obs, params["slow_mu"], params["slow_w"], obs_ndim)
        reached = (carry["reached"] | (carry["t"] >= go_steps)
                   | (jnp.linalg.norm(slow - carry["target_slow"]) < params["radius"]))

        def go():
            model = nnx.merge(graphdef, params["wm"])
            target = carry["target_slow" if cfg.cost == "slow" else "target"]
            seq = cem(model, model.encode(obs), target,
                      (params["readout_w"], params["readout_b"]), carry["mean"], k_plan)
            return jnp.where(reached, rand, seq[0]), jnp.concatenate(
                [seq[1:], jnp.zeros((1, a_dim))])

        a, mean = jax.lax.cond(params["plan"], go, lambda: (rand, carry["mean"]))
        return {**carry, "a": a, "mean": mean, "reached": reached, "t": carry["t"] + 1}, a

    return X.Explorer(init, step)


def make_fit(graphdef, opt, wm: WMConfig, tc: jepa.TrainConfig):
    """Jitted `chunk(state, obs, actions, n, base) -> (state, metrics)`: `tc.chunk` JEPA
    updates on the first `n` episodes of a buffer (so a growing buffer does not
    recompile)."""

    def chunk(state, obs, actions, n, base):
        update = jepa.make_update(graphdef, opt, wm, tc, base=base, n=n)
        return jepa.scanned(lambda s, d: update(s, *d), tc.chunk)(state, (obs, actions))

    return jax.jit(chunk)


_ROLLOUTS: dict = {}
MAX_SLOW = 8  # slow features kept at most


def _rollout(env, cfg: ExploreConfig, graphdef, obs_ndim: int):
    """The compiled rollout of this env and these shapes (kept, so a random-action
    baseline after an exploration run, or the reverse, reuses the program)."""
    key = (id(env), cfg.episodes, cfg.steps, cfg.rho, cfg.go, cfg.cost, cfg.latent_dim,
           cfg.hidden,
           cfg.horizon, cfg.samples, cfg.elites, cfg.iters)
    if key not in _ROLLOUTS:
        ex = make_explorer(graphdef, cfg, env.action_size, obs_ndim)
        _ROLLOUTS[key] = (env, X.make_rollout(env, cfg.episodes, cfg.steps, ex))
    return _ROLLOUTS[key][1]


def _readout(z: np.ndarray, s: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares linear map latents [S, d] -> slow features [S, <= m] (padded to m)."""
    z1 = np.concatenate([np.asarray(z), np.ones((len(z), 1))], 1)
    s = np.pad(np.asarray(s), ((0, 0), (0, m - s.shape[1])))
    coef = np.linalg.lstsq(z1, s, rcond=None)[0].astype(np.float32)
    return coef[:-1], coef[-1]


def explore(task, cfg: ExploreConfig, plan: bool = True, on_round=None,
            show: bool = True) -> tuple[Dataset, list[dict]]:
    """Run the rounds on `task`'s world (`task.env.unwrapped`); returns all the data and
    a summary per round. `plan=False`: the same rounds, start rule and env steps with
    random actions only (no model is trained; with `cfg.lead < 0` that is plain random
    data restarted at states it visited). `on_round(k, data, summary)` is called after
    each round's episodes joined the data (for heat maps: never fed back)."""
    from tqdm.auto import tqdm

    env = task.env.unwrapped
    e, key = cfg.episodes, jax.random.key(cfg.seed)
    size = env.observation_size
    obs_shape = tuple(size) if isinstance(size, tuple) else (int(size),)
    nd, d_obs = len(obs_shape), int(np.prod(obs_shape))
    m_max = min(d_obs, MAX_SLOW)
    xy_dim = X.xy_size(env)
    wm, tc = _configs(cfg)
    graphdef, opt, state = jepa.init_state(
        jepa.build_model(obs_shape, env.action_size, wm, cfg.seed), tc)
    run = _rollout(env, cfg, graphdef, nd)
    no_args = {"target": jnp.zeros((e, wm.latent_dim)), "target_slow": jnp.zeros((e, m_max)),
               "correlated": jnp.arange(e) % 2 == 1}

    def params(slow, radius=0.0, readout=None):
        mu, w = slow
        planning = plan and readout is not None
        if readout is None:
            readout = (np.zeros((wm.latent_dim, m_max), np.float32),
                       np.zeros(m_max, np.float32))
        return {"wm": state["params"], "slow_mu": jnp.asarray(mu),
                "slow_w": jnp.asarray(np.pad(w, ((0, 0), (0, m_max - w.shape[1])))),
                "radius": jnp.float32(radius), "plan": jnp.bool_(planning),
                "readout_w": jnp.asarray(readout[0]), "readout_b": jnp.asarray(readout[1])}

    # round 0: random actions from a few explore_reset draws
    k0, key = jax.random.split(key)
    t0 = time.perf_counter()
    no_slow = (np.zeros(d_obs, np.float32), np.zeros((d_obs, 1), np.float32))
    out = run(params(no_slow), X.first_starts(jax.random.fold_in(k0, 0), e, cfg.starts,
                                              xy_dim), no_args, jax.random.fold_in(k0, 1))
    data = X.as_dataset(task, *jax.device_get(out),
                        policy="explore" if plan else "explore-random")

    # where the agent is: the slow features of round 0, fixed for the run. The coverage
    # proxy counts the cells of a grid over them that the data occupies, the cell's side
    # being the median distance to the k-th neighbour in a subsample of round 0.
    slow = X.slow_features(data.obs, cfg.slowness, max_dims=m_max)
    sub0 = data.obs[X.subsample(jax.random.fold_in(k0, 2), data, cfg.subsample)]
    width = float(jnp.median(X.kth_neighbour(X.project(sub0, *slow, nd), cfg.neighbours)))
    cover = [X.occupied(X.project(data.obs, *slow, nd), width)]
    rounds = [{"round": 0, "policy": "random", "episodes": data.n_episodes,
               "env_steps": data.n_episodes * data.n_steps, "slow_features":
               int(slow[1].shape[1]), "cover": cover[0], "seconds": time.perf_counter() - t0}]
    if on_round is not None:
        on_round(0, data, rounds[0])

    if plan and cfg.rounds > 1:
        fit = make_fit(graphdef, opt, wm, tc)
        encode = jax.jit(lambda p, o: nnx.merge(graphdef, p).encode(o))
        buf_obs = np.zeros((cfg.rounds * e, *data.obs.shape[1:]), data.obs.dtype)
        buf_act = np.zeros((cfg.rounds * e, *data.actions.shape[1:]), np.float32)
    bar = tqdm(range(1, cfg.rounds), desc=f"explore {task.name}", unit="round",
               disable=not show or cfg.rounds == 1)
    for k in bar:
        t0 = time.perf_counter()
        kr = jax.random.fold_in(key, k)
        summary = {"round": k, "policy": "plan" if plan else "random"}
        # targets: the rarest states of a subsample (distance to their k-th neighbour in
        # slow-feature space), spread out; each episode starts `lead` steps before its
        # target on the target's own episode (a start it is known to be reachable from)
        sub_it = X.subsample(jax.random.fold_in(kr, 1), data, cfg.subsample)
        s_sub = X.project(data.obs[sub_it], *slow, nd)
        rarity = X.kth_neighbour(s_sub, cfg.neighbours)
        radius = float(jnp.median(rarity))
        pick = np.asarray(X.rare_spread(s_sub, rarity, e, cfg.rare))
        at = (None if cfg.lead < 0 else
              (sub_it[0][pick], np.maximum(sub_it[1][pick] - cfg.lead, 0)))
        starts = X.data_starts(jax.random.fold_in(kr, 0), data, e, xy_dim, at)
        args, readout = no_args, None
        if plan:  # fine-tune the model on all the data so far
            n = data.n_episodes
            buf_obs[:n], buf_act[:n] = data.obs, data.actions
            p = state["params"]
            state = {"params": p, "target": p, "opt": opt.init(p), "step": jnp.int32(0)}
            obs_d, act_d = jnp.asarray(buf_obs), jnp.asarray(buf_act)
            base = jax.random.fold_in(jax.random.key(cfg.seed), k)
            for _ in tqdm(range(tc.steps // tc.chunk), desc=f"round {k}: model",
                          unit="chunk", leave=False, disable=not show):
                state, metrics = fit(state, obs_d, act_d, n, base)
            summary["pred_error"] = float(metrics["pred0"][-1])
            z_sub = encode(state["params"], jnp.asarray(data.obs[sub_it]))
            args = {**no_args, "target": z_sub[pick], "target_slow": jnp.pad(
                s_sub[pick], ((0, 0), (0, m_max - s_sub.shape[1])))}
            readout = _readout(z_sub, s_sub, m_max)
        out = run(params(slow, cfg.reach * radius, readout), starts, args,
                  jax.random.fold_in(kr, 3))
        new = X.as_dataset(task, *jax.device_get(out), policy=data.meta["policy"])
        # how near the episodes came to the targets (in neighbour radii)
        gap = jnp.linalg.norm(X.project(new.obs, *slow, nd) - s_sub[pick][:, None], axis=-1)
        summary.update(reached=float(jnp.mean(gap.min(1) < cfg.reach * radius)),
                       gap_start=float(jnp.median(gap[:, 0]) / radius),
                       gap_min=float(jnp.median(gap.min(1)) / radius))
        data = X.join(data, new)
        cover.append(X.occupied(X.project(data.obs, *slow, nd), width))
        growth = cover[-1] / max(cover[-2], 1) - 1
        summary.update(episodes=data.n_episodes, env_steps=data.n_episodes * data.n_steps,
                       cover=cover[-1], growth=growth, seconds=time.perf_counter() - t0)
        rounds.append(summary)
        bar.set_postfix(cover=cover[-1], growth=f"{growth:.2f}")
        if on_round is not None:
            on_round(k, data, summary)
        if growth < cfg.min_growth:
            summary["stopped"] = f"cover grew {growth:.1%} < min_growth {cfg.min_growth:.0%}"
            break
    bar.close()
    meta = {**data.meta, "explore": {"config": dataclasses.asdict(cfg), "rounds": rounds}}
    return dataclasses.replace(data, meta=meta), rounds
