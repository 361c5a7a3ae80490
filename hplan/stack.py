"""Train, diagnose, save and load a whole world-model stack (models + critics) for a task.

An output directory holds `config.json`, orbax checkpoints (`wm/`, `critic0/`,
`critic_top/`), JSON-lines logs, `metrics.json` and `diagnostics.png`. Re-running the
same command on the same directory resumes; a directory holding a different run is
refused rather than overwritten.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from hplan import critic as critic_lib
from hplan import diagnostics as diag
from hplan import trainer
from hplan import wm_train as wmt
from hplan.data import Dataset, layout_hash, observe
from hplan.models import WMConfig
from hplan.tasks import Task


@dataclasses.dataclass(frozen=True, eq=False)
class Stack:
    """A trained stack: pure (graphdef, params) pairs plus a latent->position probe."""

    wm_cfg: WMConfig
    wm_graph: object
    wm_params: object
    critic_graph: object
    critic_params: tuple  # (level 0, top level)
    probe: tuple[np.ndarray, np.ndarray]
    metrics: dict

    def model(self):
        return nnx.merge(self.wm_graph, self.wm_params)

    def critic(self, which: int):
        """which=0: level-0 critic (base steps); which=-1/1: top-level critic (top strides)."""
        return nnx.merge(self.critic_graph, self.critic_params[0 if which == 0 else 1])


def _json(obj) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def _config(task: Task, data: Dataset, wm: WMConfig, tc, cc) -> dict:
    return {"task": task.name, "layout_hash": layout_hash(task), "wm": _json(wm),
            "train": _json(tc), "critic": _json(cc),
            "data": {k: data.meta.get(k) for k in ("episodes", "steps", "policy")}}


def _check_out(out: Path, config: dict) -> None:
    path = out / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise ValueError(
                f"{out} already holds a run with a different configuration (differs in: "
                f"{', '.join(diff)}). Nothing was changed. Fix: pass a new --out, or repeat "
                "the original command to resume it")
    else:
        out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2))
        tmp.replace(path)


def _obs_arrays(task: Task, data: Dataset) -> np.ndarray:
    return data.obs if data.obs.size else observe(task, data.pos)


def check_data(task: Task, data: Dataset, wm: WMConfig, tc) -> None:
    """Everything that can be wrong with the inputs, before any compute."""
    data.check_task(task)
    obs_shape = tuple(task.env.observe(jnp.zeros(2)).shape)
    if tuple(data.meta.get("obs_shape", obs_shape)) != obs_shape:
        raise ValueError(f"data observations have shape {data.meta['obs_shape']} but task "
                         f"{task.name!r} observes {obs_shape}. Fix: re-collect the data")
    if data.actions.shape[-1] != task.env.action_size:
        raise ValueError(f"data actions have size {data.actions.shape[-1]}, the task's "
                         f"{task.env.action_size}. Fix: re-collect the data")
    if wm.pixels != (task.env.config.obs_type == "pixels"):
        raise ValueError(f"WMConfig.pixels={wm.pixels} but the task observes "
                         f"{task.env.config.obs_type!r}. Fix: set pixels to match")
    need = wmt.span(wm, tc)
    if data.n_steps < need:
        raise ValueError(f"episodes have {data.n_steps} steps, training needs {need}. Fix: "
                         f"collect with --steps >= {need}")


def train(task: Task, data: Dataset, out: str | Path | None, wm: WMConfig = WMConfig(),
          tc: wmt.TrainConfig = wmt.TrainConfig(),
          cc: critic_lib.CriticConfig = critic_lib.CriticConfig(),
          show: bool = True) -> Stack:
    """Train the stack (world model, then critics on its frozen latents) and diagnose it."""
    check_data(task, data, wm, tc)
    out = Path(out) if out is not None else None
    if out is not None:
        _check_out(out, _config(task, data, wm, tc, cc))
    obs = _obs_arrays(task, data)
    model = wmt.build_model(obs.shape[2:], data.actions.shape[-1], wm, tc.seed)
    graph, opt, state = wmt.init_state(model, tc)
    chunk = wmt.make_chunk(graph, opt, jnp.asarray(obs), jnp.asarray(data.actions), wm, tc)
    state, wm_hist = trainer.run(
        state, chunk, tc.steps, tc.chunk, out / "wm" if out else None, "world model",
        out / "metrics.jsonl" if out else None, show=show)
    params = state["params"]
    z = wmt.encode_all(graph, params, obs)
    critics, crit_hist = [], {}
    if cc.method == "graph":
        # Snap in observation space when it is a small vector: latents of states on two
        # sides of a thin wall can be close, which would let the graph cut through it.
        ids, dist = critic_lib.graph_distances(obs if obs.ndim == 3 else z, cc.nodes, cc.seed)
    for name, stride in (("critic0", 1), ("critic_top", wm.strides[-1])):
        cgraph, copt, cstate = critic_lib.init_state(wm, cc, tc.seed)
        if cc.method == "graph":
            cchunk = critic_lib.make_graph_chunk(cgraph, copt, jnp.asarray(z), ids, dist,
                                                 stride, cc)
        else:
            cchunk = critic_lib.make_chunk(cgraph, copt, jnp.asarray(z), stride, cc)
        cstate, crit_hist[name] = trainer.run(
            cstate, cchunk, cc.steps, cc.chunk, out / name if out else None,
            f"{name} (stride {stride})", out / f"{name}.jsonl" if out else None, show=show)
        critics.append(cstate["params"])
    stack = Stack(wm_cfg=wm, wm_graph=graph, wm_params=params, critic_graph=cgraph,
                  critic_params=tuple(critics), probe=diag.fit_probe(z, data.pos), metrics={})
    metrics = diagnose(task, data, stack, z=z, obs=obs)
    metrics["history"] = {"world_model": wm_hist, **crit_hist}
    metrics["probe"] = [stack.probe[0].tolist(), stack.probe[1].tolist()]
    stack = dataclasses.replace(stack, metrics=metrics)
    if out is not None:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        from hplan.render import save_diagnostics

        save_diagnostics(metrics, out / "diagnostics.png")
    return stack


def diagnose(task: Task, data: Dataset, stack: Stack, z=None, obs=None) -> dict:
    """Collapse, probes (per level, on predicted latents), prediction error, critics."""
    wm = stack.wm_cfg
    obs = _obs_arrays(task, data) if obs is None else obs
    z = wmt.encode_all(stack.wm_graph, stack.wm_params, obs) if z is None else z
    model = stack.model()
    m = {"task": task.name, **diag.latent_stats(z), "probe_r2": {}, "pred_error": {}}
    rng = np.random.default_rng(1)
    sel = rng.permutation(data.n_episodes)[:2048]
    for level, stride in enumerate(wm.strides):
        k = max(1, min(data.n_steps // stride, 8 if level == 0 else 4))
        zt = z[sel, : k * stride + 1 : stride]
        acts = data.actions[sel, : k * stride].reshape(len(sel), k, stride, -1)
        if level == 0:
            u = acts[:, :, 0]
        else:
            u = np.asarray(jax.jit(model.macros[level - 1])(jnp.asarray(acts)))
        roll = lambda z0, a, level=level: model.rollout(level, z0, a)  # noqa: E731
        pred = np.asarray(jax.jit(jax.vmap(roll))(jnp.asarray(zt[:, 0]), jnp.asarray(u)))
        err = diag.prediction_error(pred, zt)
        wall = diag.near_wall(task.layout, data.pos[sel, 0])
        true_pos = data.pos[sel, stride : k * stride + 1 : stride]
        # A level's latent is what its predictor outputs one of its own steps ahead.
        m["probe_r2"][f"level{level}"] = diag.probe_r2(pred[:, :1], true_pos[:, :1])
        m.setdefault("probe_r2_by_horizon", {})[f"level{level}"] = [
            diag.probe_r2(pred[:, j], true_pos[:, j]) for j in range(k)]
        m["pred_error"][f"level{level}"] = {
            "stride": stride, "horizon_steps": [stride * (j + 1) for j in range(k)],
            "all": err.mean(0).tolist(), "near_wall": err[wall].mean(0).tolist(),
            "open": err[~wall].mean(0).tolist(), "near_wall_share": float(wall.mean())}
    m["probe_r2"]["encoder"] = diag.probe_r2(z, data.pos)
    cells = task.layout.free_cells + 0.5
    zc = wmt.encode_all(stack.wm_graph, stack.wm_params, observe(task, cells))
    m["critic"] = {}
    for name, which in (("level0", 0), ("top", 1)):
        crit = stack.critic(which)
        m["critic"][name] = diag.critic_quality(lambda a, b, c=crit: c(a, b), zc, task.layout)
    m["critic"]["latent_l2"] = diag.critic_quality(diag.l2_value, zc, task.layout)
    return m


def load(out: str | Path, task: Task, data_meta: dict | None = None) -> Stack:
    """Restore a trained stack from `out` (the directory `train` wrote)."""
    out = Path(out)
    path = out / "config.json"
    if not path.is_file():
        raise ValueError(f"{out}: no trained stack here (no config.json). Fix: run "
                         f"`hplan train --task {task.name} --out {out}` first")
    cfg = json.loads(path.read_text())
    if cfg["layout_hash"] != layout_hash(task):
        raise ValueError(f"{out} was trained on task {cfg['task']!r}, not {task.name!r}")
    wm = WMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["wm"].items()})
    tc = wmt.TrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in cfg["train"].items()})
    cc = critic_lib.CriticConfig(**cfg["critic"])
    obs_shape = np.shape(task.env.observe(jnp.zeros(2)))
    graph, _, state = wmt.init_state(wmt.build_model(obs_shape, task.env.action_size, wm), tc)
    state = _restore(out / "wm", state)
    critics = []
    for name in ("critic0", "critic_top"):
        cgraph, _, cstate = critic_lib.init_state(wm, cc, tc.seed)
        critics.append(_restore(out / name, cstate)["params"])
    mpath = out / "metrics.json"
    metrics = json.loads(mpath.read_text()) if mpath.is_file() else {}
    probe = metrics.get("probe")
    probe = (np.asarray(probe[0], np.float32), np.asarray(probe[1], np.float32)) if probe else None
    return Stack(wm_cfg=wm, wm_graph=graph, wm_params=state["params"], critic_graph=cgraph,
                 critic_params=tuple(critics), probe=probe, metrics=metrics)


def _restore(ckpt: Path, state):
    mgr = ocp.CheckpointManager(ckpt.resolve())
    if mgr.latest_step() is None:
        raise ValueError(f"{ckpt}: no checkpoint. Fix: finish training first")
    try:
        return trainer._restore(mgr, state, ckpt)[0]
    finally:
        mgr.close()
