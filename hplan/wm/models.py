"""World-model modules (flax NNX): encoders, predictors, macro-action encoders, critic.

Modules are plain objects for building and inspection; training and planning split
them with `nnx.split` into a pure parameter pytree at jit boundaries (see `apply`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class WMConfig:
    """World-model stack. Level 0 steps one base step; level k steps `strides[k]`."""

    latent_dim: int = 16
    hidden: int = 256
    strides: tuple[int, ...] = (1, 8)
    macro_dim: int = 8  # latent macro-action size for levels > 0
    noise_dim: int = 0  # latent variable for non-deterministic worlds (0 = deterministic)
    pixels: bool = False

    @property
    def levels(self) -> int:
        return len(self.strides)

    def __post_init__(self):
        if not self.strides or self.strides[0] != 1:
            raise ValueError(f"strides={self.strides}: level 0 must have stride 1")
        if any(b <= a for a, b in zip(self.strides, self.strides[1:], strict=False)):
            raise ValueError(f"strides={self.strides} must increase level by level")


class MLP(nnx.Module):
    def __init__(self, sizes: list[int], rngs: nnx.Rngs, norm: bool = True):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs)
                                for a, b in zip(sizes[:-1], sizes[1:], strict=True)])
        self.norms = nnx.List([nnx.LayerNorm(b, rngs=rngs) if norm else None
                               for b in sizes[1:-1]])

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer, norm in zip(self.layers[:-1], self.norms, strict=True):
            x = layer(x)
            x = jax.nn.gelu(norm(x) if norm is not None else x)
        return self.layers[-1](x)


class StateEncoder(nnx.Module):
    def __init__(self, obs_dim: int, cfg: WMConfig, rngs: nnx.Rngs):
        self.net = MLP([obs_dim, cfg.hidden, cfg.hidden, cfg.latent_dim], rngs)

    def __call__(self, obs: jax.Array) -> jax.Array:
        return self.net(obs)


class PixelEncoder(nnx.Module):
    """Small CNN for top-down images [H, W, C]."""

    def __init__(self, obs_shape: tuple[int, int, int], cfg: WMConfig, rngs: nnx.Rngs):
        h, w, c = obs_shape
        self.c1 = nnx.Conv(c, 16, (3, 3), strides=(2, 2), rngs=rngs)
        self.c2 = nnx.Conv(16, 32, (3, 3), strides=(2, 2), rngs=rngs)
        flat = 32 * (-(-h // 4)) * (-(-w // 4))
        self.head = MLP([flat, cfg.hidden, cfg.latent_dim], rngs)

    def __call__(self, obs: jax.Array) -> jax.Array:
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:])
        if x.dtype == jnp.uint8:  # frames are stored as observed; scale them here
            x = x.astype(jnp.float32) / 255.0
        x = jax.nn.gelu(self.c2(jax.nn.gelu(self.c1(x))))
        return self.head(x.reshape(x.shape[0], -1)).reshape(*lead, -1)


class Predictor(nnx.Module):
    """z' = z + f(z, action[, noise]): residual, so an untrained model predicts no change."""

    def __init__(self, action_dim: int, cfg: WMConfig, rngs: nnx.Rngs):
        self.noise_dim = cfg.noise_dim
        d = cfg.latent_dim
        self.net = MLP([d + action_dim + cfg.noise_dim, cfg.hidden, cfg.hidden, d], rngs)

    def __call__(self, z: jax.Array, a: jax.Array, noise: jax.Array | None = None) -> jax.Array:
        parts = [z, a]
        if self.noise_dim:
            parts.append(jnp.zeros((*z.shape[:-1], self.noise_dim)) if noise is None else noise)
        return z + self.net(jnp.concatenate(parts, axis=-1))


class MacroEncoder(nnx.Module):
    """Compresses a chunk of `stride` primitive actions into a bounded macro-action."""

    def __init__(self, stride: int, action_dim: int, cfg: WMConfig, rngs: nnx.Rngs):
        self.net = MLP([stride * action_dim, cfg.hidden, cfg.macro_dim], rngs)

    def __call__(self, chunk: jax.Array) -> jax.Array:
        return jnp.tanh(self.net(chunk.reshape(*chunk.shape[:-2], -1)))


class WorldModel(nnx.Module):
    """Shared encoder; one predictor per level; macro encoders for levels > 0."""

    def __init__(self, obs_shape, action_dim: int, cfg: WMConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        if cfg.pixels:
            self.encoder = PixelEncoder(tuple(obs_shape), cfg, rngs)
        else:
            self.encoder = StateEncoder(int(obs_shape[-1]), cfg, rngs)
        dims = [action_dim] + [cfg.macro_dim] * (cfg.levels - 1)
        self.predictors = nnx.List([Predictor(d, cfg, rngs) for d in dims])
        self.macros = nnx.List([MacroEncoder(s, action_dim, cfg, rngs) for s in cfg.strides[1:]])
        self.expander = MLP([cfg.latent_dim, 4 * cfg.latent_dim, 4 * cfg.latent_dim], rngs)

    def encode(self, obs: jax.Array) -> jax.Array:
        return self.encoder(obs)

    def step(self, level: int, z: jax.Array, a: jax.Array, noise=None) -> jax.Array:
        return self.predictors[level](z, a, noise)

    def rollout(self, level: int, z0: jax.Array, actions: jax.Array) -> jax.Array:
        """Latents after each action: [K, d] for `actions` [K, a] (batched via vmap)."""
        pred = self.predictors[level]

        def body(z, a):
            z = pred(z, a)
            return z, z

        _, zs = jax.lax.scan(body, z0, actions)
        return zs


class Critic(nnx.Module):
    """Goal-conditioned cost-to-go `V(z, g) >= 0`, in steps of its level's stride."""

    def __init__(self, cfg: WMConfig, rngs: nnx.Rngs, hidden: int = 256, scale: float = 10.0):
        d = cfg.latent_dim
        self.scale = scale  # typical cost-to-go magnitude, so the net works near unit scale
        self.net = MLP([3 * d, hidden, hidden, hidden, 1], rngs)

    def __call__(self, z: jax.Array, g: jax.Array) -> jax.Array:
        x = jnp.concatenate([z, g, z - g], axis=-1)
        return self.scale * jax.nn.softplus(self.net(x)[..., 0])


def apply(graphdef, params, method: str, *args):
    """Run `method` of the module rebuilt from a pure (graphdef, params) pair."""
    return getattr(nnx.merge(graphdef, params), method)(*args)
