# # Example 1: oscillatory coefficient family (paper §4.1)
#
# Unit square, H = 1/6, h = 1/36, l = 1, f = 1, u0 = 0, T = 1, tau = 1/24. The coefficient is
# the family of the paper's published code (`dolfinx_lod.coefficients.cont_family`):
# a_p = 0.01 + 0.99 s, s the min-max rescaled
# g = cos(N x^2 y - 2 N x^2) sin(N/2 y^3 x + N x^2) + cos(N x^3 - 2 N y^2), N = 100 / p.
#
# 1. Offline: corrector networks for all patches are trained on 40 parameters p in [0.01, 1]
#    (Deep Ritz, `dolfinx-lod train`), cached by their settings.
# 2. Online: for every test schedule p(t) (a held-out parameter moving with t, never a training
#    value) the backward Euler loop runs with the classical correctors (LOD), the learned ones
#    (LOD-ANN) and the mean training corrector (baseline), next to the fine FEM.
#
# Run: `mpirun -n 2 python demos/example1.py [--quick | --paper] --out DIR`. Writes
# `DIR/summary.json` and the figures of the paper's Figs. 3-8.

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.coefficients import cont_family
from dolfinx_lod.experiments import basis_function, cached_training, compare_time_loops
from dolfinx_lod.io import write_json
from dolfinx_lod.neural import FixedCorrectors, LearnedCorrectors, TrainedModel
from dolfinx_lod.neural.training import TrainingSettings
from dolfinx_lod.neural.workflow import parse_network

# Problem sizes and training budgets. "paper" is the paper's setting (its network, 128 x 8,
# needs about 10 s per epoch for all 36 networks on 2 cores: days for 30 000 epochs);
# "quick" keeps the problem and uses the reduced network; "tiny" is for the test suite.
SETTINGS = {
    "paper": dict(
        NH=6,
        n=36,
        l=1,
        samples=40,
        tests=25,
        steps=24,
        epochs=30000,
        network="mlp:128x8",
        lr=1e-3,
        patience=2000,
    ),
    "quick": dict(
        NH=6,
        n=36,
        l=1,
        samples=40,
        tests=5,
        steps=24,
        epochs=3000,
        network="reduced:16:32x3",
        lr=1e-2,
        patience=1000,
    ),
    "tiny": dict(
        NH=3,
        n=12,
        l=1,
        samples=4,
        tests=2,
        steps=4,
        epochs=200,
        network="reduced:8:16x2",
        lr=1e-2,
        patience=1000,
    ),
}


