"""World-model modules (flax NNX): encoders, predictors, macro-action encoders, critic.

Modules are plain objects for building and inspection; training and planning split
them with `nnx.split` into a pure parameter pytree at jit boundaries (see `apply`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from hplan.core import ConfigError


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
    # Pixels only: channels per location of a spatial latent (0: off, keypoints). The
    # latent is then the encoder's feature map (one location per 4x4-pixel patch),
    # flattened, plus a keypoint vector (latent_dim = locations x spatial + 16); level 0
    # steps the map by a 3x3 convolution, so a wall beside the agent is in its view (the
    # PLDM / eb_jepa design). Measured on two-rooms-random stack 0: wall crossing 0.92 ->
    # 0.52, but its critic did not learn (Spearman 0.12) and every agent got worse, so
    # it is off by default.
    spatial: int = 0
    # Pixels only: the keypoint encoder's patch (pixels a side), so its feature map has
    # one location per patch. 4 on 32x32 frames of a 16x16 map is 2 cells a location: the
    # two-rooms-random latent then held the agent's position to a median 0.28 cells (MLP
    # probe; linear 0.48), about the success radius.
    patch: int = 4
    # Pixels only: the keypoint logits standardised over the frame's locations, per
    # channel, and multiplied by this before the soft-argmax (0: off, the raw logits).
    # Raw, the softmaxes of a diverse-mazes stack came out nearly flat (keypoint std
    # 0.002-0.01 of the frame): each keypoint blends the whole frame, walls and agent, so
    # the latent names the training maps and misplaces the agent on a new one.
    sharp: float = 0.0
    # Pixels only: keypoints from each input channel on its own (a depthwise first
    # stage): a frame whose layers are separate things (walls, agent) gets keypoints
    # that follow each thing alone, whatever the others look like.
    split_channels: bool = False

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
        if not (isinstance(self.patch, int) and 1 <= self.patch <= 8):
            raise ValueError(f"patch={self.patch!r} must be an integer from 1 to 8 pixels. "
                             "Fix: use e.g. patch = 2")
        if not (isinstance(self.spatial, int) and 0 <= self.spatial <= 64):
            raise ValueError(f"spatial={self.spatial!r} must be channels per location from "
                             "0 (off) to 64. Fix: use e.g. spatial = 8")
        if not 0 <= self.sharp <= 100:
            raise ValueError(f"sharp={self.sharp!r} must be from 0 (off) to 100. Fix: use "
                             "e.g. sharp = 4")


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


def frames(obs: jax.Array) -> jax.Array:
    """Frames of any leading shape -> [N, H, W, C] floats in [0, 1]; they stay uint8 until
    here, inside the jitted step."""
    x = obs.reshape(-1, *obs.shape[-3:])
    return x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x


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
        self.split = cfg.split_channels
        if self.split:
            self.c1s = nnx.List([PatchConv(1, channels, patch, rngs) for _ in range(c)])
            self.kps = nnx.List([nnx.Linear(channels, keypoints, rngs=rngs)
                                 for _ in range(c)])
        else:
            self.c1 = PatchConv(c, channels, patch, rngs)
            self.kp = nnx.Linear(channels, keypoints, rngs=rngs)
        self.glimpse = Glimpse(c, cfg.glimpse, rngs) if cfg.glimpse else None
        extra = self.glimpse.size if self.glimpse is not None else 0
        n_kp = keypoints * (c if self.split else 1)
        self.head = MLP([2 * n_kp + extra, cfg.hidden, cfg.latent_dim], rngs)
        self.sharp = cfg.sharp

    def keypoint_logits(self, x: jax.Array) -> jax.Array:
        if not self.split:
            return self.kp(jax.nn.gelu(self.c1(x)))
        return jnp.concatenate([kp(jax.nn.gelu(c1(x[..., i: i + 1])))
                                for i, (c1, kp) in enumerate(zip(self.c1s, self.kps,
                                                                 strict=True))], axis=-1)

    def __call__(self, obs: jax.Array) -> jax.Array:
        lead = obs.shape[:-3]
        x = frames(obs)
        logits = self.keypoint_logits(x)
        if self.sharp > 0:
            mu = jnp.mean(logits, axis=(1, 2), keepdims=True)
            sd = jnp.std(logits, axis=(1, 2), keepdims=True)
            logits = (logits - mu) / (sd + 1e-6) * self.sharp
        feats = soft_argmax(logits)
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


# Channels inside the spatial encoder and level-0 predictor. Compute grows with their
# square: with 32 and a 3x3 stage in the encoder an update took 11x a keypoint model's.
SPATIAL_WIDTH = 16
SPATIAL_VECTOR = 16  # the keypoint vector beside the map


class Conv3(nnx.Module):
    """A 3x3 'same' convolution over [..., H, W, C] as nine shifted copies and one matmul
    (im2col): no `conv` op, so no XLA:CPU slowdown inside a scan (see `PatchConv`)."""

    def __init__(self, cin: int, cout: int, rngs: nnx.Rngs):
        self.linear = nnx.Linear(9 * cin, cout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h, w = x.shape[-3:-1]
        pad = [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
        xp = jnp.pad(x, pad)
        cols = [xp[..., i: i + h, j: j + w, :] for i in range(3) for j in range(3)]
        return self.linear(jnp.concatenate(cols, axis=-1))


def spatial_shape(obs_shape, cfg: WMConfig, patch: int = 4) -> tuple[int, int, int]:
    """(rows, cols, channels) of a spatial latent's map for frames of `obs_shape`."""
    h, w = obs_shape[-3:-1]
    return -(-h // patch), -(-w // patch), cfg.spatial


def check_spatial(obs_shape, cfg: WMConfig) -> None:
    """Refuse a spatial latent on vector observations or of the wrong size (ConfigError,
    a ValueError); `hplan.train.pipeline.for_task` calls it before any data is made."""
    if not cfg.pixels:
        raise ConfigError("spatial", "a spatial latent needs pixel frames, and these "
                          "observations are a vector",
                          'set obs = "pixels" in [env_args], or [stack.wm] spatial = 0')
    h, w, c = spatial_shape(obs_shape, cfg)
    want = h * w * c + SPATIAL_VECTOR
    if cfg.latent_dim != want:
        raise ConfigError("latent_dim", f"latent_dim={cfg.latent_dim} but a spatial latent "
                          f"of {c} channels on {h}x{w} locations ({obs_shape[-3]}x"
                          f"{obs_shape[-2]} frames, 4x4-pixel patches) plus its "
                          f"{SPATIAL_VECTOR}-d keypoint vector has {want}",
                          f"set latent_dim = {want}")


class SpatialEncoder(nnx.Module):
    """Frames -> [a feature map (one location per 4x4 patch, `spatial` channels), flat;
    a keypoint vector as `PixelEncoder`'s]. The map keeps "agent here" and "wall here"
    apart (no pooling), for the predictor; the vector is a smooth image of where things
    are, for costs and critics: on a map alone two far-apart positions are simply
    different, and the critic learned nothing (Spearman 0.09)."""

    def __init__(self, obs_shape: tuple[int, int, int], cfg: WMConfig, rngs: nnx.Rngs,
                 patch: int = 4, channels: int = SPATIAL_WIDTH, keypoints: int = 16):
        self.c1 = PatchConv(obs_shape[-1], channels, patch, rngs)
        self.out = nnx.Linear(channels, cfg.spatial, rngs=rngs)
        self.kp = nnx.Linear(channels, keypoints, rngs=rngs)
        self.head = MLP([2 * keypoints, cfg.hidden, SPATIAL_VECTOR], rngs)

    def __call__(self, obs: jax.Array) -> jax.Array:
        lead = obs.shape[:-3]
        f = jax.nn.gelu(self.c1(frames(obs)))
        m = self.out(f).reshape(f.shape[0], -1)
        z = jnp.concatenate([m, self.head(soft_argmax(self.kp(f)))], -1)
        return z.reshape(*lead, -1)


class SpatialPredictor(nnx.Module):
    """Level 0 on a spatial latent. The map steps by a 3x3 convolution over it with the
    action broadcast to every location (then two 1x1 layers), residual: one base step
    moves the agent less than a location, so a 3x3 neighbourhood holds the agent, where
    it goes, and any wall in the way. The vector steps by an MLP of (vector, action, the
    convolution's features pooled under a learned attention over the map, i.e. read
    where the agent is): so whether the way is blocked reaches the vector too."""

    def __init__(self, action_dim: int, shape: tuple[int, int, int], cfg: WMConfig,
                 rngs: nnx.Rngs, hidden: int = 2 * SPATIAL_WIDTH, heads: int = 2):
        self.shape = shape
        self.noise_dim = cfg.noise_dim
        c = shape[-1]
        u = action_dim + cfg.noise_dim
        self.c1 = Conv3(c + u, hidden, rngs)
        self.mid = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, c, rngs=rngs)
        self.att = nnx.Linear(c, heads, rngs=rngs)
        self.vec = MLP([SPATIAL_VECTOR + u + heads * hidden, cfg.hidden, cfg.hidden,
                        SPATIAL_VECTOR], rngs)

    def __call__(self, z: jax.Array, a: jax.Array, noise: jax.Array | None = None) -> jax.Array:
        lead = z.shape[:-1]
        h, w, c = self.shape
        m, v = z[..., : h * w * c].reshape(*lead, h, w, c), z[..., h * w * c:]
        parts = [a]
        if self.noise_dim:
            parts.append(jnp.zeros((*lead, self.noise_dim)) if noise is None else noise)
        u = jnp.concatenate(parts, axis=-1)
        ub = jnp.broadcast_to(u[..., None, None, :], (*lead, h, w, u.shape[-1]))
        f = jax.nn.gelu(self.mid(jax.nn.gelu(self.c1(jnp.concatenate([m, ub], -1)))))
        att = jax.nn.softmax(self.att(m).reshape(*lead, h * w, -1), axis=-2)
        pooled = jnp.einsum("...lk,...lf->...kf", att, f.reshape(*lead, h * w, -1))
        m = m + self.out(f)
        v = v + self.vec(jnp.concatenate([v, u, pooled.reshape(*lead, -1)], -1))
        return jnp.concatenate([m.reshape(*lead, -1), v], -1)


