"""Exploration data that travels, the env-generic half: rollouts of any policy from
chosen starts, where the agent is (slow features), how rare a state is among the data,
and a coverage proxy that needs no oracle. `hplan.train.explore` runs the rounds with a
learned model on top of these.

Nothing here knows what an observation means. Episodes start from the env's
`explore_reset` (round 0: a few spread-out draws, each shared by many episodes) or, where
the env has the hook, `reset_at(key, xy)` at a state already in the data (`xy`: the
goal-space point the env reported there in `metrics["xy"]`, stored in `aux["xy"]`: the
hook `GoalWrapper` uses); without `reset_at`, later rounds start from `explore_reset`
too. Rarity and coverage are measured on slow features of the observations, with radii
taken from the data itself (k-th-neighbour distances), so they are scale-free.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hplan.core import explore_reset
from hplan.data.dataset import FORMAT_VERSION, Dataset


class Explorer(NamedTuple):
    """A policy whose parameters are an argument (one compiled rollout serves every
    round): `init(arg, obs, key) -> carry` (`arg`: this episode's row of the per-episode
    inputs), `step(params, carry, obs, key) -> (carry, action)`."""

    init: Any
    step: Any


def random_action(key: jax.Array, prev: jax.Array, correlated: jax.Array,
                  rho: float) -> jax.Array:
    """Uniform in [-1, 1], or an AR(1) step from `prev` (travels further) when
    `correlated`."""
    k_u, k_n = jax.random.split(key)
    uniform = jax.random.uniform(k_u, prev.shape, minval=-1.0, maxval=1.0)
    ar = jnp.clip(rho * prev + jnp.sqrt(1.0 - rho**2) * jax.random.normal(k_n, prev.shape),
                  -1.0, 1.0)
    return jnp.where(correlated, ar, uniform)


def xy_size(env) -> int:
    """The size of the env's goal-space point `metrics["xy"]` where it can restart at one
    (`reset_at`), else 0: later rounds then start from `explore_reset`. A family of maps
    has none: a point alone does not say which map it was on."""
    if not hasattr(env, "reset_at") or getattr(env, "n_contexts", 1) > 1:
        return 0
    shape = jax.eval_shape(explore_reset(env), jax.random.key(0)).metrics.get("xy")
    return int(shape.shape[-1]) if shape is not None else 0


def make_rollout(env, episodes: int, steps: int, explorer: Explorer):
    """A jitted `run(params, starts, args, key) -> (obs [E, T+1, ...], actions [E, T, A],
    aux)`: `episodes` episodes side by side (vmap), `steps` actions each (lax.scan).

    `starts`: {"key": [E] keys for `explore_reset`, "xy": [E, xy_size(env)] points, "at":
    [E] bool: start at `xy` with `reset_at` instead}. `args`: the explorer's per-episode
    inputs."""
    reset = explore_reset(env)
    reset_at = env.reset_at if xy_size(env) else None

    def start(s):
        if reset_at is None:
            return reset(s["key"])
        return jax.lax.cond(s["at"], lambda: reset_at(s["key"], s["xy"]),
                            lambda: reset(s["key"]))

    def episode(params, s, arg, key):
        state = start(s)
        k_init, k_run = jax.random.split(key)
        carry = explorer.init(arg, state.obs, k_init)

        def body(c, k):
            st, pc = c
            pc, a = explorer.step(params, pc, st.obs, k)
            st = env.step(st, a)
            return (st, pc), (st.obs, a, {n: v for n, v in st.metrics.items() if n == "xy"})

        _, (obs, acts, aux) = jax.lax.scan(body, (state, carry),
                                           jax.random.split(k_run, steps))
        first = {n: v for n, v in state.metrics.items() if n == "xy"}
        obs = jnp.concatenate([state.obs[None], obs])
        aux = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, aux)
        return obs, acts, aux

    def run(params, starts, args, key):
        keys = jax.random.split(key, episodes)
        return jax.vmap(episode, (None, 0, 0, 0))(params, starts, args, keys)

    return jax.jit(run)


def first_starts(key: jax.Array, episodes: int, n_starts: int, xy_dim: int) -> dict:
    """Round 0: `n_starts` `explore_reset` draws, shared round-robin by the episodes."""
    keys = jax.random.split(key, n_starts)
    return {"key": keys[jnp.arange(episodes) % n_starts],
            "xy": jnp.zeros((episodes, max(xy_dim, 1)), jnp.float32),
            "at": jnp.zeros(episodes, bool)}


def data_starts(key: jax.Array, data: Dataset, episodes: int, xy_dim: int,
                at: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Later rounds: states of the data, `at` = (episode, step) indices per episode
    (default: drawn uniformly over every step of every episode), started with `reset_at`
    (`xy_dim` > 0 and the data stores `xy`), else fresh `explore_reset` draws."""
    k_at, k_r = jax.random.split(key)
    keys = jax.random.split(k_r, episodes)
    if not xy_dim or data.xy is None:
        return {"key": keys, "xy": jnp.zeros((episodes, max(xy_dim, 1)), jnp.float32),
                "at": jnp.zeros(episodes, bool)}
    i, t = subsample(k_at, data, episodes, replace=True) if at is None else at
    return {"key": keys, "xy": jnp.asarray(data.xy[i, t], jnp.float32),
            "at": jnp.ones(episodes, bool)}


