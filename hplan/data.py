"""Reward-free offline data: jitted, vmapped exploration rollouts, saved with metadata.

Episodes start at uniformly random free positions (not the task's start cells), so the
data covers the whole layout. Policies are uniform random or temporally correlated
noise (an AR(1) process), which travels further and reaches dead ends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np

from hplan.tasks import Task

POLICIES = ("random", "correlated", "mixed")
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Trajectories: `pos` [N, T+1, 2], `actions` [N, T, A], `obs` [N, T+1, ...]."""

    pos: np.ndarray
    actions: np.ndarray
    obs: np.ndarray
    meta: dict

    @property
    def n_episodes(self) -> int:
        return self.actions.shape[0]

    @property
    def n_steps(self) -> int:
        return self.actions.shape[1]

    def check_task(self, task: Task) -> None:
        """Raise if this data was collected on a different task/layout."""
        want = layout_hash(task)
        if self.meta.get("layout_hash") != want:
            raise ValueError(
                f"data was collected on task {self.meta.get('task')!r} (layout hash "
                f"{self.meta.get('layout_hash')}), not on {task.name!r} ({want}). "
                f"Fix: collect data for this task with `hplan collect --task {task.name}`")


def layout_hash(task: Task) -> str:
    cfg = task.env.config
    key = f"{task.layout.text}|{cfg.max_step}|{cfg.obs_type}|{cfg.slip_prob}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _actions(key: jax.Array, steps: int, correlated: bool, rho: float) -> jax.Array:
    noise = jax.random.normal(key, (steps, 2))
    if not correlated:
        return jax.random.uniform(key, (steps, 2), minval=-1.0, maxval=1.0)

    def ar1(a, e):
        a = rho * a + jnp.sqrt(1 - rho**2) * e
        return a, a

    _, acts = jax.lax.scan(ar1, noise[0], noise[1:])
    return jnp.clip(jnp.concatenate([noise[:1], acts]), -1.0, 1.0)


def make_collect(task: Task, episodes: int, steps: int, policy: str = "mixed",
                 rho: float = 0.9):
    """Return a jitted `collect(key) -> (pos, actions)` for a batch of episodes."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; use one of {POLICIES}")
    if episodes <= 0 or steps <= 0:
        raise ValueError(f"episodes={episodes} and steps={steps} must both be positive")
    env = task.env
    free = jnp.asarray(task.layout.free_cells, jnp.float32)

    def episode(key, correlated):
        k_cell, k_jit, k_act, k_env = jax.random.split(key, 4)
        cell = free[jax.random.randint(k_cell, (), 0, free.shape[0])]
        pos0 = cell + 0.5 + jax.random.uniform(k_jit, (2,), minval=-0.45, maxval=0.45)
        acts = jax.lax.cond(correlated, lambda k: _actions(k, steps, True, rho),
                            lambda k: _actions(k, steps, False, rho), k_act)
        state = env.reset_at(k_env, pos0)

        def body(s, a):
            s = env.step(s, a)
            return s, s.env_state.pos

        _, pos = jax.lax.scan(body, state, acts)
        return jnp.concatenate([pos0[None], pos]), acts

    def collect(key):
        keys = jax.random.split(key, episodes)
        if policy == "mixed":
            corr = jnp.arange(episodes) % 2 == 1
        else:
            corr = jnp.full((episodes,), policy == "correlated")
        pos, acts = jax.vmap(episode)(keys, corr)
        chex.assert_shape(pos, (episodes, steps + 1, 2))
        return pos, acts

    return jax.jit(collect)


def collect(task: Task, key: jax.Array, episodes: int, steps: int = 64,
            policy: str = "mixed", chunk: int = 1024) -> Dataset:
    """Collect `episodes` reward-free trajectories of `steps` actions each."""
    from tqdm.auto import tqdm

    chunk = min(chunk, episodes)
    run = make_collect(task, chunk, steps, policy)
    parts = []
    n_chunks = -(-episodes // chunk)
    for i in tqdm(range(n_chunks), desc=f"collect {task.name}", unit="chunk",
                  disable=n_chunks == 1):
        parts.append(jax.device_get(run(jax.random.fold_in(key, i))))
    pos = np.concatenate([p for p, _ in parts])[:episodes]
    acts = np.concatenate([a for _, a in parts])[:episodes]
    obs = observe(task, pos) if task.env.config.obs_type == "state" else np.zeros((0,))
    meta = {
        "format": FORMAT_VERSION, "task": task.name, "layout_hash": layout_hash(task),
        "episodes": episodes, "steps": steps, "policy": policy,
        "obs_type": task.env.config.obs_type, "obs_shape": list(np.shape(task.env.observe(
            jnp.zeros(2)))), "action_size": task.env.action_size,
    }
    return Dataset(pos=pos, actions=acts, obs=obs, meta=meta)


def observe(task: Task, pos: np.ndarray) -> np.ndarray:
    """Observations for positions of any leading shape."""
    flat = jnp.asarray(pos).reshape(-1, 2)
    obs = jax.jit(jax.vmap(task.env.observe))(flat)
    return np.asarray(obs).reshape(*pos.shape[:-1], *obs.shape[1:])


def save(data: Dataset, out: str | Path) -> Path:
    """Write `data.npz` + `meta.json` into `out`; each file lands by atomic rename."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, write in (
        ("data.npz", lambda f: np.savez(f, pos=data.pos, actions=data.actions, obs=data.obs)),
        ("meta.json", lambda f: f.write(json.dumps(data.meta, indent=2).encode())),
    ):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, out / name)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return out


def load(path: str | Path, task: Task | None = None) -> Dataset:
    """Load a dataset saved by `save`; with `task`, check it belongs to that task."""
    path = Path(path)
    if not (path / "data.npz").is_file() or not (path / "meta.json").is_file():
        raise ValueError(f"{path}: no dataset here (expected data.npz and meta.json). "
                         "Fix: pass the --out directory of `hplan collect`")
    meta = json.loads((path / "meta.json").read_text())
    with np.load(path / "data.npz") as z:
        pos, actions, obs = z["pos"], z["actions"], z["obs"]
    n, t = actions.shape[:2]
    if (meta.get("episodes"), meta.get("steps")) != (n, t):
        raise ValueError(f"{path}: meta.json says {meta.get('episodes')}x{meta.get('steps')} "
                         f"but data.npz holds {n}x{t}. Fix: re-collect the data")
    if pos.shape != (n, t + 1, 2):
        raise ValueError(f"{path}: pos has shape {pos.shape}, expected {(n, t + 1, 2)} to "
                         f"match actions {actions.shape}. Fix: re-collect the data")
    data = Dataset(pos=pos, actions=actions, obs=obs, meta=meta)
    if task is not None:
        data.check_task(task)
        if obs.size == 0:
            data = dataclasses.replace(data, obs=observe(task, pos))
    return data


def coverage(task: Task, data: Dataset) -> np.ndarray:
    """Visit counts per cell, [H, W]."""
    cells = np.floor(data.pos.reshape(-1, 2)).astype(int)
    counts = np.zeros(task.layout.shape, np.int64)
    np.add.at(counts, (cells[:, 0], cells[:, 1]), 1)
    return counts
