"""World-model diagnostics that need no oracle: collapse detectors, linear position probes,
multi-step prediction error. (Walls, geodesics and critic rank quality come from the
env's oracle where it has one.)"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

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
    """Linear map (W [d, k], b [k]) from latent to position; lets guardrails act on latents."""
    z, pos = z.reshape(-1, z.shape[-1]), pos.reshape(-1, pos.shape[-1])
    x = np.c_[z, np.ones(len(z))]
    w, *_ = np.linalg.lstsq(x, pos, rcond=None)
    return w[:-1].astype(np.float32), w[-1].astype(np.float32)


def prediction_error(pred: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Relative multi-step error per horizon: E|z_hat_k - z_k|^2 / E|z_k - mean z|^2.

    `pred` [B, K, d] predicted latents after each step; `z` [B, K+1, d] true latents.
    """
    err = ((pred - z[:, 1:]) ** 2).sum(-1)  # [B, K]
    var = ((z[:, 1:] - z[:, 1:].reshape(-1, z.shape[-1]).mean(0)) ** 2).sum(-1).mean()
    return err / var


def l2_value(z, g):
    return jnp.linalg.norm(z - g)
