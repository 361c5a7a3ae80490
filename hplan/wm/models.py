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
    # An inverse-dynamics head (z_t, z_t+1) -> a_t on level 0, trained when
    # TrainConfig.inverse_weight > 0 (stack_config sets this from it).
    inverse: bool = False
    # Pixels only: a glimpse of the frame around each of 4 learned attention points, this
    # many pixels each way (0: off). Keypoints say where things are; a glimpse says what
    # is next to them (a wall beside the agent, or a door). Measured on two-rooms-random
    # stack 0: the level-0 model still carries 0.89 of pushes through the dividing wall
    # (0.93 without; bench/wall_crossing.py), so it is off by default.
    glimpse: int = 0

    @property
    def levels(self) -> int:
        return len(self.strides)

    def __post_init__(self):
        if not self.strides or self.strides[0] != 1:
            raise ValueError(f"strides={self.strides}: level 0 must have stride 1")
        if any(b <= a for a, b in zip(self.strides, self.strides[1:], strict=False)):
            raise ValueError(f"strides={self.strides} must increase level by level")
        if not (isinstance(self.glimpse, int) and 0 <= self.glimpse <= 16):
            raise ValueError(f"glimpse={self.glimpse!r} must be a radius in pixels from 0 "
                             "(off) to 16. Fix: use e.g. glimpse = 4")


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


class PatchConv(nnx.Module):
    """A convolution whose kernel is its stride (non-overlapping patches), written as a
    reshape and a matmul. XLA:CPU runs a real `conv` inside a `while` loop (which is what
    scanned training chunks are) about 15x slower than outside one (jax-ml/jax#12868: a
    pixel JEPA update took 15.6 s in a scan, 1.1 s alone); a matmul has no such cliff.
    Frames not divisible by the patch are zero-padded."""

    def __init__(self, cin: int, cout: int, patch: int, rngs: nnx.Rngs):
        self.patch = patch
        self.linear = nnx.Linear(patch * patch * cin, cout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        p = self.patch
        ph, pw = -h % p, -w % p
        if ph or pw:
            x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))
        hh, ww = (h + ph) // p, (w + pw) // p
        x = x.reshape(n, hh, p, ww, p, c).swapaxes(2, 3).reshape(n, hh, ww, p * p * c)
        return self.linear(x)


def soft_argmax(x: jax.Array) -> jax.Array:
    """Expected (row, col) in [-1, 1] under a softmax over positions, per channel:
    [N, H, W, K] -> [N, 2K]. Smooth in where things are, so a moving agent gives latents
    that move smoothly and linearly with it (spatial softmax, Levine et al. 2016)."""
    n, h, w, k = x.shape
    p = jax.nn.softmax(x.reshape(n, h * w, k), axis=1).reshape(n, h, w, k)
    rows = (jnp.arange(h) + 0.5) / h * 2 - 1
    cols = (jnp.arange(w) + 0.5) / w * 2 - 1
    return jnp.concatenate([jnp.einsum("nhwk,h->nk", p, rows),
                            jnp.einsum("nhwk,w->nk", p, cols)], axis=-1)


class PixelEncoder(nnx.Module):
    """Top-down uint8 frames [H, W, C] -> latent: 4x4 patches -> 16 channels, 16
    keypoints by soft-argmax, then an MLP (~0.1 MFLOP per 32x32 frame).

    Keypoints, not a flattened feature map: on two-rooms, a flattened map (a further 2x2
    patch stage, 512 features) gave a latent that was a jumpy function of the position
    (relative 8-step prediction error 1.27) and shrank towards collapse (latent std 0.03,
    probe R^2 0.78 after 1500 updates); keypoints reach R^2 > 0.99 within 250 updates.
    They say where things are, not what the layout is: maps that change between
    episodes will need more than this."""

    def __init__(self, obs_shape: tuple[int, int, int], cfg: WMConfig, rngs: nnx.Rngs,
                 patch: int = 4, channels: int = 16, keypoints: int = 16):
        c = obs_shape[-1]
        self.c1 = PatchConv(c, channels, patch, rngs)
        self.kp = nnx.Linear(channels, keypoints, rngs=rngs)
        self.glimpse = Glimpse(c, cfg.glimpse, rngs) if cfg.glimpse else None
        extra = self.glimpse.size if self.glimpse is not None else 0
        self.head = MLP([2 * keypoints + extra, cfg.hidden, cfg.latent_dim], rngs)

    def __call__(self, obs: jax.Array) -> jax.Array:
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:])
        if x.dtype == jnp.uint8:  # frames stay uint8 until here, inside the jitted step
            x = x.astype(jnp.float32) / 255.0
        f = jax.nn.gelu(self.c1(x))
        feats = soft_argmax(self.kp(f))
        if self.glimpse is not None:
            feats = jnp.concatenate([feats, self.glimpse(x)], axis=-1)
        return self.head(feats).reshape(*lead, -1)


class Glimpse(nnx.Module):
    """The frame's pixels in a (2r+1)^2 window round each of `maps` attention points,
    averaged under the attention: [N, H, W, C] -> [N, maps * C * (2r+1)^2].

    The attention is a softmax over pixels of a per-pixel linear map of the frame, taken
    as the product of its row and column marginals, so the window is two small matmuls
    (shifted copies of each marginal against the padded frame), not a gather per pixel
    nor a convolution (slow inside a scan on XLA:CPU; see `PatchConv`). Exact for an
    attention that is separable (a round blob), smooth in where the point is."""

    def __init__(self, channels: int, radius: int, rngs: nnx.Rngs, maps: int = 4,
                 init_scale: float = 10.0):
        self.radius, self.maps, self.channels = radius, maps, channels
        # a large initial scale: a flat softmax over every pixel gives the glimpse (and
        # the gradient that would sharpen it) nothing
        self.logits = nnx.Linear(channels, maps, rngs=rngs,
                                 kernel_init=nnx.initializers.normal(init_scale))

    @property
    def size(self) -> int:
        return self.maps * self.channels * (2 * self.radius + 1) ** 2

    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, _ = x.shape
        r = self.radius
        att = jax.nn.softmax(self.logits(x).reshape(n, h * w, self.maps), axis=1)
        att = att.reshape(n, h, w, self.maps)
        rows, cols = att.sum(2), att.sum(1)  # [N, H, M], [N, W, M]
        k = 2 * r + 1
        # shifted[n, d, p', m] = marginal[n, p' - d, m] on the padded axis (length L + 2r)
        def shifts(m):
            pad = jnp.pad(m, ((0, 0), (0, 2 * r), (0, 0)))
            return jnp.stack([jnp.roll(pad, d, axis=1) for d in range(k)], axis=1)
        xp = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
        sr = shifts(rows)  # [N, k, H + 2r, M]
        sc = shifts(cols)  # [N, k, W + 2r, M]
        out = jnp.einsum("ndpm,npqc->ndqmc", sr, xp)  # weight the rows
        out = jnp.einsum("ndqmc,neqm->nmcde", out, sc)  # then the columns
        return out.reshape(n, self.size)


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
        if cfg.inverse:
            self.inverse = MLP([2 * cfg.latent_dim, cfg.hidden, action_dim], rngs)

    def encode(self, obs: jax.Array) -> jax.Array:
        return self.encoder(obs)

    def read_action(self, z: jax.Array, target: jax.Array, unit) -> jax.Array:
        """The inverse head's level-0 action for the step z -> target; `unit`: the step
        scale it was trained with (`jepa.step_rms` of recorded steps)."""
        return self.inverse(jnp.concatenate([z, (target - z) / unit], -1))

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