def subsample(key: jax.Array, data: Dataset, n: int, replace: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
    """(episode, step) indices of `n` states drawn uniformly from every step of every
    episode (without replacement unless `replace`; at most all of them)."""
    total = data.n_episodes * (data.n_steps + 1)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))
    flat = np.sort(rng.choice(total, n if replace else min(n, total), replace=replace))
    return np.divmod(flat, data.n_steps + 1)


def slow_features(obs: np.ndarray, max_change: float = 0.05, max_dims: int = 8
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Linear slow feature analysis of episodes `obs` [N, T+1, ...]: `(mu, w)` such that
    `(x - mu) @ w` are the whitened directions whose mean squared change per step is below
    `max_change` of their variance (at least the slowest one, at most `max_dims`). Linear,
    so meant for vector observations (the covariance is D x D). Where the agent is changes
    slowly; how it moves (velocities, joints) changes fast, so this finds the world's
    "where" without being told which features hold it."""
    x = np.asarray(obs, np.float64).reshape(obs.shape[0], obs.shape[1], -1)
    mu = x.mean((0, 1))
    lam, v = np.linalg.eigh(np.cov((x - mu).reshape(-1, x.shape[-1]), rowvar=False))
    keep = lam > 1e-9 * lam.max()
    p = v[:, keep] / np.sqrt(lam[keep])  # whitening
    dy = np.diff((x - mu) @ p, axis=1).reshape(-1, p.shape[1])
    eta, u = np.linalg.eigh(dy.T @ dy / len(dy))  # ascending: slowest first
    m = min(max(1, int(np.sum(eta < max_change))), max_dims)
    return mu.astype(np.float32), (p @ u[:, :m]).astype(np.float32)


def project(obs, mu, w, obs_ndim: int = 1) -> jax.Array:
    """Observations [..., *obs_shape] (`obs_ndim` trailing axes) onto slow features
    [..., m]."""
    lead = obs.shape[: obs.ndim - obs_ndim]
    return (jnp.asarray(obs, jnp.float32).reshape(*lead, -1) - mu) @ w


@jax.jit
def _pairwise(x: jax.Array) -> jax.Array:
    sq = jnp.sum(x * x, -1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * x @ x.T
    return jnp.sqrt(jnp.maximum(d2, 0.0))


def kth_neighbour(x: jax.Array, k: int) -> jax.Array:
    """Distance of each point [S, D] to its k-th nearest other point: large = rare."""
    d = _pairwise(jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1))
    return -jax.lax.top_k(-d, k + 1)[0][:, k]  # column 0 is the point itself


def rare_spread(x: jax.Array, rarity: jax.Array, n: int, frac: float) -> jax.Array:
    """`n` indices of points [S, D] among the rarest `frac`, spread out: farthest-point
    sampling from the rarest one (so targets do not all fall on one stretch of the
    frontier); past the number of candidates, they repeat."""
    m = max(1, int(round(frac * rarity.shape[0])))
    cand = jax.lax.top_k(rarity, m)[1]
    xc = jnp.asarray(x, jnp.float32)[cand]

    def body(i, c):
        picked, dmin = c
        j = jnp.argmax(dmin)
        dmin = jnp.minimum(dmin, jnp.linalg.norm(xc - xc[j], axis=-1))
        return picked.at[i].set(j), dmin

    k = min(n, m)
    picked, _ = jax.lax.fori_loop(0, k, body, (jnp.zeros(k, jnp.int32),
                                                jnp.full(m, jnp.inf)))
    return cand[picked[jnp.arange(n) % k]]


def occupied(x, width: float) -> int:
    """How many cells of a grid of `width` points [..., m] occupy: grows with the volume
    the data spans, not with how densely it fills it."""
    cells = np.floor(np.asarray(x, np.float64).reshape(-1, x.shape[-1]) / width)
    return int(len(np.unique(cells.astype(np.int64), axis=0)))


def join(a: Dataset, b: Dataset) -> Dataset:
    """The episodes of `a` then `b` (same steps per episode)."""
    if a.n_steps != b.n_steps:
        raise ValueError(f"cannot join episodes of {a.n_steps} and {b.n_steps} steps")
    return Dataset(obs=np.concatenate([a.obs, b.obs]),
                   actions=np.concatenate([a.actions, b.actions]),
                   aux={k: np.concatenate([a.aux[k], b.aux[k]]) for k in a.aux},
                   meta={**a.meta, "episodes": a.n_episodes + b.n_episodes})


def as_dataset(task, obs, actions, aux, policy: str, **extra) -> Dataset:
    """Rollout arrays as a `Dataset` with the meta `hplan collect` writes."""
    obs = np.asarray(obs)
    actions = np.asarray(actions, np.float32)
    meta = {"format": FORMAT_VERSION, "task": task.name, "env": task.spec.env,
            "env_key": task.key(), "episodes": int(actions.shape[0]),
            "steps": int(actions.shape[1]), "policy": policy,
            "obs_shape": list(obs.shape[2:]), "obs_dtype": str(obs.dtype),
            "action_size": int(actions.shape[-1]), **extra}
    return Dataset(obs=obs, actions=actions, aux={k: np.asarray(v) for k, v in aux.items()},
                   meta=meta)
