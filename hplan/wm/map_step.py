"""A one-step predictor that reads the map from any frame of it: (frame, z, a) -> z'.

`frame_step` finds the agent in the frame it is given, so it knows only the walls round
where the agent stands now; an imagined rollout leaves that place after one step. This
predictor looks where the latent says the agent is: a head maps z to a distribution over
the frame's locations, and the frame's local features (walls) are pooled under it. It is
fitted with the frame of another time of the same episode (the same map, the agent
elsewhere), so it cannot read the position off the frame; and with a teacher, a content
attention over the current frame (which finds the agent, as `frame_step` does), whose
weights the z-head learns to match. One frame then serves every step of an imagined
rollout, so level-0 rollouts on a map the data never saw respect its walls. Fitted on
the stack's frozen latents, to the encoder's own next latent: nothing is reconstructed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hplan.core import ConfigError
from hplan.wm.fitted import run_updates
from hplan.wm.frame_step import local_features, pool
from hplan.wm.models import MLP, Conv3, PatchConv, frames

PATCH = 2
LOCATES = ("attention", "difference")  # how the teacher finds the agent (`fit`)


def check_config(sharp: float, rollout: int, locate: str) -> None:
    """Validate a config's `map_sharp` / `map_rollout` / `map_locate` (`fit`'s `sharp`,
    `horizon`, `locate`)."""
    if locate not in LOCATES:
        raise ConfigError("map_locate", f"map_locate={locate!r}", f"use one of {LOCATES}")
    if not sharp >= 0:
        raise ConfigError("map_sharp", f"map_sharp={sharp!r}",
                          "use a number >= 0 (0: off), e.g. 4")
    if not (isinstance(rollout, int) and rollout >= 1):
        raise ConfigError("map_rollout", f"map_rollout={rollout!r}",
                          "use a positive number of steps, e.g. 8")


class MapStep(nnx.Module):
    """(map features, z, a) -> (z' - z) / unit; `features(frames)` once a map."""

    def __init__(self, shape: tuple[int, int, int], d: int, a: int, rngs: nnx.Rngs,
                 width: int = 32, hidden: int = 256):
        h, w, c = shape
        self.c1 = PatchConv(c, width, PATCH, rngs)
        self.c2 = Conv3(width, width, rngs)
        self.att = nnx.Linear(width, 1, rngs=rngs)  # the teacher: where the agent is
        self.where = MLP([d, hidden, hidden, -(-h // PATCH) * -(-w // PATCH)], rngs)
        self.head = MLP([width + d + a, hidden, hidden, d], rngs)

    def features(self, obs: jax.Array) -> jax.Array:
        """[N, L, width]: local features at each of the frame's L locations."""
        return local_features(self.c1, self.c2, obs)

    def look(self, feat: jax.Array, z: jax.Array) -> jax.Array:
        """[N, width]: the features where z says the agent is."""
        return pool(jax.nn.softmax(self.where(z), -1), feat)

    def move(self, seen: jax.Array, z: jax.Array, a: jax.Array) -> jax.Array:
        return self.head(jnp.concatenate([seen, z, a], -1))


class MapStepModel(NamedTuple):
    """A fitted `MapStep` as a pure pytree, with `FrameStepModel`'s interface:
    `context(obs)` once (any frame of the map), then `step(ctx, z, a) -> z'`."""

    graphdef: nnx.GraphDef
    params: nnx.State
    unit: float

    def context(self, obs: jax.Array) -> jax.Array:
        return nnx.merge(self.graphdef, self.params).features(obs[None])[0]

    def step(self, ctx: jax.Array, z: jax.Array, a: jax.Array) -> jax.Array:
        net = nnx.merge(self.graphdef, self.params)
        return z + self.unit * net.move(net.look(ctx[None], z[None]), z[None], a[None])[0]


def moved(now: jax.Array, then: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Where two frames of one map differ, as a distribution over the feature locations
    [N, L] (what is in `now` and not in `then`: the agent, wherever the map's walls are
    drawn), and whether they differ at all [N]."""
    x = jnp.maximum(frames(now) - frames(then), 0.0).sum(-1)  # [N, H, W]
    n, h, w = x.shape
    ph, pw = -h % PATCH, -w % PATCH
    x = jnp.pad(x, ((0, 0), (0, ph), (0, pw)))
    x = x.reshape(n, (h + ph) // PATCH, PATCH, (w + pw) // PATCH, PATCH).sum((2, 4))
    x = x.reshape(n, -1)
    mass = x.sum(-1, keepdims=True)
    return x / jnp.maximum(mass, 1e-6), mass[:, 0] > 0


def fit(obs: np.ndarray, z: np.ndarray, actions: np.ndarray, updates: int, seed: int = 0,
        batch: int = 256, lr: float = 1e-3, teach: float = 0.1, horizon: int = 1,
        sharp: float = 0.0, locate: str = "attention",
        progress: bool = False) -> tuple[MapStepModel, float]:
    """A `MapStep` fitted by Adam to recorded episodes: frames [E, T+1, H, W, C], their
    latents [E, T+1, d], actions [E, T, a], one map per episode. With `horizon` k > 1 the
    student is scored on its own k-step rollout: one step's latent move is blurred by the
    frame's pixels (the agent moves a fraction of one), k steps' much less, and a push
    held against a wall goes nowhere. Returns (model, the student's final loss in
    squared step units). `sharp` > 0 standardises the teacher's attention logits over the
    frame's locations and scales them by it: left free, the teacher spread its weight over
    about 4 maze cells round the agent (its peak was 0.02 of 289 locations), so the walls
    it read, and the student learnt to read, were a blur of the neighbourhood.
    `locate = "difference"` replaces the learnt attention by where the current frame
    differs from the other frame drawn (`moved`): the map is the same in both, so what
    differs is the agent, found to a feature location."""
    if locate not in LOCATES:
        raise ValueError(f"locate={locate!r}. Fix: use one of {LOCATES}")
    if obs.ndim != 5:
        raise ValueError(f"frames of shape {obs.shape}: the map step reads episodes of "
                         "images [E, T+1, H, W, C]. Fix: use it on a pixel task "
                         "(obs = 'pixels')")
    e, t1 = obs.shape[:2]
    if not (isinstance(horizon, int) and 1 <= horizon < t1):
        raise ValueError(f"horizon={horizon!r} with episodes of {t1 - 1} steps. Fix: use "
                         f"an integer in [1, {t1 - 1}]")
    if z.shape[:2] != (e, t1) or actions.shape[:2] != (e, t1 - 1):
        raise ValueError(f"{obs.shape[:2]} frames, {z.shape[:2]} latents, "
                         f"{actions.shape[:2]} actions: give latents for every frame "
                         "and one action fewer per episode")
    d = z.shape[-1]
    unit = float(np.sqrt(np.mean(np.sum((z[:, 1:] - z[:, :-1]) ** 2, -1))))
    net = MapStep(obs.shape[2:], d, actions.shape[-1], nnx.Rngs(seed))
    gd, params = nnx.split(net)
    opt = optax.adam(optax.cosine_decay_schedule(lr, updates, 0.1))
    state = opt.init(params)
    o, x, u = jnp.asarray(obs), jnp.asarray(z), jnp.asarray(actions)

    @jax.jit
    def update(prm, state, key):
        ke, kt, ko = jax.random.split(key, 3)
        ep = jax.random.randint(ke, (batch,), 0, e)
        t = jax.random.randint(kt, (batch,), 0, t1 - horizon)
        other = jax.random.randint(ko, (batch,), 0, t1)
        ahead = t[:, None] + jnp.arange(horizon)
        zs, acts = x[ep[:, None], ahead + 1], u[ep[:, None], ahead]  # [B, k, d], [B, k, a]
        z0, z1, a = x[ep, t], zs[:, 0], acts[:, 0]

        def loss(q):
            m = nnx.merge(gd, q)
            now = m.features(o[ep, t])
            if locate == "difference":
                w, ok = moved(o[ep, t], o[ep, other])
            else:
                logit = m.att(now)[..., 0]
                if sharp > 0:
                    logit = sharp * (logit - logit.mean(-1, keepdims=True)) / (
                        logit.std(-1, keepdims=True) + 1e-6)
                w, ok = jax.nn.softmax(logit, -1), jnp.ones(batch, bool)
            teacher = m.move(pool(w, now), z0, a)
            feat = m.features(o[ep, other])

            def roll(zz, aa):
                zz = zz + unit * m.move(m.look(feat, zz), zz, aa)
                return zz, zz

            _, pred = jax.lax.scan(roll, z0, jnp.swapaxes(acts, 0, 1))  # [k, B, d]
            s = jnp.mean(jnp.sum((pred - jnp.swapaxes(zs, 0, 1)) ** 2, -1)) / unit**2
            weight = ok / jnp.maximum(ok.sum(), 1)
            first = jnp.sum(weight * jnp.sum((z0 + unit * teacher - z1) ** 2, -1)) / unit**2
            match = -jnp.sum(weight * jnp.sum(jax.lax.stop_gradient(w)
                                              * jax.nn.log_softmax(m.where(z0), -1), -1))
            return first + s + teach * match, s

        (_, value), grad = jax.value_and_grad(loss, has_aux=True)(prm)
        upd, state = opt.update(grad, state, prm)
        return optax.apply_updates(prm, upd), state, value

    params, value = run_updates(update, params, state, updates, seed, "map step", progress)
    return MapStepModel(gd, params, unit), value
