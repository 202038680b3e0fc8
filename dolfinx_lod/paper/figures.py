"""The paper's figures (Figs. 3-9, 11) of an example run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.io import OutputSet
from dolfinx_lod.neural.figures import plot_node_loss
from dolfinx_lod.neural.trainer import History
from dolfinx_lod.paper.cache import CENTRE
from dolfinx_lod.paper.compare import basis_function, compare_time_loops
from dolfinx_lod.parallel import OutputError, collective

if TYPE_CHECKING:
    from dolfinx_lod.paper.experiments import Example


def configuration_vertices(grids: NestedGrids) -> list[tuple[tuple[int, int], int]]:
    """For each of the 9 patch configurations of l = 1 (the coarse cells T = (c_x, c_y) with
    c in {0, N_H / 2, N_H - 1}): T and the key of T's corner nearest to the domain centre, an
    interior coarse vertex whose basis function is corrected on T's patch (paper Fig. 4)."""
    NH = grids.coarse
    out = []
    for cy in (0, NH // 2, NH - 1):
        for cx in (0, NH // 2, NH - 1):
            vx, vy = (c + 1 if 2 * c < NH else c for c in (cx, cy))
            out.append(((cx, cy), vy * (NH + 1) + vx))
    return out


def write_figures(
    ex: Example, sh, learned, folder: Path, output: OutputSet, shots
) -> dict[str, str]:
    """The paper's figures into the staging folder of ``output``: loss of the node (0.5, 0.5)
    (Fig. 3), classical and learned basis functions for the 9 patch configurations (Fig. 4)
    and three cross sections (Fig. 5), solutions (Fig. 6) and cross sections (Fig. 7) at three
    times, |LOD - LOD-ANN| at those times (Fig. 8); for the battery cell also two training
    coefficients and a test coefficient at t = 1/6 (Fig. 9) and LOD / LOD-ANN solutions for two
    training coefficients at t = 1/2, 1 and a test schedule at t = 1/8 (Fig. 11). Collective
    (time loops, gathers); rank 0 plots (a failure raises on every rank)."""
    g, fam = ex.grids, ex.family
    p = ex.schedules[0](ex.T)
    vertices = configuration_vertices(g)
    columns: dict[str, list] = {}
    for name, provider in (("classical", None), ("learned", learned)):
        basis = MultiscaleBasis(g, ex.layers, provider=provider)
        B = basis.update(fam.a, p)
        columns[name] = [basis_function(g, B, key) for _, key in vertices]
        basis.destroy()
    battery = _battery_snapshots(ex, learned) if ex.number == 2 else None
    figures: dict[str, str] = {}
    with collective(g.comm, OutputError):
        if g.comm.rank == 0:
            figures = _plot_figures(ex, sh, columns, folder, output.staging, shots)
            if battery is not None:
                figures.update(_plot_battery(ex, battery, output.staging))
    return figures


def _battery_snapshots(ex: Example, learned) -> dict[str, Any]:
    """Fig. 9 and 11 data: LOD and LOD-ANN snapshots for the first two training parameters
    (constant in time) at t = 1/2, 1 and for the first test schedule at t = 1/8. Collective."""
    train = ex.family.training_parameters(ex.samples)[:2]
    half, eighth = ex.steps // 2, max(ex.steps // 8, 1)
    runs = [
        compare_time_loops(
            ex.grids,
            ex.layers,
            ex.family,
            schedule,
            ex.T,
            ex.steps,
            {"ann": learned},
            snapshot_steps=steps,
            capacity=ex.capacity,
            source=ex.source,
        )["snapshots"]
        for schedule, steps in (
            *((lambda t, q=q: q, (half, ex.steps)) for q in train),
            (ex.schedules[0], (eighth,)),
        )
    ]
    test_t = ex.T / 6
    return {"train": train, "runs": runs, "test_t": test_t, "test_p": ex.schedules[0](test_t)}


def _plot_battery(ex: Example, data: dict[str, Any], out: Path) -> dict[str, str]:
    """Figs. 9 and 11 of the battery cell (rank 0)."""
    from dolfinx_lod.coefficients import battery_layers
    from dolfinx_lod.plotting import plot_solution_grid

    g, fam, n = ex.grids, ex.family, ex.grids.fine
    materials = {"CC": 0, "AM": 1, "AC": 2}
    rows = np.vectorize(materials.__getitem__)(battery_layers(np.arange(n)))
    layout = np.repeat(rows[:, None], n, axis=1).astype(float)
    mid = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(mid, mid)
    xy = np.stack([X.ravel(), Y.ravel()])
    panels = [("layers: 0 CC, 1 AM, 2 AC", layout, False)]
    for i, q in enumerate(data["train"]):
        panels.append((f"lambda, training p_{i + 1}", fam.a(xy, q).reshape(n, n), True))
    panels.append(
        (f"lambda, test at t = {data['test_t']:.3f}", fam.a(xy, data["test_p"]).reshape(n, n), True)
    )
    figures = {
        "coefficients": plot_solution_grid(
            out / "fig9_coefficients.png", [("", panels)], g.domain
        ).name
    }
    solution_rows = []
    for method, label in (("lod", "LOD"), ("ann", "LOD-ANN")):
        cells = []
        for i, shots in enumerate(data["runs"]):
            kind = f"training p_{i + 1}" if i < len(data["train"]) else "test"
            for _, shot in sorted(shots[method].items()):
                cells.append((f"{kind}, t = {shot['t']:.3f}", shot["u"], False))
        solution_rows.append((label, cells))
    figures["solutions_train_test"] = plot_solution_grid(
        out / "fig11_solutions.png", solution_rows, g.domain
    ).name
    return figures


def _plot_figures(ex: Example, sh, columns, folder: Path, out: Path, shots) -> dict[str, str]:
    """The figures of :func:`write_figures` but those of the battery cell (rank 0)."""
    from shutil import copyfile

    summary = json.loads((folder / "summary.json").read_text())
    history = History(**summary["loss_history"]) if "loss_history" in summary else None
    if history is not None and history.node_energy:
        plot_node_loss(out / "fig3_loss.png", history, str(CENTRE))
    else:  # a cached model trained before the node's loss was recorded: the total loss
        copyfile(folder / "loss.png", out / "fig3_loss.png")
    figures = {"loss": "fig3_loss.png"}
    figures.update(_plot_basis(ex, columns, out))
    figures.update(_plot_solutions(ex, sh, out, shots))
    return figures


def _plot_basis(ex: Example, columns, out: Path) -> dict[str, str]:
    """Figs. 4 and 5: classical and learned basis functions of the 9 patch configurations,
    three cross sections (rank 0)."""
    from dolfinx_lod.plotting import plot_cross_sections, plot_solution_grid

    g = ex.grids
    x = np.linspace(g.domain[0][0], g.domain[1][0], g.fine + 1)
    classical, ann = columns["classical"], columns["learned"]
    vertices = configuration_vertices(g)
    titles = [f"T = {cell}" for cell, _ in vertices]
    figures = {}
    figures["basis"] = plot_solution_grid(
        out / "fig4_basis_functions.png",
        [
            ("classical", [(t, c, False) for t, c in zip(titles, classical, strict=True)]),
            ("learned", [(t, c, False) for t, c in zip(titles, ann, strict=True)]),
        ],
        g.domain,
    ).name
    sections = []
    for i in (3, 4, 5):  # the middle row of configurations: three basis functions
        key = vertices[i][1]
        row = key // (g.coarse + 1) * g.r  # fine row of the basis function's vertex
        y = g.domain[0][1] + row * g.h[1]
        sections.append(
            (
                f"{titles[i]}, y = {y:.3f}",
                [("classical", (x, classical[i][row])), ("learned", (x, ann[i][row]))],
            )
        )
    figures["basis_cross_section"] = plot_cross_sections(
        out / "fig5_basis_cross_sections.png", sections, "x"
    ).name
    return figures


def _plot_solutions(ex: Example, sh, out: Path, shots) -> dict[str, str]:
    """Figs. 6-8: solutions, cross sections and |LOD - LOD-ANN| at the snapshot steps
    (rank 0)."""
    from dolfinx_lod.plotting import plot_cross_sections, plot_solution_grid

    g = ex.grids
    x = np.linspace(g.domain[0][0], g.domain[1][0], g.fine + 1)
    mid = g.fine // 2
    y_mid = g.domain[0][1] + mid * g.h[1]
    lod, ann = sh["lod"], sh["ann"]
    figures = {}
    figures["solutions"] = plot_solution_grid(
        out / "fig6_solutions.png",
        [
            (
                f"t = {lod[m]['t']:.3f}",
                [
                    ("coefficient", lod[m]["a"], True),
                    ("LOD", lod[m]["u"], False),
                    ("LOD-ANN", ann[m]["u"], False),
                ],
            )
            for m in shots
        ],
        g.domain,
    ).name
    figures["cross_sections"] = plot_cross_sections(
        out / "fig7_cross_sections.png",
        [
            (
                f"y = {y_mid:.3f}, t = {lod[m]['t']:.3f}",
                [
                    ("LOD", (x, lod[m]["u"][mid])),
                    ("LOD-ANN", (x, ann[m]["u"][mid])),
                    ("FEM", (x, lod[m]["fem"][mid])),
                ],
            )
            for m in shots
        ],
        "x",
    ).name
    differences = [
        (f"|LOD - LOD-ANN|, t = {lod[m]['t']:.3f}", np.abs(lod[m]["u"] - ann[m]["u"]), False)
        for m in shots
    ]
    figures["difference"] = plot_solution_grid(
        out / "fig8_difference.png", [("", differences)], g.domain
    ).name
    return figures