class SpatialExpander(nnx.Module):
    """VICReg's expander for a spatial latent: per location on the map, [..., H*W, 4C],
    with the vector as one more sample row of its own expander. A dense expander of a
    528-d latent would cost a 2112^2 covariance per update."""

    def __init__(self, shape: tuple[int, int, int], rngs: nnx.Rngs):
        self.shape = shape
        c = shape[-1]
        self.net = MLP([c, 4 * c, 4 * c], rngs)
        self.vec = MLP([SPATIAL_VECTOR, 4 * c, 4 * c], rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        h, w, c = self.shape
        m = self.net(z[..., : h * w * c].reshape(*z.shape[:-1], h * w, c))
        return jnp.concatenate([m, self.vec(z[..., h * w * c:])[..., None, :]], -2)


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
        dims = [action_dim] + [cfg.macro_dim] * (cfg.levels - 1)
        # Parameters are drawn in this order (encoder, predictors, macros, expander): keep
        # it, or every stack trained from a seed gets other weights than before.
        if cfg.spatial:
            check_spatial(obs_shape, cfg)
            shape = spatial_shape(obs_shape, cfg)
            self.encoder = SpatialEncoder(tuple(obs_shape), cfg, rngs)
            # levels > 0 move the agent several locations a step: a dense predictor
            self.predictors = nnx.List([SpatialPredictor(dims[0], shape, cfg, rngs)]
                                       + [Predictor(d, cfg, rngs) for d in dims[1:]])
        else:
            if cfg.pixels:
                self.encoder = PixelEncoder(tuple(obs_shape), cfg, rngs, patch=cfg.patch)
            else:
                self.encoder = StateEncoder(int(obs_shape[-1]), cfg, rngs)
            self.predictors = nnx.List([Predictor(d, cfg, rngs) for d in dims])
        self.macros = nnx.List([MacroEncoder(s, action_dim, cfg, rngs) for s in cfg.strides[1:]])
        if cfg.spatial:
            self.expander = SpatialExpander(shape, rngs)
        else:
            self.expander = MLP([cfg.latent_dim, 4 * cfg.latent_dim, 4 * cfg.latent_dim], rngs)
        if cfg.inverse:
            self.inverse = MLP([2 * cfg.latent_dim, cfg.hidden, action_dim], rngs)

    def encode(self, obs: jax.Array) -> jax.Array:
        return self.encoder(obs)

    def moving(self, z: jax.Array) -> jax.Array:
        """The part of a latent that should move within an episode (for the temporal
        variance term): a spatial latent's vector; its map is mostly still walls."""
        if self.cfg.spatial:
            return z[..., -SPATIAL_VECTOR:]
        return z

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
