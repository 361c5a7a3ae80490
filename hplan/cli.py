"""`hplan` command line: tasks, envs, show, collect, explore, train, diagnose, bench,
demo."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _tasks(args) -> int:
    from hplan import tasks

    for name, path in tasks.available().items():
        t = tasks.load(path)
        print(f"{name:20s} {t.spec.env:10s} T={t.episode_length:<4} {t.spec.description}")
    return 0


def _envs(args) -> int:
    from hplan import envs

    print("\n".join(envs.registered()))
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
    size = (Path(out) / "data.npz").stat().st_size
    print(f"collected {ds.n_episodes} x {ds.n_steps} steps on {task.name} in {dt:.1f}s; "
          f"observations {ds.obs.dtype} {tuple(ds.obs.shape[2:])}; {size / 1e6:.1f} MB on "
          f"disk ({ds.nbytes() / 1e6:.1f} MB in memory)")
    if ds.xy is not None:
        png, summary = render.save_coverage(task, ds.xy, Path(args.out) / "coverage.png")
        print(f"coverage: {summary}; wrote {png}")
    print(f"wrote {out}/data.npz, {out}/meta.json")
    return 0


def _explore(args) -> int:
    import dataclasses

    from hplan import data, render, tasks
    from hplan.train.explore import ExploreConfig, explore

    task = tasks.load(args.task)  # bad input fails here and below, before any work
    fields = {f.name: f for f in dataclasses.fields(ExploreConfig)}
    extra = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        if key not in fields or not value:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(fields)}. Fix: e.g. --set hidden=64")
        kind = type(fields[key].default)
        try:
            extra[key] = kind(value)
        except ValueError:
            raise ValueError(f"--set {item!r}: {value!r} is not a {kind.__name__}. Fix: "
                             f"write {key}=<{kind.__name__}>") from None
    cfg = ExploreConfig(**{"rounds": args.rounds, "episodes": args.episodes,
                           "steps": args.steps, "starts": args.starts,
                           "train_steps": args.train_steps, "min_growth": args.min_growth,
                           "seed": args.seed, **extra})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frac = getattr(task.oracle, "coverage_fraction", None)  # diagnostics only
    report = {"task": task.name, "config": dataclasses.asdict(cfg), "runs": {}}
    # the baseline: random actions for the same env steps from the same round 0,
    # restarting at states its own data visited
    runs = {"plan": (cfg, True)}
    if args.baseline:
        runs["random"] = (dataclasses.replace(cfg, lead=-1), False)
    for run, (c, plan) in runs.items():
        rows = report["runs"].setdefault(run, [])

        def on_round(k, ds, summary, rows=rows, run=run):
            row = dict(summary)
            text = f"cover proxy {summary['cover']}"
            if ds.xy is not None:
                png, text = render.save_coverage(task, ds.xy, out / f"coverage_{run}_{k}.png")
                row.update(coverage=frac(ds.xy) if frac else None, png=png.name)
            rows.append(row)
            print(f"[explore] {run} round {k}: {ds.n_episodes} episodes, {text}")

        t0 = time.perf_counter()
        ds, _ = explore(task, c, plan=plan, on_round=on_round)
        report[f"{run}_seconds"] = time.perf_counter() - t0
        if run == "plan":
            data.save(ds, out / "data")
    (out / "explore.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out}/data (train on it: hplan train --task {task.name} --data "
          f"{out}/data --out RUN), {out}/explore.json and the coverage maps")
    return 0


def _stack_overrides(args) -> dict:
    """CLI flags as a `[stack]` table (flags left unset change nothing)."""
    table: dict = {}

    def put(part, key, value):
        if value is not None:
            table.setdefault(part, {})[key] = value

    put("data", "episodes", getattr(args, "data_episodes", None))
    put("train", "steps", getattr(args, "train_steps", None))
    put("train", "anti_collapse", getattr(args, "anti_collapse", None))
    put("train", "seed", getattr(args, "seed", None))
    put("critic", "steps", getattr(args, "critic_steps", None))
    put("critic", "seed", getattr(args, "seed", None))
    put("wm", "latent_dim", getattr(args, "latent_dim", None))
    put("wm", "hidden", getattr(args, "hidden", None))
    strides = getattr(args, "strides", None)
    if strides:
        put("wm", "strides", list(strides))
        rollout = getattr(args, "rollout", None) or [8] + [max(2, 24 // s) for s in strides[1:]]
        put("train", "rollout", list(rollout))
    return table


def _stack_config(task, args):
    from hplan.core import ConfigError
    from hplan.wm.config import stack_config

    try:
        return stack_config(_stack_overrides(args), base=stack_config(task.spec.stack))
    except ConfigError as e:
        raise ValueError(f"{e.what}. Fix: {e.fix}") from None


def _train(args) -> int:
    if args.distributed:  # before any other JAX call
        from hplan.sharding import init_distributed

        init_distributed(args.coordinator, args.num_processes, args.process_id)
    import jax

    from hplan import data, tasks
    from hplan.train import pipeline

    task = tasks.load(args.task)
    cfg = pipeline.for_task(task, _stack_config(task, args))
    if args.data:
        ds = data.load(args.data, task)
    else:
        ds = data.collect(task, jax.random.key(cfg.train.seed), cfg.data.episodes,
                          cfg.data.steps, cfg.data.policy)
        data.save(ds, f"{args.out}/data")
    st = pipeline.train_stack(task, ds, args.out, cfg, devices=args.devices)
    _report(st.metrics)
    print(f"wrote {args.out}/metrics.json and {args.out}/diagnostics.png")
    return 0


def _diagnose(args) -> int:
    from hplan import data, render, tasks
    from hplan.train import pipeline
    from hplan.wm.stack import diagnose

    task = tasks.load(args.task)
    st = pipeline.load_stack(args.out, task)
    ds = data.load(args.data or f"{args.out}/data", task)
    m = diagnose(task, ds, st)
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
        near = f" (near walls {e['near_wall'][-1]:.4f})" if "near_wall" in e else ""
        print(f"{level}: relative prediction error at {e['horizon_steps'][-1]} steps "
              f"{e['all'][-1]:.4f}{near}")
    for name, c in m.get("critic", {}).items():
        print(f"critic {name}: Spearman {c['spearman']:.4f}  descent "
              f"{c['descent_consistency']:.4f}")


def _cell(text: str) -> list[int]:
    try:
        r, c = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a cell; write ROW,COL") from None
    return [r, c]


def _band(min_distance: int | None, max_distance: int | None) -> dict:
    """The random-pair distance band's env args (only what was given)."""
    out = {} if min_distance is None else {"min_distance": min_distance}
    return out if max_distance is None else {**out, "max_distance": max_distance}


