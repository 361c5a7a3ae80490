"""Pictures of a maze layout (matplotlib)."""

from __future__ import annotations

import numpy as np

from hplan.envs.pointmaze.layout import Layout


def draw_layout(ax, layout: Layout) -> None:
    h, w = layout.shape
    ax.imshow(layout.walls, cmap="Greys", vmin=0, vmax=1.3, extent=(0, w, h, 0),
              interpolation="nearest")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_counts(ax, layout: Layout, counts: np.ndarray):
    """A heat map of per-cell counts over the layout; returns the image (for a colorbar)."""
    h, w = layout.shape
    draw_layout(ax, layout)
    masked = np.ma.masked_where(layout.walls, np.log10(counts + 1))
    return ax.imshow(masked, cmap="viridis", extent=(0, w, h, 0), interpolation="nearest")
