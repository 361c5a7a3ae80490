"""JEPA training of the world-model stack: multi-step latent prediction at every level,
with VICReg (variance/covariance, on the latent and an expander) or an EMA target encoder
against collapse. All levels train jointly on one shared encoder, so every level's
predicted latents live in the same space and a high level's prediction is directly a
subgoal for the level below.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hplan.sharding import shard_batch
from hplan.wm.models import WMConfig, WorldModel

ANTI_COLLAPSE = ("vicreg", "ema", "none")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 8000
    batch: int = 256
    lr: float = 1e-3
    # Cosine decay of the rate to lr * lr_final over `steps` (1: constant). Decayed, the
    # level-0 one-step error halved on maze32, and the large-maze stack whose model was
    # wrong at a wall corner (hier-2 0.65 there) was fixed (1.00).
    lr_final: float = 0.05
    rollout: tuple[int, ...] = (8, 3)  # prediction steps per level (in that level's strides)
    anti_collapse: str = "vicreg"
    var_weight: float = 1.0
    cov_weight: float = 0.04
    ema_decay: float = 0.99
    # Optional inverse-dynamics term on level 0: the action must be readable from two
    # consecutive latents, so a part of the state the action moves (a velocity) cannot
    # be squeezed out of the latent. Needs WMConfig.inverse (stack_config sets it).
    inverse_weight: float = 0.0
    # Covariance penalty on the latent itself too (default: only through the expander).
    latent_cov_weight: float = 0.0
    # Variance within each level-0 window (std over time >= temporal_std per dim). When
    # maps change between episodes, the map alone satisfies the batch variance hinge and
    # predicts itself perfectly: the latent drops the agent (two-rooms-random: position
    # probe R^2 0.03, the door's row 0.98). Only what moves within an episode meets this.
    temporal_var_weight: float = 0.0
    temporal_std: float = 0.1
    # A floor on every level-0 step: |z_t+1 - z_t| >= step_floor * |a_t| * (the batch's
    # typical latent step per unit of action). VICReg's per-dimension variance can be met
    # by the state's longest axis alone, and the prediction loss then squashes the others:
    # on door-closes a step along the short axis of the east room moved the latent 10-30x
    # less than one along the long axis, below the model's error, so the planner could
    # not tell "up" from "stay". 0 weight: off.
    step_floor_weight: float = 0.0
    step_floor: float = 0.5
    # The level-0 prediction error again, in units of the window's mean squared step.
    # Where the latent mostly holds what does not move (the map of a task family), one
    # step moves it little and the plain error is negligible beside the anti-collapse
    # terms: the two-rooms-random-patch2 model missed by a full step (1.2x the error of
    # predicting no move at all). Measured at weight 1 (bench/tasks/two-rooms-random-
    # patch2-steppred.toml, stack 0): the one-step error fell to 0.37x that of predicting
    # no move (0.27x at weight 0.1), but the latent lost the map (the family graph level
    # chose a wrong map for 0.98 / 0.81 of subgoals) and success fell (tuning episodes:
    # hier-2-data-family 16 -> 5 of 20, flat-mpc-critic 6 -> 4). 0: off.
    step_pred_weight: float = 0.0
    chunk: int = 250
    seed: int = 0

    def __post_init__(self):
        if self.anti_collapse not in ANTI_COLLAPSE:
            raise ValueError(f"anti_collapse={self.anti_collapse!r}; use one of {ANTI_COLLAPSE}")
        if not 0.0 <= self.lr_final <= 1.0:
            raise ValueError(f"lr_final={self.lr_final!r} is a fraction of lr. Fix: use a "
                             "number in [0, 1] (1: constant rate)")


def span(wm: WMConfig, tc: TrainConfig) -> int:
    """Base steps one training window needs."""
    if len(tc.rollout) != wm.levels:
        raise ValueError(f"rollout={tc.rollout} needs one entry per level ({wm.levels})")
    return max(k * s for k, s in zip(tc.rollout, wm.strides, strict=True))


def var_cov(z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """VICReg variance hinge (std >= 1 per dim) and off-diagonal covariance penalty."""
    z = z.reshape(-1, z.shape[-1])
    z = z - z.mean(0)
    std = jnp.sqrt(z.var(0) + 1e-4)
    var = jnp.mean(jax.nn.relu(1.0 - std))
    cov = (z.T @ z) / (z.shape[0] - 1)
    off = cov - jnp.diag(jnp.diag(cov))
    return var, jnp.sum(off**2) / z.shape[-1]


def check_window(actions, window: int) -> None:
    t = actions.shape[1]
    if t < window:
        raise ValueError(f"episodes have {t} steps but training windows need {window}. Fix: "
                         f"collect with --steps >= {window} or shorten TrainConfig.rollout")


def make_sampler(window: int, batch: int, n=None):
    """`sample(key, obs, actions)`: uniform windows of `window` actions and `window + 1`
    observations, on device, from the first `n` episodes (default all; may be traced, so
    a buffer that fills up round by round trains without recompiling)."""

    def sample(key, obs, actions):
        check_window(actions, window)
        t = actions.shape[1]
        ki, kt = jax.random.split(key)
        i = jax.random.randint(ki, (batch,), 0, actions.shape[0] if n is None else n)
        t0 = jax.random.randint(kt, (batch,), 0, t - window + 1)
        idx = t0[:, None] + jnp.arange(window + 1)
        o = obs[i[:, None], idx]
        a = actions[i[:, None], idx[:, :-1]]
        return o, a

    return sample


def level_windows(wm: WMConfig, tc: TrainConfig, o: jax.Array, a: jax.Array, level: int):
    """Observations every `stride` steps and the matching action chunks for one level."""
    s, k = wm.strides[level], tc.rollout[level]
    obs = o[:, : k * s + 1 : s]
    chunks = a[:, : k * s].reshape(a.shape[0], k, s, a.shape[-1])
    return obs, chunks


def window_frames(wm: WMConfig, tc: TrainConfig) -> tuple[np.ndarray, list[np.ndarray]]:
    """The window offsets any level looks at (sorted), and per level the positions of its
    own frames among them: levels share frames (0 and 8 with strides (1, 8)), and the
    loss encodes each frame of a window once, which for pixels is most of the work."""
    per = [np.arange(0, k * s + 1, s) for k, s in zip(tc.rollout, wm.strides, strict=True)]
    frames = np.unique(np.concatenate(per))
    return frames, [np.searchsorted(frames, f) for f in per]


def make_loss(graphdef, wm: WMConfig, tc: TrainConfig):
    if tc.inverse_weight > 0 and not wm.inverse:
        raise ValueError(f"inverse_weight={tc.inverse_weight} needs the model's inverse "
                         "head. Fix: set WMConfig.inverse=True (stack_config does it)")

    def loss_fn(params, target_params, o, a):
        model = nnx.merge(graphdef, params)
        tgt_enc = nnx.merge(graphdef, target_params).encoder if tc.anti_collapse == "ema" else None
        metrics = {}
        total = 0.0
        z_all = []
        if wm.pixels:  # each frame once (state training keeps its exact former sums)
            frames, pos = window_frames(wm, tc)
            z_win = model.encode(o[:, frames])  # [B, F, d]
            t_win = (jax.lax.stop_gradient(tgt_enc(o[:, frames])) if tgt_enc is not None
                     else z_win)
        for level in range(wm.levels):
            obs, chunks = level_windows(wm, tc, o, a, level)
            if wm.pixels:
                z, target = z_win[:, pos[level]], t_win[:, pos[level]]
            else:
                z = model.encode(obs)  # [B, K+1, d]
                target = jax.lax.stop_gradient(tgt_enc(obs)) if tgt_enc is not None else z
            z_all.append(z)
            z0 = z[:, 0]
            acts = chunks[:, :, 0] if level == 0 else model.macros[level - 1](chunks)
            pred = jax.vmap(lambda z0_, u, lv=level: model.rollout(lv, z0_, u))(z0, acts)
            err = jnp.mean(jnp.sum((pred - target[:, 1:]) ** 2, -1))
            metrics[f"pred{level}"] = err
            total = total + err
            if level == 0 and tc.step_pred_weight > 0:
                metrics["step_pred"] = step_pred_loss(pred, target)
                total = total + tc.step_pred_weight * metrics["step_pred"]
            if level == 0 and tc.inverse_weight > 0:
                # The step, scaled to unit size: one step moves a latent little.
                dz = z[:, 1:] - z[:, :-1]
                dz = dz / jax.lax.stop_gradient(step_rms(dz))
                pair = jnp.concatenate([z[:, :-1], dz], axis=-1)
                inv = jnp.mean(jnp.sum((model.inverse(pair) - acts) ** 2, -1))
                metrics["inverse"] = inv
                total = total + tc.inverse_weight * inv
            if level == 0 and tc.step_floor_weight > 0:
                floor = step_floor_loss(z, acts, tc.step_floor)
                metrics["step_floor"] = floor
                total = total + tc.step_floor_weight * floor
        if tc.temporal_var_weight > 0:
            tstd = jnp.sqrt(jnp.var(model.moving(z_all[0]), axis=1) + 1e-6)  # [B, d]
            tvar = jnp.mean(jax.nn.relu(tc.temporal_std - tstd))
            metrics["tvar"] = tvar
            total = total + tc.temporal_var_weight * tvar
        z = jnp.concatenate([zz.reshape(-1, wm.latent_dim) for zz in z_all])
        if tc.anti_collapse == "vicreg":
            # Variance on the latent itself keeps its scale; covariance only through the
            # expander, so the latent may stay a near-linear image of the (low-dim) state
            # instead of folding itself to decorrelate all of its dimensions.
            v1, c1 = var_cov(z)
            v2, c2 = var_cov(model.expander(z))
            total = (total + tc.var_weight * (v1 + v2) + tc.cov_weight * c2
                     + tc.latent_cov_weight * c1)
            metrics["var"], metrics["cov"] = v1 + v2, c2
        metrics["std"] = jnp.mean(jnp.std(z, axis=0))
        metrics["loss"] = total
        return total, metrics

    return loss_fn


def init_state(model: WorldModel, tc: TrainConfig):
    graphdef, params = nnx.split(model)
    lr = (tc.lr if tc.lr_final == 1.0
          else optax.cosine_decay_schedule(tc.lr, tc.steps, alpha=tc.lr_final))
    opt = optax.adamw(lr, weight_decay=1e-5)
    state = {"params": params, "target": params, "opt": opt.init(params),
             "step": jnp.int32(0)}
    return graphdef, opt, state


def make_update(graphdef, opt, wm: WMConfig, tc: TrainConfig, base=None, mesh=None, n=None):
    """`update(state, obs, actions) -> (state, metrics)`: one JEPA step; its randomness
    comes from `fold_in(seed, step)`, so a resumed run replays the same updates. `n`:
    train on the first `n` episodes only (see `make_sampler`)."""
    sample = make_sampler(span(wm, tc), tc.batch, n)
    loss_fn = make_loss(graphdef, wm, tc)
    base = jax.random.key(tc.seed) if base is None else base

    def update(state, obs, actions):
        o, a = sample(jax.random.fold_in(base, state["step"]), obs, actions)
        o, a = shard_batch(o, mesh), shard_batch(a, mesh)  # data parallel over `mesh`
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], state["target"], o, a)
        upd, opt_state = opt.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], upd)
        target = optax.incremental_update(params, state["target"], 1 - tc.ema_decay)
        return {"params": params, "target": target, "opt": opt_state,
                "step": state["step"] + 1}, metrics

    return update


def scanned(update, length: int):
    """`chunk(state, data) -> (state, metrics)`: `length` updates `update(state, data)`
    in one `lax.scan`, the data an argument (so no constant of the compiled chunk)."""

    def chunk(state, data):
        return jax.lax.scan(lambda s, _: update(s, data), state, None, length=length)

    return chunk


def make_chunk(graphdef, opt, obs, actions, wm: WMConfig, tc: TrainConfig, mesh=None):
    """(chunk, data), run as `chunk(state, data) -> (state, metrics)`: `tc.chunk` scanned
    updates; with a `mesh`, each batch is split over its devices (see `hplan.sharding`).
    The data is an argument, not a constant of the compiled chunk: as a constant it made
    compile time grow with the dataset (4096 pixel episodes: 27 s more)."""
    check_window(actions, span(wm, tc))
    update = make_update(graphdef, opt, wm, tc, mesh=mesh)
    return scanned(lambda s, d: update(s, *d), tc.chunk), (obs, actions)


def make_train(wm: WMConfig, tc: TrainConfig, obs, actions):
    """purejaxrl shape: a pure `train(seed) -> (params, metrics per update)` over the
    whole run, no I/O, so `jax.jit(jax.vmap(train))(seeds)` trains several stacks at once.
    (`hplan.train.pipeline` runs the same updates in checkpointed chunks.)"""
    obs, actions = jnp.asarray(obs), jnp.asarray(actions)
    check_window(actions, span(wm, tc))
    graphdef, _ = nnx.split(build_model(obs.shape[2:], actions.shape[-1], wm, 0))

    def train(seed):
        model = WorldModel(tuple(obs.shape[2:]), actions.shape[-1], wm,
                           nnx.Rngs(jax.random.key(seed)))
        _, params = nnx.split(model)
        _, opt, _ = init_state(model, tc)
        state = {"params": params, "target": params, "opt": opt.init(params),
                 "step": jnp.int32(0)}
        update = make_update(graphdef, opt, wm, tc, jax.random.key(seed))
        state, metrics = scanned(lambda s, d: update(s, *d), tc.steps)(state, (obs, actions))
        return state["params"], metrics

    return train


def build_model(obs_shape, action_dim: int, wm: WMConfig, seed: int = 0) -> WorldModel:
    return WorldModel(tuple(obs_shape), action_dim, wm, nnx.Rngs(seed))


def step_floor_loss(z: jax.Array, acts: jax.Array, floor: float) -> jax.Array:
    """Hinge on steps shorter than `floor` x the typical latent move per unit of action,
    in units of the typical step (scale-free). A blocked step (same observation twice)
    has no gradient: both ends are the same function of the parameters."""
    move = jnp.sqrt(jnp.sum((z[:, 1:] - z[:, :-1]) ** 2, -1) + 1e-8)  # [B, K]
    push = jnp.sqrt(jnp.sum(acts**2, -1))
    typical = jax.lax.stop_gradient(jnp.sqrt(jnp.mean(move**2) / (jnp.mean(push**2) + 1e-8)))
    unit = jax.lax.stop_gradient(jnp.sqrt(jnp.mean(move**2))) + 1e-6
    return jnp.mean(jax.nn.relu(floor * typical * push - move)) / unit


def step_pred_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Squared rollout error [B, K, d] vs target [B, K+1, d] in units of the mean squared
    step. The unit is differentiated too: with it stopped, shrinking the latent paid, and
    two-rooms-random-patch2 collapsed (latent std 0.0006) at weight 1."""
    err = jnp.mean(jnp.sum((pred - target[:, 1:]) ** 2, -1))
    return err / (jnp.mean(jnp.sum((target[:, 1:] - target[:, :-1]) ** 2, -1)) + 1e-8)


def step_rms(dz: jax.Array) -> jax.Array:
    """RMS per coordinate of latent steps: the inverse head reads steps divided by it."""
    return jnp.sqrt(jnp.mean(dz**2)) + 1e-6


def encode_all(graphdef, params, obs: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Encode observations of any leading shape, in batches, to [..., d]."""
    model = nnx.merge(graphdef, params)
    enc = jax.jit(model.encode)
    lead = obs.shape[: obs.ndim - (3 if model.cfg.pixels else 1)]
    flat = obs.reshape(-1, *obs.shape[len(lead):])
    out = np.concatenate([np.asarray(enc(flat[i: i + batch]))
                          for i in range(0, len(flat), batch)])
    chex.assert_rank(out, 2)
    return out.reshape(*lead, -1)
