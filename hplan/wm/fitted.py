"""Side models fitted to a trained stack (`frame_step`, `map_step`), kept beside it.

Fitting one takes minutes on a CPU, and every agent build asked for it again. A fitted
model is saved under the stack's directory (orbax: written to a temporary name and
renamed, so a killed run leaves nothing half-written), then restored by later builds.
The key names what was fitted (kind, updates, seed); the stack directory already names
the task, configuration and seed the latents came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx


def run_updates(update: Callable, params, state, updates: int, seed: int, desc: str,
                progress: bool = False):
    """`updates` calls of `update(params, state, key) -> (params, state, loss)`, a tqdm
    bar if `progress`; returns (params, the last loss)."""
    key = jax.random.key(seed)
    steps = range(updates)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=desc, leave=False)
    value = jnp.inf
    for it in steps:
        params, state, value = update(params, state, jax.random.fold_in(key, it))
    return params, float(value)


def load_or_fit(path: Path | None, skeleton: Callable[[], nnx.Module],
                fit: Callable[[], tuple], wrap: Callable) -> tuple:
    """`fit() -> model` (a NamedTuple (graphdef, params, unit)), or the one saved at `path`.
    `skeleton()` builds an unfitted module of the same shapes to restore into; `wrap`
    is the model's type."""
    meta = None if path is None else path / "unit.json"
    if meta is not None and meta.is_file():
        gd, params = nnx.split(skeleton())
        pure = params.to_pure_dict()
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, pure)
        try:
            with ocp.StandardCheckpointer() as ckpt:
                restored = ckpt.restore((path / "params").resolve(), abstract)
        except Exception as e:  # orbax raises many types for damaged files
            raise ValueError(f"{path}: a saved fitted model is unreadable or does not match "
                             f"({type(e).__name__}: {str(e)[:200]}). Fix: delete {path} "
                             "to fit it again") from None
        nnx.replace_by_pure_dict(params, restored)
        return wrap(gd, params, json.loads(meta.read_text())["unit"])
    model = fit()
    if path is not None and jax.process_index() == 0:
        path.mkdir(parents=True, exist_ok=True)
        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save((path / "params").resolve(), model.params.to_pure_dict(), force=True)
        tmp = meta.with_suffix(".tmp")
        tmp.write_text(json.dumps({"unit": model.unit}))
        tmp.replace(meta)  # written last: its presence means the params are complete
    return model
