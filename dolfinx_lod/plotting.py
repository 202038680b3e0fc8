"""Figures with pyvista (off screen) and matplotlib. Rank-local: call on the rank holding the
gathered arrays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dolfinx_lod.io import write_atomic


def _grid(values: npt.NDArray[np.float64], domain, cell_data: bool):
    import pyvista

    (x0, y0), (x1, y1) = domain
    nx = values.shape[1] + (1 if cell_data else 0)
    ny = values.shape[0] + (1 if cell_data else 0)
    grid = pyvista.ImageData(
        dimensions=(nx, ny, 1),
        spacing=((x1 - x0) / (nx - 1), (y1 - y0) / (ny - 1), 1.0),
        origin=(x0, y0, 0.0),
    )
    data = grid.cell_data if cell_data else grid.point_data
    data["values"] = np.ascontiguousarray(values).ravel()
    return grid


def z_midplane(
    panels: Sequence[tuple[str, npt.NDArray[np.float64], bool]], domain
) -> tuple[list[tuple[str, npt.NDArray[np.float64], bool]], tuple]:
    """3D panels [iz, iy, ix] -> their 2D slices near z = (z0 + z1) / 2: the vertex layer
    k = n / 2 (rounded down), or the cell layer k = n / 2 (its midpoint); the domain's
    (x, y) rectangle."""
    (x0, y0, z0), (x1, y1, z1) = domain
    out = []
    for title, values, cells in panels:
        n = values.shape[0] - (0 if cells else 1)
        k = n // 2
        z = z0 + (k + (0.5 if cells else 0.0)) * (z1 - z0) / n
        out.append((f"{title}, z = {z:.3g}", values[k], cells))
    return out, ((x0, y0), (x1, y1))


def plot_fields(
    path: str | Path,
    panels: Sequence[tuple[str, npt.NDArray[np.float64], bool]],
    domain,
    log_scale: Sequence[bool] | None = None,
) -> Path:
    """Save a row of 2D colour plots as PNG (atomically).

    Args:
        path: Output PNG file.
        panels: (title, array, is_cell_data): (n, n) cell arrays or (n+1, n+1) vertex arrays,
            row = y index from the bottom; in 3D (n, n, n) / (n+1, n+1, n+1) arrays
            [iz, iy, ix], shown in the slice through the middle of z (:func:`z_midplane`).
        domain: ((x0, y0), (x1, y1)) or ((x0, y0, z0), (x1, y1, z1)).
        log_scale: Per panel, whether to use a logarithmic colour scale.
    """
    import pyvista
    from vtkmodules.vtkCommonCore import vtkLogger

    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)  # no "bad X server" warning
    pyvista.OFF_SCREEN = True
    if len(domain[0]) == 3:
        panels, domain = z_midplane(panels, domain)
    log_scale = log_scale or [False] * len(panels)
    plotter = pyvista.Plotter(
        shape=(1, len(panels)), off_screen=True, window_size=(520 * len(panels), 520)
    )
    for k, ((title, values, cells), log) in enumerate(zip(panels, log_scale, strict=True)):
        plotter.subplot(0, k)
        plotter.add_text(title, font_size=11)
        plotter.add_mesh(
            _grid(values, domain, cells),
            scalars="values",
            cmap="viridis",
            log_scale=log,
            show_scalar_bar=True,
            scalar_bar_args={"title": title, "vertical": False, "n_labels": 3, "fmt": "%.2g"},
        )
        plotter.view_xy()
        plotter.camera.zoom(1.1)
    image = plotter.screenshot(return_img=True)
    plotter.close()

    def write(f) -> None:
        import matplotlib.image

        matplotlib.image.imsave(f, image, format="png")

    return write_atomic(path, write)


def _imshow(ax, values, domain, title, log=False):
    from matplotlib.colors import LogNorm

    (x0, y0), (x1, y1) = domain
    im = ax.imshow(
        values,
        origin="lower",
        extent=(x0, x1, y0, y1),
        cmap="viridis",
        norm=LogNorm() if log else None,
    )
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    out = write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return out


def plot_solution_grid(
    path: str | Path, rows: Sequence[tuple[str, Sequence[tuple[str, npt.NDArray, bool]]]], domain
) -> Path:
    """Rows of colour plots (matplotlib): rows = [(row label, [(title, array, log), ...])]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = max(len(panels) for _, panels in rows)
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(3.6 * ncols, 3.2 * len(rows)), squeeze=False
    )
    for r, (label, panels) in enumerate(rows):
        for c, (title, values, log) in enumerate(panels):
            _imshow(axes[r, c], values, domain, f"{title} ({label})" if label else title, log)
    fig.tight_layout()
    return _save(fig, path)


def plot_cross_sections(
    path: str | Path, curves: Sequence[tuple[str, Sequence[tuple[str, npt.NDArray]]]], xlabel: str
) -> Path:
    """Line plots side by side: curves = [(panel title, [(label, (x, y) array pair), ...])]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for ax, (title, lines) in zip(axes[0], curves, strict=True):
        for label, (x, y) in lines:
            ax.plot(x, y, label=label, lw=1.2)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