def layout_task(path: str, start=None, goal=None, min_distance: int | None = None,
                max_distance: int | None = None):
    """A point-maze task for any ASCII layout file, sized from the layout."""
    from hplan import tasks
    from hplan.core import factory

    args = {"layout": str(Path(path).resolve())}
    if start is not None or goal is not None:
        if start is None or goal is None:
            raise ValueError("give both --start and --goal, or neither")
        args.update(start_goal="fixed", start=start, goal=goal)
    else:
        args["start_goal"] = "random"
        args.update(_band(min_distance, max_distance))
    fn = factory("pointmaze")
    defaults = fn.task_defaults(args)
    length = defaults.pop("episode_length")
    if args["start_goal"] == "random":
        try:  # a layout with its own S and G is a fixed task
            fn(**{**args, "start_goal": "fixed"})
            args["start_goal"] = "fixed"
        except ValueError:
            args.update(defaults)
    spec = tasks.TaskSpec(name=Path(path).stem, env="pointmaze", env_args=args,
                          episode_length=length)
    return tasks.build(spec, source=str(path))


def unseen_map_task(train_task, path: str, start=None, goal=None,
                    min_distance: int | None = None, max_distance: int | None = None):
    """`train_task` with its map(s) swapped for the layout file `path` (the env's
    `unseen_map_args` hook), the same episode length; starts and goals as `layout_task`."""
    from hplan import tasks
    from hplan.core import ConfigError, factory

    fn = factory(train_task.spec.env)
    hook = getattr(fn, "unseen_map_args", None)
    if hook is None:
        raise ValueError(f"env {train_task.spec.env!r} cannot swap in a map file. Fix: use "
                         "a task whose env takes layouts (pointmaze)")
    try:
        args = hook(train_task.spec.env_args, path, str(train_task.base_dir or tasks.TASKS_DIR))
    except ConfigError as e:
        raise ValueError(f"{e.what}. Fix: {e.fix}") from None
    if start is not None or goal is not None:
        if start is None or goal is None:
            raise ValueError("give both --start and --goal, or neither")
        args.update(start_goal="fixed", start=start, goal=goal, out_of_sight=False)
    else:
        args.update(_band(min_distance, max_distance))
    spec = tasks.TaskSpec(name=f"{train_task.name}@{Path(path).stem}", env=train_task.spec.env,
                          env_args=args, episode_length=train_task.spec.episode_length,
                          stack=train_task.spec.stack)
    return tasks.build(spec, source=str(path))


