"""`hplan` command line: tasks, show, collect, demo (and more as the library grows)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _tasks(args) -> int:
    from hplan import tasks

    for name, path in tasks.available().items():
        t = tasks.load(path)
        print(f"{name:20s} {t.layout.shape[0]:>2}x{t.layout.shape[1]:<2}  "
              f"T={t.episode_length:<4} {t.spec.description}")
    return 0


def _show(args) -> int:
    from hplan import render, tasks

    out = render.save_task(tasks.load(args.task), args.out)
    print(f"wrote {out}")
    return 0


def _collect(args) -> int:
    import jax

    from hplan import data, render, tasks

    task = tasks.load(args.task)
    t0 = time.perf_counter()
    ds = data.collect(task, jax.random.key(args.seed), args.episodes, args.steps, args.policy)
    dt = time.perf_counter() - t0
    out = data.save(ds, args.out)
    counts = data.coverage(task, ds)
    png = render.save_coverage(task, counts, Path(args.out) / "coverage.png")
    free = ~task.layout.walls
    print(f"collected {ds.n_episodes} x {ds.n_steps} steps on {task.name} in {dt:.1f}s; "
          f"{(counts[free] > 0).mean():.0%} of free cells visited")
    print(f"wrote {out}/data.npz, {out}/meta.json, {png}")
    return 0


def _train(args) -> int:
    import jax

    from hplan import critic, data, stack, tasks, wm_train
    from hplan.models import WMConfig

    task = tasks.load(args.task)
    wm = WMConfig(latent_dim=args.latent_dim, strides=tuple(args.strides),
                  macro_dim=args.macro_dim, hidden=args.hidden,
                  pixels=task.env.config.obs_type == "pixels")
    tc = wm_train.TrainConfig(steps=args.steps, anti_collapse=args.anti_collapse,
                              rollout=tuple(args.rollout) if args.rollout else
                              tuple([8] + [max(2, 24 // s) for s in args.strides[1:]]),
                              seed=args.seed)
    cc = critic.CriticConfig(steps=args.critic_steps, seed=args.seed)
    if args.data:
        ds = data.load(args.data, task)
    else:
        ds = data.collect(task, jax.random.key(args.seed), args.episodes, 64)
        data.save(ds, f"{args.out}/data")
    st = stack.train(task, ds, args.out, wm, tc, cc)
    _report(st.metrics)
    print(f"wrote {args.out}/metrics.json and {args.out}/diagnostics.png")
    return 0


def _diagnose(args) -> int:
    import json

    from hplan import data, render, stack, tasks

    task = tasks.load(args.task)
    st = stack.load(args.out, task)
    ds = data.load(args.data or f"{args.out}/data", task)
    m = stack.diagnose(task, ds, st)
    m["history"] = st.metrics.get("history", {})
    m["probe"] = st.metrics.get("probe")
    (Path(args.out) / "metrics.json").write_text(json.dumps(m, indent=2))
    render.save_diagnostics(m, Path(args.out) / "diagnostics.png")
    _report(m)
    return 0


def _report(m: dict) -> None:
    print(f"effective rank {m['effective_rank']:.2f}  probe R2 " +
          "  ".join(f"{k} {v:.3f}" for k, v in m["probe_r2"].items()))
    for level, e in m["pred_error"].items():
        print(f"{level}: relative prediction error at {e['horizon_steps'][-1]} steps "
              f"{e['all'][-1]:.4f} (near walls {e['near_wall'][-1]:.4f})")
    for name, c in m["critic"].items():
        print(f"critic {name}: Spearman {c['spearman']:.4f}  descent "
              f"{c['descent_consistency']:.4f}")


def _cell(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a cell; write ROW,COL") from None
    return r, c


def _bench(args) -> int:
    import json

    from hplan import benchmark, tasks

    if bool(args.task) == bool(args.layout):
        raise ValueError("give exactly one of --task NAME or --layout FILE")
    if args.layout:
        task = benchmark.layout_task(args.layout, args.start, args.goal, args.min_distance)
    else:
        if args.start or args.goal:
            raise ValueError("--start/--goal go with --layout; a --task sets its own")
        task = tasks.load(args.task)
    names = [n.strip() for n in args.agents.split(",") if n.strip()]
    from hplan import agents as agent_defs

    unknown = [n for n in names if n != "flat-true" and n not in agent_defs.available()]
    if unknown:
        raise ValueError(f"unknown agent(s) {', '.join(unknown)}. Known: flat-true, "
                         f"{', '.join(agent_defs.available())}")
    print(f"[bench] task {task.name} ({task.layout.shape[0]}x{task.layout.shape[1]}), "
          f"agents {', '.join(names)}, {args.episodes} episodes, seed {args.seed}")
    st, ds, cache = benchmark.get_stack(task, args.cache, wm_steps=args.train_steps,
                                        critic_steps=args.critic_steps, seed=args.seed)
    print(f"[bench] world-model stack: {cache}")
    pols = benchmark.build_agents(task, names, st, ds)
    results, raw = benchmark.compare(task, pols, args.seed, args.episodes)
    results["matched_compute"] = (
        "every learned agent's level-0 planner gets the same optimiser iterations x "
        "restarts per control step; model_evals_per_step counts predictor calls at all "
        "levels (a value-and-grad through the H-step rollout counts H)")
    results["stack"] = str(cache)
    print(benchmark.format_table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {benchmark.plot(task, results, raw, st, args.plot)}")
    return 0


def _demo(args) -> int:
    """Train a small stack on the default task, then hierarchical vs flat agents."""
    t0 = time.perf_counter()
    out = Path(args.out)
    print(f"[demo] hplan main job on task {args.task!r}; everything lands in {out}/")
    rc = _bench(argparse.Namespace(
        task=args.task, layout=None, start=None, goal=None, min_distance=None,
        agents="flat-true,flat-mpc,flat-mpc-critic,hier-2", episodes=args.episodes,
        seed=args.seed, json=str(out / "bench.json"), plot=str(out / "bench.png"),
        cache=str(out / "cache"), train_steps=args.train_steps,
        critic_steps=args.critic_steps))
    print(f"[demo] done in {time.perf_counter() - t0:.0f}s")
    return rc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hplan", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("tasks", help="list shipped tasks")
    s.set_defaults(fn=_tasks)

    s = sub.add_parser("show", help="render a task's layout, start/goal, guardrails, waypoints")
    s.add_argument("--task", required=True, help="task name or path to a .toml")
    s.add_argument("--out", required=True, help="PNG path")
    s.set_defaults(fn=_show)

    s = sub.add_parser("collect", help="collect reward-free exploration data")
    s.add_argument("--task", required=True)
    s.add_argument("--episodes", type=int, default=4096)
    s.add_argument("--steps", type=int, default=64)
    s.add_argument("--policy", default="mixed", choices=["random", "correlated", "mixed"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="output directory")
    s.set_defaults(fn=_collect)

    s = sub.add_parser("train", help="train the world-model stack and critics for a task")
    s.add_argument("--task", required=True)
    s.add_argument("--data", default=None, help="dataset dir from `hplan collect` "
                   "(default: collect --episodes fresh episodes)")
    s.add_argument("--out", required=True, help="run dir; re-running resumes it")
    s.add_argument("--episodes", type=int, default=4096)
    s.add_argument("--steps", type=int, default=8000, help="world-model updates")
    s.add_argument("--critic-steps", type=int, default=20000, help="updates per critic")
    s.add_argument("--anti-collapse", default="vicreg", choices=["vicreg", "ema", "none"])
    s.add_argument("--latent-dim", type=int, default=16)
    s.add_argument("--hidden", type=int, default=256,
                   help="MLP width of the encoder and predictors (critics: 256)")
    s.add_argument("--strides", type=int, nargs="+", default=[1, 8])
    s.add_argument("--macro-dim", type=int, default=8, help="macro-action size, levels > 0")
    s.add_argument("--rollout", type=int, nargs="+", default=None)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=_train)

    s = sub.add_parser("diagnose", help="re-run diagnostics of a trained run dir")
    s.add_argument("--task", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--data", default=None, help="dataset dir (default: OUT/data)")
    s.set_defaults(fn=_diagnose)

    s = sub.add_parser("bench", help="hierarchical vs flat agents at matched compute")
    s.add_argument("--task", default=None, help="shipped task name or .toml")
    s.add_argument("--layout", default=None, help="any ASCII layout file")
    s.add_argument("--start", type=_cell, default=None, help="ROW,COL (with --layout)")
    s.add_argument("--goal", type=_cell, default=None, help="ROW,COL (with --layout)")
    s.add_argument("--min-distance", type=int, default=None,
                   help="random start/goal pairs at least this many cells apart")
    s.add_argument("--agents", default="flat-true,flat-mpc,flat-mpc-critic,hier-2")
    s.add_argument("--episodes", type=int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", default=None)
    s.add_argument("--plot", default=None)
    s.add_argument("--cache", default="out/cache", help="where trained stacks are kept")
    s.add_argument("--train-steps", type=int, default=8000)
    s.add_argument("--critic-steps", type=int, default=20000)
    s.set_defaults(fn=_bench)

    s = sub.add_parser("demo", help="the main job on the default task")
    s.add_argument("--task", default="two-rooms")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--episodes", type=int, default=20)
    s.add_argument("--train-steps", type=int, default=3000)
    s.add_argument("--critic-steps", type=int, default=6000)
    s.add_argument("--out", default="out/demo")
    s.set_defaults(fn=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ValueError as e:
        print(f"hplan {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
