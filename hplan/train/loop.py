"""Generic chunked training loop: jitted `lax.scan` chunks, tqdm, JSON-lines metrics,
and atomic, resumable orbax checkpoints.

Every update's randomness comes from `fold_in(seed, step)`, so a run killed and resumed
from its last checkpoint replays the same updates and ends with the same parameters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from hplan.sharding import local


def restore(mgr: ocp.CheckpointManager, state, ckpt_dir: Path):
    step = mgr.latest_step()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
        return mgr.restore(step, args=ocp.args.StandardRestore(abstract)), step
    except Exception as e:  # orbax raises many types for damaged files
        raise ValueError(
            f"{ckpt_dir}: checkpoint at step {step} is unreadable or does not match this "
            f"model ({type(e).__name__}: {str(e)[:200]}). Nothing was deleted. Fix: move "
            f"{ckpt_dir} aside to start fresh, or pass a different --out") from None


def restore_latest(ckpt_dir: Path, state):
    """The latest checkpoint in `ckpt_dir`, shaped like `state`."""
    mgr = ocp.CheckpointManager(Path(ckpt_dir).resolve())
    if mgr.latest_step() is None:
        raise ValueError(f"{ckpt_dir}: no checkpoint. Fix: finish training first")
    try:
        return restore(mgr, state, ckpt_dir)[0]
    finally:
        mgr.close()


def run(state, chunk_fn: Callable, total_steps: int, chunk: int, ckpt_dir: Path | None,
        desc: str, log_path: Path | None = None, save_every: int = 1,
        show: bool = True, data=None) -> tuple[object, list[dict]]:
    """Advance `state` (a pytree with an int `step` leaf) to `total_steps` updates.

    `chunk_fn(state) -> (state, metrics)`, or `chunk_fn(state, data)` when `data` is
    given, performs `chunk` updates. Returns the final state and the metrics history (one
    dict per chunk, also appended to `log_path`).
    """
    if total_steps % chunk:
        up = -(-total_steps // chunk) * chunk
        raise ValueError(f"{desc}: total_steps={total_steps} must be a multiple of chunk="
                         f"{chunk}. Fix: set its steps (e.g. [stack.train] or [stack.critic] "
                         f"steps) to a multiple of {chunk}, such as {up}")
    mgr = None
    history: list[dict] = []
    if ckpt_dir is not None:
        ckpt_dir = Path(ckpt_dir).resolve()
        mgr = ocp.CheckpointManager(
            ckpt_dir, options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
        if mgr.latest_step() is not None:
            state, _ = restore(mgr, state, ckpt_dir)
    if log_path is not None and log_path.exists():
        done = int(state["step"])
        history = [r for r in map(json.loads, log_path.read_text().splitlines())
                   if r["step"] <= done]
        log_path.write_text("".join(json.dumps(r) + "\n" for r in history))
    start = int(state["step"])
    bar = tqdm(total=total_steps, initial=start, desc=desc, unit="upd", disable=not show,
               dynamic_ncols=True)
    fn = jax.jit(chunk_fn) if data is None else (lambda s, f=jax.jit(chunk_fn): f(s, data))
    for k in range(start // chunk, total_steps // chunk):
        state, metrics = fn(state)
        row = {"step": (k + 1) * chunk,
               **{n: float(np.mean(local(v))) for n, v in metrics.items()}}
        history.append(row)
        if log_path is not None and jax.process_index() == 0:
            with log_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        bar.update(chunk)
        bar.set_postfix({n: f"{v:.3g}" for n, v in row.items() if n != "step"}, refresh=False)
        last = k + 1 == total_steps // chunk
        if mgr is not None and ((k + 1) % save_every == 0 or last):
            mgr.save((k + 1) * chunk, args=ocp.args.StandardSave(state))
    bar.close()
    if mgr is not None:
        mgr.wait_until_finished()
        mgr.close()
    return state, history
