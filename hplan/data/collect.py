"""Reward-free exploration data: jitted, vmapped rollouts of random action policies.

Episodes start from the env's `explore_reset` (spread over the world: the point maze
draws a random free position), not the task's starts, so the data covers the world.
Policies are uniform random or temporally correlated noise (an AR(1) process), which
travels further and reaches dead ends. The goal wrappers play no part: this is data of
the world, stepped through `env.unwrapped`.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from hplan.core import explore_reset
from hplan.data.dataset import FORMAT_VERSION, Dataset

POLICIES = ("random", "correlated", "mixed")


def _actions(key: jax.Array, steps: int, size: int, correlated: bool, rho: float) -> jax.Array:
    noise = jax.random.normal(key, (steps, size))
    if not correlated:
        return jax.random.uniform(key, (steps, size), minval=-1.0, maxval=1.0)

    def ar1(a, e):
        a = rho * a + jnp.sqrt(1 - rho**2) * e
        return a, a

    _, acts = jax.lax.scan(ar1, noise[0], noise[1:])
    return jnp.clip(jnp.concatenate([noise[:1], acts]), -1.0, 1.0)


def make_collect(env, episodes: int, steps: int, policy: str = "mixed", rho: float = 0.9):
    """A jitted `collect(key) -> (obs [N, T+1, ...], actions [N, T, A], aux)` on `env`."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}. Fix: use one of {POLICIES}")
    if episodes <= 0 or steps <= 0:
        raise ValueError(f"episodes={episodes} and steps={steps} must both be positive. "
                         "Fix: pass positive counts")
    reset = explore_reset(env)
    size = env.action_size

    def episode(key, correlated):
        k_env, k_act = jax.random.split(key)
        acts = jax.lax.cond(correlated, lambda k: _actions(k, steps, size, True, rho),
                            lambda k: _actions(k, steps, size, False, rho), k_act)
        state = reset(k_env)

        def keep(s):  # where it is, and which map it is on (a family of maps)
            out = {k: v for k, v in s.metrics.items() if k == "xy"}
            if getattr(env, "n_contexts", 1) > 1:
                out["context"] = s.info["context"]
            return out

        def body(s, a):
            s = env.step(s, a)
            return s, (s.obs, keep(s))

        _, (obs, aux) = jax.lax.scan(body, state, acts)
        first = keep(state)
        obs = jnp.concatenate([state.obs[None], obs])
        aux = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, aux)
        return obs, acts, aux

    def collect(key):
        keys = jax.random.split(key, episodes)
        if policy == "mixed":
            corr = jnp.arange(episodes) % 2 == 1
        else:
            corr = jnp.full((episodes,), policy == "correlated")
        obs, acts, aux = jax.vmap(episode)(keys, corr)
        chex.assert_shape(acts, (episodes, steps, size))
        return obs, acts, aux

    return jax.jit(collect)


def collect(task, key: jax.Array, episodes: int, steps: int = 64, policy: str = "mixed",
            chunk: int = 1024) -> Dataset:
    """Collect `episodes` reward-free trajectories of `steps` actions in `task`'s world."""
    from tqdm.auto import tqdm

    env = task.env.unwrapped
    chunk = min(chunk, episodes)
    run = make_collect(env, chunk, steps, policy)
    parts = []
    n_chunks = -(-episodes // chunk)
    for i in tqdm(range(n_chunks), desc=f"collect {task.name}", unit="chunk",
                  disable=n_chunks == 1):
        parts.append(jax.device_get(run(jax.random.fold_in(key, i))))
    obs = np.concatenate([p[0] for p in parts])[:episodes]
    acts = np.concatenate([p[1] for p in parts])[:episodes].astype(np.float32)
    aux = {k: np.concatenate([p[2][k] for p in parts])[:episodes] for k in parts[0][2]}
    meta = {"format": FORMAT_VERSION, "task": task.name, "env": task.spec.env,
            "env_key": task.key(), "episodes": episodes, "steps": steps,
            "policy": policy, "obs_shape": list(obs.shape[2:]), "obs_dtype": str(obs.dtype),
            "action_size": int(acts.shape[-1])}
    return Dataset(obs=obs, actions=acts, aux=aux, meta=meta)
