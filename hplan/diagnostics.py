"""World-model and critic diagnostics: collapse detectors, position probes, multi-step
prediction error per level (near walls separately), critic rank quality and descent."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import spearmanr

from hplan.layout import Layout

COLLAPSE_STD = 0.05  # VICReg asks for std >= 1 per dimension; healthy runs sit at 0.3-1


def latent_stats(z: np.ndarray) -> dict:
    """Per-dimension std and effective rank (exp of the singular-value entropy)."""
    z = z.reshape(-1, z.shape[-1])
    zc = z - z.mean(0)
    s = np.linalg.svd(zc[:20000], compute_uv=False)
    p = s / max(s.sum(), 1e-12)
    erank = float(np.exp(-(p * np.log(p + 1e-12)).sum())) if s.sum() > 1e-8 else 0.0
    std = z.std(0)
    # Pure prediction loss collapses by shrinking every dimension (the rank, being scale
    # free, can stay high on the residual noise), so the scale is the primary detector.
    return {"latent_std": std.tolist(), "latent_std_min": float(std.min()),
            "latent_std_max": float(std.max()), "effective_rank": erank,
            "collapsed": bool(erank < 1.5 or std.max() < COLLAPSE_STD)}


def probe_r2(z: np.ndarray, pos: np.ndarray, seed: int = 0) -> float:
    """R^2 of a least-squares linear probe latent -> position, on a held-out 20%."""
    z, pos = z.reshape(-1, z.shape[-1]), pos.reshape(-1, pos.shape[-1])
    order = np.random.default_rng(seed).permutation(len(z))[:50000]
    z, pos = z[order], pos[order]
    x = np.c_[z, np.ones(len(z))]
    n = int(0.8 * len(x))
    w, *_ = np.linalg.lstsq(x[:n], pos[:n], rcond=None)
    r = pos[n:] - x[n:] @ w
    return float(1 - (r**2).sum() / ((pos[n:] - pos[n:].mean(0)) ** 2).sum())


def fit_probe(z: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear map (W [d, 2], b [2]) from latent to position; lets guardrails act on latents."""
    z, pos = z.reshape(-1, z.shape[-1]), pos.reshape(-1, 2)
    x = np.c_[z, np.ones(len(z))]
    w, *_ = np.linalg.lstsq(x, pos, rcond=None)
    return w[:-1].astype(np.float32), w[-1].astype(np.float32)


def near_wall(layout: Layout, pos: np.ndarray, margin: float = 0.2) -> np.ndarray:
    """True where a point is within `margin` cells of a wall cell (8-neighbourhood)."""
    cells = np.floor(pos).astype(int)
    frac = pos - cells
    walls = np.pad(layout.walls, 1, constant_values=True)
    out = np.zeros(pos.shape[:-1], bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == dc == 0:
                continue
            w = walls[cells[..., 0] + 1 + dr, cells[..., 1] + 1 + dc]
            dist_r = np.where(dr < 0, frac[..., 0], np.where(dr > 0, 1 - frac[..., 0], 0.0))
            dist_c = np.where(dc < 0, frac[..., 1], np.where(dc > 0, 1 - frac[..., 1], 0.0))
            out |= w & (np.hypot(dist_r, dist_c) < margin)
    return out


def prediction_error(pred: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Relative multi-step error per horizon: E|z_hat_k - z_k|^2 / E|z_k - mean z|^2.

    `pred` [B, K, d] predicted latents after each step; `z` [B, K+1, d] true latents.
    """
    err = ((pred - z[:, 1:]) ** 2).sum(-1)  # [B, K]
    var = ((z[:, 1:] - z[:, 1:].reshape(-1, z.shape[-1]).mean(0)) ** 2).sum(-1).mean()
    return err / var


def critic_quality(value_fn, z_cells: np.ndarray, layout: Layout, n_pairs: int = 20000,
                   seed: int = 0) -> dict:
    """Spearman rank correlation with BFS distance, and descent consistency.

    `z_cells` [n_free, d] latents of free-cell centres (in `layout.free_cells` order);
    `value_fn(z, g) -> scalar`. Descent consistency: share of (cell, goal) pairs where the
    neighbouring cell with the lowest cost-to-go is one step closer along the BFS path.
    """
    dist = layout.distances()
    n = len(z_cells)
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, n_pairs), rng.integers(0, n, n_pairs)
    keep = (a != b) & (dist[a, b] > 0)
    a, b = a[keep], b[keep]
    vf = jax.jit(jax.vmap(value_fn))
    v = np.asarray(vf(jnp.asarray(z_cells[a]), jnp.asarray(z_cells[b])))
    rho = float(spearmanr(v, dist[a, b]).statistic)
    # Descent: evaluate every free neighbour of `a` toward `b`.
    idx = layout.cell_index()
    idx = np.pad(idx, 1, constant_values=-1)
    free = layout.free_cells
    nb = np.stack([idx[free[:, 0] + 1 + dr, free[:, 1] + 1 + dc]
                   for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))], 1)  # [n, 4]
    cand = nb[a]  # [m, 4]
    valid = cand >= 0
    safe = np.where(valid, cand, 0)
    vn = np.asarray(vf(jnp.asarray(z_cells[safe.reshape(-1)]),
                       jnp.asarray(np.repeat(z_cells[b], 4, axis=0)))).reshape(-1, 4)
    vn = np.where(valid, vn, np.inf)
    best = safe[np.arange(len(a)), vn.argmin(1)]
    descent = float(np.mean(dist[best, b] < dist[a, b]))
    return {"spearman": rho, "descent_consistency": descent, "pairs": int(len(a))}


def l2_value(z, g):
    return jnp.linalg.norm(z - g)