def schedules(family, count: int, seed: int = 7):
    """Test schedules: p(t) = p_i (1 + 0.2 t) clipped to the range, p_i held-out parameters."""
    base = family.test_parameters(count, seed=seed)[:, 0]
    hi = family.high[0]
    return [lambda t, p=p: np.array([min(p * (1 + 0.2 * t), hi)]) for p in base], base


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="default: paper problem, fast network")
    size.add_argument("--paper", action="store_true", help="the paper's settings (days on 2 cores)")
    size.add_argument("--tiny", action="store_true", help="a very small version (tests)")
    parser.add_argument("--network", help="override the network, e.g. mlp:128x8")
    parser.add_argument("--cache", type=Path, help="model cache folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    name = "paper" if args.paper else "tiny" if args.tiny else "quick"
    s = SETTINGS[name]
    comm = MPI.COMM_WORLD
    t_start = time.perf_counter()
    grids = dl.create_nested_grids(comm, s["NH"], s["n"])
    family = cont_family(s["n"])
    settings = TrainingSettings(
        **parse_network(args.network or s["network"]),
        epochs=s["epochs"],
        lr=s["lr"],
        patience=s["patience"],
    )
    folder, trained, reused = cached_training(
        grids, s["l"], family, s["samples"], s["tests"], settings, args.cache
    )
    model = TrainedModel.load(folder / "model.pt", grids, s["l"], family)
    learned = LearnedCorrectors(model, family, grids.r)
    # Baseline: the mean training corrector of every patch.
    train_p = family.training_parameters(s["samples"])
    basis = dl.MultiscaleBasis(grids, s["l"])
    mean = {}
    for p in train_p:
        basis.update(family.a, p)
        for patch, C in zip(basis.patches, basis.correctors, strict=True):
            mean[patch.cell] = mean.get(patch.cell, 0) + C / len(train_p)
    baseline = FixedCorrectors(mean)

    steps, T = s["steps"], 1.0
    shots = (1, steps // 2, steps)
    runs, figures = [], {}
    scheds, p0 = schedules(family, s["tests"])
    for i, schedule in enumerate(scheds):
        runs.append(
            compare_time_loops(
                grids,
                s["l"],
                family,
                schedule,
                T,
                steps,
                {"ann": learned, "baseline": baseline},
                snapshot_steps=shots if i == 0 else (),
            )
        )
    errors = np.array([r["runs"]["ann"]["rel_error_vs_lod"] for r in runs])
    summary = {
        "example": 1,
        "mode": name,
        "settings": {**s, "T": T, "tau": T / steps, "network": args.network or s["network"]},
        "ranks": comm.size,
        "model": str(folder),
        "model_reused": reused,
        "test_schedules": [f"p(t) = min({p:.4f} (1 + 0.2 t), 1)" for p in p0],
        "rel_error_final": errors.tolist(),
        "rel_error_final_mean": float(errors.mean()),
        "rel_error_final_max": float(errors.max()),
        "basis_error_mean": trained["basis_error_test"],
        "basis_error_mean_nodal": trained["basis_error_test_nodal"],
        "baseline_basis_errors": trained["baseline_errors_test"],
        "lod_vs_fem_final_mean": float(
            np.mean([r["runs"]["lod"]["rel_error_vs_fem"] for r in runs])
        ),
        "ann_vs_fem_final_mean": float(
            np.mean([r["runs"]["ann"]["rel_error_vs_fem"] for r in runs])
        ),
        "baseline_rel_error_final_mean": float(
            np.mean([r["runs"]["baseline"]["rel_error_vs_lod"] for r in runs])
        ),
        "timings": {
            "offline_training_seconds": trained["train_seconds"],
            **{
                f"{k}_{what}": float(np.mean([r["runs"][k][what] for r in runs]))
                for k in ("lod", "ann", "baseline")
                for what in ("basis_seconds_per_step", "coarse_seconds_per_step")
            },
            "fem_seconds_per_step": float(
                np.mean([r["runs"]["lod"]["fem_seconds_per_step"] for r in runs])
            ),
        },
    }

    # Figures (rank 0 plots gathered arrays; the column gathers are collective).
    p_plot = scheds[0](1.0)
    centre = (grids.coarse // 2) * (grids.coarse + 1) + grids.coarse // 2
    classical = basis_function(grids, basis.update(family.a, p_plot), centre)
    ann_basis = dl.MultiscaleBasis(grids, s["l"], provider=learned)
    ann = basis_function(grids, ann_basis.update(family.a, p_plot), centre)
    for b in (basis, ann_basis):
        b.destroy()
    if comm.rank == 0:
        from shutil import copyfile

        from dolfinx_lod.plotting import plot_cross_sections, plot_solution_grid

        args.out.mkdir(parents=True, exist_ok=True)
        copyfile(folder / "loss.png", args.out / "fig3_loss.png")
        figures["loss"] = "fig3_loss.png"
        x = np.linspace(0, 1, grids.fine + 1)
        mid = grids.fine // 2
        figures["basis"] = plot_solution_grid(
            args.out / "fig4_basis_function.png",
            [
                (
                    "",
                    [
                        ("classical basis function", classical, False),
                        ("learned basis function", ann, False),
                        ("difference", np.abs(classical - ann), False),
                    ],
                )
            ],
            grids.domain,
        ).name
        figures["basis_cross_section"] = plot_cross_sections(
            args.out / "fig5_basis_cross_section.png",
            [
                (
                    f"y = {x[mid]:.3f}",
                    [("classical", (x, classical[mid])), ("learned", (x, ann[mid]))],
                )
            ],
            "x",
        ).name
        sh = runs[0]["snapshots"]
        figures["solutions"] = plot_solution_grid(
            args.out / "fig6_solutions.png",
            [
                (
                    f"t = {sh['lod'][m]['t']:.3f}",
                    [
                        ("coefficient", sh["lod"][m]["a"], True),
                        ("LOD", sh["lod"][m]["u"], False),
                        ("LOD-ANN", sh["ann"][m]["u"], False),
                    ],
                )
                for m in shots
            ],
            grids.domain,
        ).name
        figures["cross_sections"] = plot_cross_sections(
            args.out / "fig7_cross_sections.png",
            [
                (
                    f"y = 1/2, t = {sh['lod'][m]['t']:.3f}",
                    [
                        ("LOD", (x, sh["lod"][m]["u"][mid])),
                        ("LOD-ANN", (x, sh["ann"][m]["u"][mid])),
                        ("FEM", (x, sh["lod"][m]["fem"][mid])),
                    ],
                )
                for m in shots
            ],
            "x",
        ).name
        figures["difference"] = plot_solution_grid(
            args.out / "fig8_difference.png",
            [
                (
                    "t = 1",
                    [
                        (
                            "|LOD - LOD-ANN|",
                            np.abs(sh["lod"][steps]["u"] - sh["ann"][steps]["u"]),
                            False,
                        )
                    ],
                )
            ],
            grids.domain,
        ).name
        summary["figures"] = figures
        summary["wall_seconds"] = time.perf_counter() - t_start
        write_json(args.out / "summary.json", summary)
        print(
            f"Example 1 ({name}, {comm.size} ranks): LOD vs LOD-ANN at T: mean "
            f"{summary['rel_error_final_mean']:.4f}, max {summary['rel_error_final_max']:.4f} "
            f"(paper 0.0495); baseline (mean corrector) "
            f"{summary['baseline_rel_error_final_mean']:.4f}; "
            f"basis error {summary['basis_error_mean']:.3f}; LOD vs FEM "
            f"{summary['lod_vs_fem_final_mean']:.4f}; {summary['wall_seconds']:.0f} s; "
            f"results in {args.out}/"
        )
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
