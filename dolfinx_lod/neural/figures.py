"""Figures of a training run: the loss parts over the epochs (paper Fig. 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dolfinx_lod.io import write_atomic
from dolfinx_lod.neural.trainer import History


def plot_loss(path: Path, history: History) -> None:
    """Loss parts over the epochs (paper Fig. 3): |energy - min energy| and the penalty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epoch = np.array(history.epoch)
    ritz = np.array(history.phase) == "ritz"
    fig, ax = plt.subplots(figsize=(6, 4))
    if (~ritz).any():
        ax.semilogy(epoch[~ritz], np.array(history.energy)[~ritz], label="warm start (supervised)")
    if ritz.any():
        energy = np.array(history.energy)[ritz]
        ax.semilogy(epoch[ritz], energy - energy.min() + 1e-12, label="energy - min energy")
        ax.semilogy(epoch[ritz], np.array(history.penalty)[ritz] + 1e-16, label="penalty")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss part")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def plot_node_loss(path: Path, history: History, node: str) -> None:
    """The loss parts of the correction of one node's basis function over the epochs, log-log
    (paper Fig. 3): left the energy (14) (shifted by its minimum, it is negative), right the
    interpolation penalty (16) (omitted when it is zero: the exact projection)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ritz = np.array(history.phase) == "ritz"
    epoch = np.array(history.epoch)[ritz]
    energy = np.array(history.node_energy)
    penalty = np.array(history.node_penalty)
    panels = [("energy loss - min", energy - energy.min() + 1e-12)]
    if penalty.any():
        panels.append(("interpolation loss (16)", penalty + 1e-16))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (title, values) in zip(axes[0], panels, strict=True):
        ax.loglog(epoch, values, lw=1.0)
        ax.set_xlabel("epoch")
        ax.set_title(f"{title}, node {node}")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