def _stack(task, args, **get):
    """(stack, data, directory): the run `hplan train` wrote (`--stack`, `--data`), or the
    cached stack for the task's configuration in `--cache` (trained if missing)."""
    from hplan.train import pipeline

    if getattr(args, "stack", None):
        from hplan import data

        where = Path(args.stack)
        return (pipeline.load_stack(where, task),
                data.load(args.data or where / "data", task), where)
    return pipeline.get_stack(task, args.cache, _stack_config(task, args), **get)


def _bench(args) -> int:
    from hplan import agents as agent_defs
    from hplan import render, tasks
    from hplan.eval import compare

    if not (args.task or args.layout):
        raise ValueError("give --task NAME, --layout FILE, or both (a task's stack on a map "
                         "it never trained on)")
    train_task = None
    if args.layout and not Path(args.layout).exists():
        raise ValueError(f"layout file {args.layout!r} not found. Fix: give the path of an "
                         "ASCII layout file or a folder of them")
    if args.task and args.layout:
        train_task = tasks.load(args.task)
        task = unseen_map_task(train_task, args.layout, args.start, args.goal,
                               args.min_distance, args.max_distance)
    elif args.layout:
        task = layout_task(args.layout, args.start, args.goal, args.min_distance,
                           args.max_distance)
    else:
        if args.start or args.goal:
            raise ValueError("--start/--goal go with --layout; a --task sets its own")
        task = tasks.load(args.task)
    names = [n.strip() for n in args.agents.split(",") if n.strip()]
    known = agent_defs.available()
    unknown = [n for n in names if n not in known and not n.endswith(".toml")]
    if unknown:
        raise ValueError(f"unknown agent(s) {', '.join(unknown)}. Known: {', '.join(known)}")
    print(f"[bench] task {task.name} (env {task.spec.env}), agents {', '.join(names)}, "
          f"{args.episodes} episodes, seed {args.seed}")
    # On an unseen map the stack (and its data) are the training task's: nothing is
    # trained on the test map.
    st, ds, cache = _stack(train_task or task, args, devices=getattr(args, "devices", None))
    print(f"[bench] world-model stack: {cache}")
    pols = compare.build_agents(task, names, st, ds, getattr(args, "policy", None))
    results, raw = compare.compare(task, pols, args.seed, args.episodes,
                                   devices=getattr(args, "devices", None),
                                   latency=not getattr(args, "no_latency", False))
    results["matched_compute"] = (
        "every learned agent's level-0 planner gets the same optimiser iterations x "
        "restarts per control step; model_evals_per_step counts predictor calls at all "
        "levels (a value-and-grad through the H-step rollout counts H)")
    results["stack"] = str(cache)
    print(compare.format_table(results))
    from hplan.eval.provenance import stamp

    results = {**stamp(), **results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {render.plot_episodes(task, results, raw, st, args.plot)}")
    return 0


def _distill(args) -> int:
    from hplan import agents as A
    from hplan import distill, tasks
    from hplan.core import ConfigError

    task = tasks.load(args.task)
    agent = A.load_agent(args.agent)  # a bad name fails here, before any compute
    try:
        cfg = distill.DistillConfig(rounds=args.rounds, episodes=args.episodes,
                                    steps=args.steps, seed=args.seed)
    except ConfigError as e:
        raise ValueError(f"{e.what}. Fix: {e.fix}") from None
    st, ds, where = _stack(task, args, seed=args.stack_seed)
    print(f"[distill] world-model stack: {where}")
    meta = distill.distill(task, agent, A.Context(task, st, ds), args.out, cfg)
    for r in meta["rounds_done"]:
        print(f"[distill] round {r['round']}: {r['data']} labelled steps, acting success "
              f"{r['acting_success']:.2f}; student alone {r['student_success']:.2f}")
    print(f"wrote {args.out}/policy.json; use it with `hplan bench ... --policy {args.out}`")
    return 0


def _demo(args) -> int:
    """Train a small stack on the default task, then hierarchical vs flat agents."""
    t0 = time.perf_counter()
    out = Path(args.out)
    print(f"[demo] hplan main job on task {args.task!r}; everything lands in {out}/")
    ns = argparse.Namespace(
        task=args.task, layout=None, start=None, goal=None, min_distance=None, max_distance=None,
        agents="flat-true,flat-mpc,flat-mpc-critic,hier-2", episodes=args.episodes,
        seed=args.seed, json=str(out / "bench.json"), plot=str(out / "bench.png"),
        cache=str(out / "cache"), train_steps=args.train_steps,
        critic_steps=args.critic_steps)
    rc = _bench(ns)
    print(f"[demo] done in {time.perf_counter() - t0:.0f}s")
    return rc


def _add_stack_flags(s) -> None:
    s.add_argument("--train-steps", type=int, default=None,
                   help="world-model updates (default: the task's [stack] or 8000)")
    s.add_argument("--critic-steps", type=int, default=None,
                   help="updates per critic (default: the task's [stack] or 20000)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hplan", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("tasks", help="list shipped tasks")
    s.set_defaults(fn=_tasks)

    s = sub.add_parser("envs", help="list registered environments")
    s.set_defaults(fn=_envs)

    s = sub.add_parser("show", help="render a task's world, start/goal, guardrails, waypoints")
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

    s = sub.add_parser("explore", help="exploration data that travels: random actions, "
                       "then planning with a learned model toward rarely visited states")
    s.add_argument("--task", required=True)
    s.add_argument("--rounds", type=int, default=4, help="rounds, round 0 (random) included")
    s.add_argument("--episodes", type=int, default=256, help="episodes per round")
    s.add_argument("--steps", type=int, default=100, help="actions per episode")
    s.add_argument("--starts", type=int, default=8,
                   help="distinct explore_reset starts shared by round 0's episodes")
    s.add_argument("--train-steps", type=int, default=1000,
                   help="level-0 model updates per round")
    s.add_argument("--min-growth", type=float, default=0.05,
                   help="stop when the coverage proxy grows by less than this fraction")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other setting of hplan.train.explore.ExploreConfig (model "
                        "size, planner, targets), repeatable: --set hidden=64")
    s.add_argument("--baseline", action="store_true",
                   help="also run random actions for the same env steps, for comparison")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="output directory")
    s.set_defaults(fn=_explore)

    s = sub.add_parser("train", help="train the world-model stack and critics for a task")
    s.add_argument("--task", required=True)
    s.add_argument("--data", default=None, help="dataset dir from `hplan collect` "
                   "(default: collect the stack config's episodes fresh)")
    s.add_argument("--out", required=True, help="run dir; re-running resumes it")
    s.add_argument("--episodes", dest="data_episodes", type=int, default=None,
                   help="exploration episodes to collect (without --data)")
    _add_stack_flags(s)
    s.add_argument("--steps", dest="train_steps", type=int, default=None,
                   help=argparse.SUPPRESS)  # the older name of --train-steps
    s.add_argument("--anti-collapse", default=None, choices=["vicreg", "ema", "none"])
    s.add_argument("--latent-dim", type=int, default=None)
    s.add_argument("--hidden", type=int, default=None,
                   help="MLP width of the encoder and predictors")
    s.add_argument("--strides", type=int, nargs="+", default=None)
    s.add_argument("--rollout", type=int, nargs="+", default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--devices", type=int, default=None,
                   help="data-parallel over this many devices (default 1; all with "
                        "--distributed)")
    s.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize first")
    s.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 "
                   "(or HPLAN_COORDINATOR)")
    s.add_argument("--num-processes", type=int, default=None,
                   help="(or HPLAN_NUM_PROCESSES)")
    s.add_argument("--process-id", type=int, default=None, help="(or HPLAN_PROCESS_ID)")
    s.set_defaults(fn=_train)

    s = sub.add_parser("diagnose", help="re-run diagnostics of a trained run dir")
    s.add_argument("--task", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--data", default=None, help="dataset dir (default: OUT/data)")
    s.set_defaults(fn=_diagnose)

    s = sub.add_parser("bench", help="hierarchical vs flat agents at matched compute")
    s.add_argument("--task", default=None, help="shipped task name or .toml")
    s.add_argument("--layout", default=None,
                   help="any ASCII maze layout file (pointmaze), or a folder of them (a family "
                        "of same-sized maps, one per episode)")
    s.add_argument("--start", type=_cell, default=None, help="ROW,COL (with --layout)")
    s.add_argument("--goal", type=_cell, default=None, help="ROW,COL (with --layout)")
    s.add_argument("--min-distance", type=int, default=None,
                   help="random start/goal pairs at least this many cells apart")
    s.add_argument("--max-distance", type=int, default=None,
                   help="and at most this many (e.g. 9 and 12: HWM's medium pairs)")
    s.add_argument("--agents", default="flat-true,flat-mpc,flat-mpc-critic,hier-2")
    s.add_argument("--episodes", type=int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", default=None)
    s.add_argument("--plot", default=None)
    s.add_argument("--cache", default="out/cache", help="where trained stacks are kept")
    s.add_argument("--stack", default=None,
                   help="a run dir from `hplan train` (default: train or reuse one in --cache)")
    s.add_argument("--data", default=None, help="its dataset (default: STACK/data)")
    s.add_argument("--no-latency", action="store_true",
                   help="skip timing a single episode (one compilation per agent, not two); "
                        "episode_s and compile_s print n/a")
    s.add_argument("--devices", type=int, default=None,
                   help="shard the episodes over this many devices (default 1)")
    s.add_argument("--policy", default=None,
                   help="a distilled System 1 policy dir (`hplan distill`), for the "
                        "system1 agents")
    _add_stack_flags(s)
    s.set_defaults(fn=_bench)

    s = sub.add_parser("distill", help="distil the planner into a System 1 policy (DAgger)")
    s.add_argument("--task", required=True)
    s.add_argument("--agent", required=True, help="the teacher: an agent name or .toml")
    s.add_argument("--out", required=True, help="policy dir; re-running resumes it")
    s.add_argument("--rounds", type=int, default=3, help="DAgger rounds after round 0")
    s.add_argument("--episodes", type=int, default=32, help="episodes per round")
    s.add_argument("--steps", type=int, default=2000, help="regression updates per round")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cache", default="out/cache", help="where trained stacks are kept")
    s.add_argument("--stack-seed", type=int, default=None,
                   help="the stack's training seed (default: the task's)")
    s.add_argument("--stack", default=None, help="a run dir from `hplan train`")
    s.add_argument("--data", default=None, help="its dataset (default: STACK/data)")
    _add_stack_flags(s)
    s.set_defaults(fn=_distill)

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
