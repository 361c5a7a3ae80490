"""Train, save, load and cache a whole world-model stack for a task: all the I/O.

An output directory holds `config.json`, orbax checkpoints (`wm/`, `critic0/`, ...: one
critic per level), JSON-lines logs, `metrics.json` and `diagnostics.png`. Re-running
the same command on the same directory resumes; a directory holding a different run is
refused rather than overwritten.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hplan import data as data_lib
from hplan.train import loop
from hplan.wm import critic as critic_lib
from hplan.wm import diagnostics as diag
from hplan.wm import jepa
from hplan.wm.config import StackConfig, stack_config
from hplan.wm.models import WMConfig, check_spatial
from hplan.wm.stack import Stack, diagnose


def for_task(task, cfg: StackConfig | None = None) -> StackConfig:
    """The task's stack configuration (its `[stack]` table over the defaults, or `cfg`),
    with the encoder matched to the env's observations (pixels or a vector)."""
    cfg = cfg or stack_config(task.spec.stack)
    size = task.env.observation_size
    pixels = isinstance(size, tuple) and len(size) == 3
    wm = dataclasses.replace(cfg.wm, pixels=pixels)
    if wm.spatial:  # refused here, before any data is collected
        check_spatial(size, wm)
    return dataclasses.replace(cfg, wm=wm)


