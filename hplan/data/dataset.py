"""Offline data as the agent saw it: observations (uint8 images stay uint8), actions of
the env's `action_size`, and optional `aux` arrays (the goal-space position `xy`, for
diagnostics and probes only). Saved as `data.npz` + `meta.json`, atomically."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np

FORMAT_VERSION = 2


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """`obs` [N, T+1, ...], `actions` [N, T, A], `aux` {name: [N, T+1, ...]}, `meta`."""

    obs: np.ndarray
    actions: np.ndarray
    aux: dict
    meta: dict

    @property
    def n_episodes(self) -> int:
        return self.actions.shape[0]

    @property
    def n_steps(self) -> int:
        return self.actions.shape[1]

    @property
    def xy(self) -> np.ndarray | None:
        """Goal-space positions [N, T+1, d] where the env reports them."""
        return self.aux.get("xy")

    @property
    def groups(self) -> np.ndarray | None:
        """The map of each episode [N] where the env has several (`info["context"]`):
        graphs over the data never join two maps."""
        ctx = self.aux.get("context")
        return None if ctx is None else np.asarray(ctx)[:, 0]

    def check_task(self, task) -> None:
        """Raise if this data was collected in a different environment."""
        want = task.key()
        if self.meta.get("env_key") != want:
            raise ValueError(
                f"data was collected on task {self.meta.get('task')!r} (env "
                f"{self.meta.get('env')!r}, key {self.meta.get('env_key')}), not on "
                f"{task.name!r} (env {task.spec.env!r}, key {want}). Fix: collect data for "
                f"this task with `hplan collect --task {task.name}`")

    def nbytes(self) -> int:
        return self.obs.nbytes + self.actions.nbytes + sum(a.nbytes for a in self.aux.values())


def save(data: Dataset, out: str | Path) -> Path:
    """Write `data.npz` (compressed) + `meta.json` into `out`; each lands by atomic rename."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"obs": data.obs, "actions": data.actions,
              **{f"aux_{k}": v for k, v in data.aux.items()}}
    for name, write in (
        ("data.npz", lambda f: np.savez_compressed(f, **arrays)),
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


def load(path: str | Path, task=None) -> Dataset:
    """Load a dataset saved by `save`; with `task`, check it belongs to that task's env."""
    path = Path(path)
    if not (path / "data.npz").is_file() or not (path / "meta.json").is_file():
        raise ValueError(f"{path}: no dataset here (expected data.npz and meta.json). "
                         "Fix: pass the --out directory of `hplan collect`")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: dataset format {meta.get('format')}, this hplan reads "
                         f"{FORMAT_VERSION}. Fix: re-collect the data with `hplan collect`")
    with np.load(path / "data.npz") as z:
        obs, actions = z["obs"], z["actions"]
        aux = {k[4:]: z[k] for k in z.files if k.startswith("aux_")}
    n, t = actions.shape[:2]
    if (meta.get("episodes"), meta.get("steps")) != (n, t):
        raise ValueError(f"{path}: meta.json says {meta.get('episodes')}x{meta.get('steps')} "
                         f"but data.npz holds {n}x{t}. Fix: re-collect the data")
    if obs.shape[:2] != (n, t + 1):
        raise ValueError(f"{path}: obs has shape {obs.shape}, expected {(n, t + 1)} leading "
                         f"to match actions {actions.shape}. Fix: re-collect the data")
    data = Dataset(obs=obs, actions=actions, aux=aux, meta=meta)
    if task is not None:
        data.check_task(task)
    return data
