"""Pictures: layouts, tasks, coverage heat maps and trajectories (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

# No `matplotlib.use(...)` here: forcing Agg would silence plots in notebooks; without a
# display, matplotlib already picks a non-interactive backend for savefig.
import matplotlib.pyplot as plt
import numpy as np

from hplan.layout import Layout
from hplan.tasks import KeepOut, Task


def draw_layout(ax, layout: Layout) -> None:
    h, w = layout.shape
    ax.imshow(layout.walls, cmap="Greys", vmin=0, vmax=1.3, extent=(0, w, h, 0),
              interpolation="nearest")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_task(ax, task: Task, max_pairs: int = 0) -> None:
    """Layout, start/goal (or sample pairs), guardrails and numbered waypoints."""
    draw_layout(ax, task.layout)
    starts, goals = task.pairs()
    if len(starts) == 1:
        ax.plot(starts[0, 1] + 0.5, starts[0, 0] + 0.5, "o", c="tab:green", ms=10, label="start")
        ax.plot(goals[0, 1] + 0.5, goals[0, 0] + 0.5, "*", c="tab:red", ms=16, label="goal")
    else:
        k = min(max_pairs, len(starts))
        for s, g in zip(starts[:k], goals[:k], strict=True):
            ax.annotate("", (g[1] + 0.5, g[0] + 0.5), (s[1] + 0.5, s[0] + 0.5),
                        arrowprops=dict(arrowstyle="->", color="tab:blue", alpha=0.5))
    for g in task.guardrails:
        if isinstance(g, KeepOut):
            ax.add_patch(plt.Circle((g.center[1], g.center[0]), g.radius, color="tab:orange",
                                    alpha=0.4, label="keep-out"))
    for i, (r, c) in enumerate(task.spec.waypoints):
        ax.plot(c + 0.5, r + 0.5, "D", c="tab:purple", ms=9)
        ax.text(c + 0.5, r + 0.5, str(i + 1), color="white", ha="center", va="center",
                fontsize=7)


def draw_trajectory(ax, pos: np.ndarray, color="tab:blue", **kw) -> None:
    """`pos` [T, 2] in (row, col) cell coordinates."""
    ax.plot(pos[:, 1], pos[:, 0], "-", c=color, lw=1.5, **kw)
    ax.plot(pos[0, 1], pos[0, 0], "o", c=color, ms=5)


def save_task(task: Task, out: str | Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    draw_task(ax, task, max_pairs=12)
    n = len(task.pairs()[0])
    mode = "fixed start/goal" if n == 1 else f"{n} random start/goal pairs (12 drawn)"
    ax.set_title(f"{task.name}: {task.layout.shape[0]}x{task.layout.shape[1]}, {mode}",
                 fontsize=9)
    return _save(fig, out)


def save_coverage(task: Task, counts: np.ndarray, out: str | Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    h, w = task.layout.shape
    masked = np.ma.masked_where(task.layout.walls, np.log10(counts + 1))
    draw_layout(ax, task.layout)
    im = ax.imshow(masked, cmap="viridis", extent=(0, w, h, 0), interpolation="nearest")
    fig.colorbar(im, ax=ax, label="log10(visits + 1)", shrink=0.8)
    free = ~task.layout.walls
    ax.set_title(title or f"{task.name}: coverage, {np.mean(counts[free] > 0):.0%} of free "
                 f"cells visited, min {counts[free].min()} visits", fontsize=9)
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
    ax.bar(x - 0.2, [crit[n]["spearman"] for n in names], 0.4, label="Spearman vs BFS")
    ax.bar(x + 0.2, [crit[n]["descent_consistency"] for n in names], 0.4, label="descent")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_title("cost-to-go quality")
    ax.legend(fontsize=7, loc="lower left")
    probe = metrics.get("probe_r2", {})
    fig.suptitle(f"{metrics.get('task', '')}: probe R2 " +
                 ", ".join(f"{k} {v:.3f}" for k, v in probe.items()), fontsize=9)
    return _save(fig, out)
