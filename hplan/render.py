"""Pictures: a task's world and goals, data coverage, trajectories with subgoals, and
training diagnostics (matplotlib). The world itself is drawn by the env's oracle
(`oracle.draw(ax)`, `oracle.plot_xy(xy)`); without one, goal-space points are plotted
as they are."""

from __future__ import annotations

from pathlib import Path

# No `matplotlib.use(...)` here: forcing Agg would silence plots in notebooks; without a
# display, matplotlib already picks a non-interactive backend for savefig.
import matplotlib.pyplot as plt
import numpy as np

from hplan.core import KeepOut


def plot_xy(task, xy) -> tuple[np.ndarray, np.ndarray]:
    oracle = task.oracle
    if oracle is not None and hasattr(oracle, "plot_xy"):
        return oracle.plot_xy(xy)
    xy = np.asarray(xy)
    return xy[..., 0], xy[..., 1]


def draw_task(ax, task, max_pairs: int = 0) -> None:
    """The world, start/goal pairs (arrows for a few, or the single pair), keep-out zones
    and numbered waypoints."""
    if task.oracle is not None:
        task.oracle.draw(ax)
    env = task.env
    starts = np.asarray(getattr(env, "starts", np.zeros((0, 2))))
    goals = np.asarray(getattr(env, "goals", np.zeros((0, 2))))
    if len(starts) == 1:
        x, y = plot_xy(task, starts[0])
        ax.plot(x, y, "o", c="tab:green", ms=10, label="start")
        x, y = plot_xy(task, goals[0])
        ax.plot(x, y, "*", c="tab:red", ms=16, label="goal")
    else:
        for s, g in zip(starts[:max_pairs], goals[:max_pairs], strict=True):
            ax.annotate("", plot_xy(task, g), plot_xy(task, s),
                        arrowprops=dict(arrowstyle="->", color="tab:blue", alpha=0.5))
    for g in task.guardrails:
        if isinstance(g, KeepOut):
            ax.add_patch(plt.Circle(plot_xy(task, np.array(g.center)), g.radius,
                                    color="tab:orange", alpha=0.4, label="keep-out"))
    for i, w in enumerate(np.asarray(getattr(env, "waypoints", np.zeros((0, 2))))):
        x, y = plot_xy(task, w)
        ax.plot(x, y, "D", c="tab:purple", ms=9)
        ax.text(x, y, str(i + 1), color="white", ha="center", va="center", fontsize=7)


def save_task(task, out: str | Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    draw_task(ax, task, max_pairs=12)
    n = getattr(task.env, "n_pairs", 1)
    mode = "fixed start/goal" if n == 1 else f"{n} start/goal pairs (12 drawn)"
    ax.set_title(f"{task.name} ({task.spec.env}): {mode}", fontsize=9)
    return _save(fig, out)


def save_coverage(task, xy: np.ndarray, out: str | Path) -> tuple[Path, str]:
    """Where the data went (the oracle's heat map, or a 2-D histogram of `xy`)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if task.oracle is not None and hasattr(task.oracle, "coverage"):
        summary = task.oracle.coverage(ax, xy)
    else:
        x, y = plot_xy(task, xy.reshape(-1, xy.shape[-1]))
        ax.hist2d(x, y, bins=40, cmap="viridis")
        summary = f"{len(x)} states"
    ax.set_title(f"{task.name}: coverage, {summary}", fontsize=9)
    return _save(fig, out), summary


def plot_episodes(task, results: dict, raw: dict, stack, out: str, per_agent: int = 3):
    """The world with a few trajectories per agent and the subgoals each level set
    (read back to positions with the stack's linear probe)."""
    names = list(raw)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.4), squeeze=False)
    w, b = stack.probe if stack is not None and stack.probe is not None else (None, None)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes[0], names, strict=True):
        draw_task(ax, task)
        r = raw[name]
        if "positions" not in r:
            continue
        for e in range(min(per_agent, len(r["positions"]))):
            c = colors[e % len(colors)]
            pos = np.asarray(r["positions"][e])
            t_end = int(r["steps_to_goal"][e]) if r["success"][e] else len(pos) - 1
            x, y = plot_xy(task, pos[: t_end + 1])
            ax.plot(x, y, "-", c=c, lw=1.4)
            ax.plot(x[0], y[0], "o", c=c, ms=5)
            if "goal" in r:
                gx, gy = plot_xy(task, np.asarray(r["goal"][e]))
                ax.plot(gx, gy, "*", c=c, ms=12, mec="k")
            if "subgoal" in r["info"] and w is not None:
                sx, sy = plot_xy(task, np.asarray(r["info"]["subgoal"][e][:t_end]) @ w + b)
                ax.scatter(sx, sy, s=10, color=c, marker="x", alpha=0.6)
        row = results["agents"][name]
        ax.set_title(f"{name}: success {row['success_rate']:.0%}, SPL {row['spl']:.2f}",
                     fontsize=9)
    fig.suptitle(f"{task.name}: trajectories (lines), subgoals (x), goals (*)", fontsize=10)
    return _save(fig, out)


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def save_diagnostics(metrics: dict, out: str | Path) -> Path:
    """Loss curves, latent std per dim, prediction error vs horizon, critic quality."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    ax = axes[0]
    hist = metrics.get("history", {})
    for name, rows in hist.items():
        key = "loss" if name == "world_model" else "critic_loss"
        if rows:
            ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=name)
    ax.set_yscale("log")
    ax.set_xlabel("update")
    ax.set_title("training loss")
    ax.legend(fontsize=7)
    ax = axes[1]
    std = metrics["latent_std"]
    ax.bar(range(len(std)), std)
    ax.set_title(f"latent std per dim (eff. rank {metrics['effective_rank']:.2f})")
    ax = axes[2]
    for level, e in metrics["pred_error"].items():
        h = e["horizon_steps"]
        ax.plot(h, e["all"], "o-", label=f"{level} (stride {e['stride']})")
        if "near_wall" in e:
            ax.plot(h, e["near_wall"], "x--", alpha=0.6, label=f"{level} near walls")
    ax.set_xlabel("horizon (base steps)")
    ax.set_ylabel("relative error")
    ax.set_yscale("log")
    ax.set_title("multi-step latent prediction error")
    ax.legend(fontsize=7)
    ax = axes[3]
    crit = metrics.get("critic", {})
    names = list(crit)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [crit[n]["spearman"] for n in names], 0.4, label="Spearman vs optimum")
    ax.bar(x + 0.2, [crit[n]["descent_consistency"] for n in names], 0.4, label="descent")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_title("cost-to-go quality")
    ax.legend(fontsize=7, loc="lower left")
    probe = metrics.get("probe_r2", {})
    fig.suptitle(f"{metrics.get('task', '')}: probe R2 " +
                 ", ".join(f"{k} {v:.3f}" for k, v in probe.items()), fontsize=9)
    return _save(fig, out)
