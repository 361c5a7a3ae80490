"""A one-step predictor that also reads the frame: (frame, z, a) -> z'.

The level-0 model sees only the latent, and a pixel latent trained JEPA-style does not
keep the wall beside the agent: the model carries about 9 in 10 pushes into a two-rooms
wall through it, and the agent presses into walls it means to go round
(`bench/frozen_predictor.py`). The wall is in the frame. This predictor adds to (z, a) a
translation-invariant summary of the frame (patch features, a 3x3 convolution, pooled
by a learned attention over locations), so what it learns of a wall beside the agent
holds wherever the wall is. It is trained on the encoder's own next latent (no pixels
are reconstructed), after the stack, on the stack's frozen latents.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hplan.wm.fitted import run_updates
from hplan.wm.models import MLP, Conv3, PatchConv, frames


def local_features(c1: PatchConv, c2: Conv3, obs: jax.Array) -> jax.Array:
    """[N, L, C]: patch features and a 3x3 convolution at each of the frame's L locations."""
    x = jax.nn.gelu(c2(jax.nn.gelu(c1(frames(obs)))))
    return x.reshape(x.shape[0], -1, x.shape[-1])


def pool(w: jax.Array, feat: jax.Array) -> jax.Array:
    """[N, C]: features [N, L, C] averaged under weights over locations [N, L]."""
    return jnp.einsum("nl,nlc->nc", w, feat)


class FrameStep(nnx.Module):
    """(frame, z, a) -> (z' - z) / unit."""

    def __init__(self, channels: int, d: int, a: int, rngs: nnx.Rngs, width: int = 32):
        self.c1 = PatchConv(channels, width, 2, rngs)
        self.c2 = Conv3(width, width, rngs)
        self.att = nnx.Linear(width, 1, rngs=rngs)
        self.head = MLP([width + d + a, 256, 256, d], rngs)

    def context(self, obs: jax.Array) -> jax.Array:
        """[N, width]: the frame's local features where the attention looks (the agent)."""
        x = local_features(self.c1, self.c2, obs)
        return pool(jax.nn.softmax(self.att(x)[..., 0], axis=1), x)

    def move(self, ctx: jax.Array, z: jax.Array, a: jax.Array) -> jax.Array:
        return self.head(jnp.concatenate([ctx, z, a], -1))

    def __call__(self, obs: jax.Array, z: jax.Array, a: jax.Array) -> jax.Array:
        return self.move(self.context(obs), z, a)


class FrameStepModel(NamedTuple):
    """A fitted `FrameStep` as a pure pytree: `context(obs)` once a control step, then
    `step(ctx, z, a) -> z'` as often as the planner asks."""

    graphdef: nnx.GraphDef
    params: nnx.State
    unit: float  # the recorded steps' rms latent move

    def context(self, obs: jax.Array) -> jax.Array:
        return nnx.merge(self.graphdef, self.params).context(obs[None])[0]

    def step(self, ctx: jax.Array, z: jax.Array, a: jax.Array) -> jax.Array:
        net = nnx.merge(self.graphdef, self.params)
        return z + self.unit * net.move(ctx[None], z[None], a[None])[0]


def fit(obs: np.ndarray, z0: np.ndarray, z1: np.ndarray, actions: np.ndarray,
        updates: int, seed: int = 0, batch: int = 256, lr: float = 1e-3,
        progress: bool = False) -> tuple[FrameStepModel, float]:
    """A `FrameStep` fitted by Adam to recorded transitions (frames [N, H, W, C], latents
    z0 -> z1 [N, d], actions [N, a]); returns (model, final loss in squared step units)."""
    if obs.ndim != 4:
        raise ValueError(f"frames of shape {obs.shape}: the frame step reads images "
                         "[N, H, W, C]. Fix: use it on a pixel task (obs = 'pixels')")
    if not (len(obs) == len(z0) == len(z1) == len(actions)):
        raise ValueError(f"{len(obs)} frames, {len(z0)} / {len(z1)} latents and "
                         f"{len(actions)} actions: give one of each per transition")
    unit = float(np.sqrt(np.mean(np.sum((z1 - z0) ** 2, -1))))
    net = FrameStep(obs.shape[-1], z0.shape[-1], actions.shape[-1], nnx.Rngs(seed))
    gd, params = nnx.split(net)
    opt = optax.adam(lr)
    state = opt.init(params)
    o, x0, x1, u = (jnp.asarray(v) for v in (obs, z0, z1, actions))

    @jax.jit
    def update(prm, state, key):
        i = jax.random.randint(key, (batch,), 0, x0.shape[0])

        def loss(q):
            pred = x0[i] + unit * nnx.merge(gd, q)(o[i], x0[i], u[i])
            return jnp.mean(jnp.sum((pred - x1[i]) ** 2, -1)) / unit**2

        value, grad = jax.value_and_grad(loss)(prm)
        upd, state = opt.update(grad, state, prm)
        return optax.apply_updates(prm, upd), state, value

    params, value = run_updates(update, params, state, updates, seed, "frame step", progress)
    return FrameStepModel(gd, params, unit), value