def _config(task, data, cfg: StackConfig) -> dict:
    return {"task": task.name, "env": task.spec.env, "env_key": task.key(),
            "stack": cfg.to_dict(),
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


def check_data(task, data, cfg: StackConfig) -> None:
    """Everything that can be wrong with the inputs, before any compute."""
    data.check_task(task)
    size = task.env.observation_size
    want = tuple(size) if isinstance(size, tuple) else (int(size),)
    if tuple(data.obs.shape[2:]) != want:
        raise ValueError(f"data observations have shape {tuple(data.obs.shape[2:])} but task "
                         f"{task.name!r} observes {want}. Fix: re-collect the data")
    if data.actions.shape[-1] != task.env.action_size:
        raise ValueError(f"data actions have size {data.actions.shape[-1]}, the task's "
                         f"{task.env.action_size}. Fix: re-collect the data")
    need = jepa.span(cfg.wm, cfg.train)
    if data.n_steps < need:
        raise ValueError(f"episodes have {data.n_steps} steps, training needs {need}. Fix: "
                         f"collect with --steps >= {need}")


def train_stack(task, data, out: str | Path | None, cfg: StackConfig | None = None,
                show: bool = True, devices: int | None = None) -> Stack:
    """Train the stack (world model, then a critic per level on its frozen latents),
    diagnose it, and write everything to `out` (None: nothing is written).

    `devices`: data-parallel over this many devices (all of every host's when
    `jax.distributed` is initialised; default 1): the global batch is the config's, each
    device takes batch / devices, parameters are replicated (`hplan.sharding`)."""
    cfg = for_task(task, cfg)
    check_data(task, data, cfg)
    from hplan import sharding as S

    mesh = S.mesh(devices or (len(jax.devices()) if jax.process_count() > 1 else 1))
    S.check_batch(cfg.train.batch, mesh)
    S.check_batch(cfg.critic.batch, mesh, "critic batch")
    out = Path(out) if out is not None else None
    if out is not None and jax.process_index() == 0:
        _check_out(out, _config(task, data, cfg))
    wm, tc, cc = cfg.wm, cfg.train, cfg.critic
    model = jepa.build_model(data.obs.shape[2:], data.actions.shape[-1], wm, tc.seed)
    graph, opt, state = jepa.init_state(model, tc)
    obs, actions = S.replicate((data.obs, data.actions), mesh)
    chunk, wdata = jepa.make_chunk(graph, opt, obs, actions, wm, tc, mesh=mesh)
    state, wm_hist = loop.run(
        S.replicate(state, mesh), chunk, tc.steps, tc.chunk, out / "wm" if out else None,
        "world model", out / "metrics.jsonl" if out else None, show=show, data=wdata)
    params = jax.tree.map(lambda x: jnp.asarray(S.local(x)), state["params"])
    z = jepa.encode_all(graph, params, data.obs)
    critics, hist = [], {"world_model": wm_hist}
    if cc.method == "graph":
        # Snap in observation space when it is a small vector: latents of states on two
        # sides of a thin wall can be close, which would let the graph cut through it.
        x = data.obs if data.obs.ndim == 3 else z
        if data.groups is None:
            ids, dist = critic_lib.graph_distances(np.asarray(x, np.float32), cc.nodes,
                                                   cc.seed)
        else:  # a family of maps: one graph per map
            ids, dist, gid, node_at = critic_lib.group_graph_distances(
                np.asarray(x, np.float32), data.groups, cc.nodes, cc.seed)
            near = critic_lib.latent_neighbours(np.asarray(z), node_at)  # once, all levels
    for level, stride in enumerate(wm.strides):
        name = f"critic{level}"
        cgraph, copt, cstate = critic_lib.init_state(wm, cc, tc.seed)
        zj = S.replicate(z, mesh)
        if cc.method == "graph" and data.groups is not None:
            cchunk, cdata = critic_lib.make_group_graph_chunk(
                cgraph, copt, zj, ids, dist, gid, node_at, near, stride, cc, mesh=mesh)
        elif cc.method == "graph":
            cchunk, cdata = critic_lib.make_graph_chunk(cgraph, copt, zj, ids, dist, stride,
                                                        cc, mesh=mesh)
        else:
            cchunk, cdata = critic_lib.make_chunk(cgraph, copt, zj, stride, cc, mesh=mesh)
        cstate, hist[name] = loop.run(
            S.replicate(cstate, mesh), cchunk, cc.steps, cc.chunk,
            out / name if out else None, f"{name} (stride {stride})",
            out / f"{name}.jsonl" if out else None, show=show, data=cdata)
        critics.append(jax.tree.map(lambda x: jnp.asarray(S.local(x)), cstate["params"]))
    probe = diag.fit_probe(z, data.xy) if data.xy is not None else None
    stack = Stack(wm_cfg=wm, wm_graph=graph, wm_params=params, critic_graph=cgraph,
                  critic_params=tuple(critics), probe=probe, metrics={},
                  home=None if out is None else str(out))
    metrics = diagnose(task, data, stack, z=z)
    metrics["history"] = hist
    if probe is not None:
        metrics["probe"] = [probe[0].tolist(), probe[1].tolist()]
    stack = dataclasses.replace(stack, metrics=metrics)
    if out is not None and jax.process_index() == 0:  # one writer across hosts
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        from hplan.render import save_diagnostics

        save_diagnostics(metrics, out / "diagnostics.png")
    return stack


def load_stack(out: str | Path, task) -> Stack:
    """Restore a trained stack from `out` (the directory `train_stack` wrote)."""
    out = Path(out)
    path = out / "config.json"
    if not path.is_file():
        raise ValueError(f"{out}: no trained stack here (no config.json). Fix: run "
                         f"`hplan train --task {task.name} --out {out}` first")
    saved = json.loads(path.read_text())
    if saved.get("env_key") != task.key():
        raise ValueError(f"{out} was trained on task {saved.get('task')!r} (env key "
                         f"{saved.get('env_key')}), not on {task.name!r} "
                         f"({task.key()}). Fix: pass that task, or train for this one")
    cfg = stack_config({k: v for k, v in saved["stack"].items()})
    wm, tc, cc = cfg.wm, cfg.train, cfg.critic
    graph, _, state = jepa.init_state(
        jepa.build_model(_obs_shape(task), task.env.action_size, wm), tc)
    state = loop.restore_latest(out / "wm", state)
    critics = []
    for level in range(wm.levels):
        cgraph, _, cstate = critic_lib.init_state(wm, cc, tc.seed)
        critics.append(loop.restore_latest(out / f"critic{level}", cstate)["params"])
    mpath = out / "metrics.json"
    metrics = json.loads(mpath.read_text()) if mpath.is_file() else {}
    probe = metrics.get("probe")
    probe = (np.asarray(probe[0], np.float32), np.asarray(probe[1], np.float32)) if probe else None
    return Stack(wm_cfg=wm, wm_graph=graph, wm_params=state["params"], critic_graph=cgraph,
                 critic_params=tuple(critics), probe=probe, metrics=metrics, home=str(out))


def _obs_shape(task) -> tuple[int, ...]:
    size = task.env.observation_size
    return tuple(size) if isinstance(size, tuple) else (int(size),)


def cache_dir(task, cache: str | Path, cfg: StackConfig) -> Path:
    """Where the stack for (task env, stack configuration) lives in `cache`: the task's
    own folder, or a finished twin's. The name is only for people; the env key and the
    stack key fix the data and the stack, so a task derived from another (other starts,
    goals or episode length, the same world) reuses the other's finished stack instead of
    training the same one again."""
    keys = f"{task.key()}-{cfg.key()}-s{cfg.train.seed}"
    own = Path(cache) / f"{task.name}-{keys}"
    if not _trained(own):
        done = [d for d in sorted(Path(cache).glob(f"*-{keys}")) if _trained(d)]
        if done:
            return done[0]
    return own


def _trained(out: Path) -> bool:
    """`train_stack` writes metrics.json once every part is saved: without it, a folder
    is still training (or was killed mid-way, and resumes)."""
    return (out / "metrics.json").is_file()


def get_stack(task, cache: str | Path, cfg: StackConfig | None = None, seed: int | None = None,
              show: bool = True, devices: int | None = None):
    """(stack, data, directory): the cached stack for this task and configuration, or
    collect data and train one (resuming whatever a killed run left)."""
    cfg = for_task(task, cfg)
    if seed is not None:
        cfg = cfg.with_seed(seed)
    out = cache_dir(task, cache, cfg)
    if _trained(out):
        return load_stack(out, task), data_lib.load(out / "data", task), out
    if (out / "data" / "meta.json").is_file():
        ds = data_lib.load(out / "data", task)
    else:
        ds = data_lib.collect(task, jax.random.key(cfg.train.seed), cfg.data.episodes,
                              cfg.data.steps, cfg.data.policy)
        data_lib.save(ds, out / "data")
    return train_stack(task, ds, out, cfg, show=show, devices=devices), ds, out


__all__ = ["StackConfig", "WMConfig", "cache_dir", "check_data", "for_task", "get_stack",
           "load_stack", "train_stack"]
