# # A 3D battery cell: LOD, LOD-ANN and the fine FEM side by side (issue 16)
#
# rho c_p d_t u - div(lambda grad u) = f on the unit cube, u = 0 on the boundary, u0 = 0, with
# the materials of the paper's Table 1 layered through the thickness z (from the bottom:
# cathode collector CC 2 fine cells, active material AM 8, anode collector AC 2, AM 8, repeated;
# `dolfinx_lod.coefficients.battery_family` on a 3D domain). The active-material conductivity
# lambda_AM(x, p) = 3 + 2 tanh(sum_k p_k phi_k(x)) in [1, 5] is parametrized by p in [-1, 1]^2
# (phi_k fixed 3D Fourier modes); collectors have their constant conductivities (236.3, 398.65).
# Scaled as in Example 2: c = rho c_p / (rho c_p)_AM, f = 1 in the active material.
#
# Offline: the patch problems of `--samples` parameters are exported and p-conditioned reduced
# networks trained (Deep Ritz). Online: a held-out p(t) = clip(p0 + 0.2 t, -1, 1) drifting
# with t; the classical LOD (every corrector recomputed each step), the LOD-ANN (correctors from
# the networks) and the fine FEM (CG + GAMG) advance together. summary.json reports the errors
# against the FEM, the basis update times per step and their ratio; the figures are slices
# (z = 1/2 and y = 1/2) of the final solutions.
#
# Run: `mpirun -n 2 python demos/battery3d.py [--tiny] --out DIR`.

import argparse
import sys
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401  (must precede dolfinx/petsc4py)
import numpy as np
import torch
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.coefficients import battery_capacity, battery_family, battery_source
from dolfinx_lod.grids import unit_box
from dolfinx_lod.io import OutputSet, gather_vertex_array, write_json
from dolfinx_lod.neural import (
    DeepRitzTrainer,
    LearnedCorrectors,
    TrainedModel,
    TrainingSettings,
    export_patches,
)
from dolfinx_lod.neural.provider import problem_metadata, scale_parameters
from dolfinx_lod.paper.experiments import run_demo
from dolfinx_lod.parallel import OutputError, collective
from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic

SIZES = {
    "default": dict(NH=5, n=20, samples=8, modes=16, epochs=1500, steps=6),
    "tiny": dict(NH=2, n=8, samples=3, modes=4, epochs=100, steps=2),
}
NUM_PARAMS = 2


def train(grids, layers, family, size, comm) -> tuple[LearnedCorrectors, dict[str, float]]:
    """Export the patch problems of the training parameters and train reduced networks."""
    t0 = time.perf_counter()
    basis = dl.MultiscaleBasis(grids, layers)
    params = family.training_parameters(size["samples"])
    batch = export_patches(basis, family.a, params)
    t1 = time.perf_counter()
    settings = TrainingSettings(
        architecture="reduced", modes=size["modes"], width=16, depth=2,
        epochs=size["epochs"], lr=1e-2, patience=size["epochs"],
    )  # fmt: skip
    trainer = DeepRitzTrainer(batch, scale_parameters(family, params), settings, comm)
    trainer.train()
    meta = {
        **problem_metadata(grids, layers, family),
        "num_params": family.num_params,
        "architecture": "reduced",
        "width": settings.width,
        "depth": settings.depth,
    }
    model = TrainedModel.gather(comm, batch, trainer.nets, meta)
    basis.destroy()
    times = {"export_seconds": t1 - t0, "training_seconds": time.perf_counter() - t1}
    return LearnedCorrectors(model, family, grids.r), times


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="3D battery cell: LOD, LOD-ANN, fine FEM")
    parser.add_argument("--tiny", action="store_true", help="a seconds-sized smoke run")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    comm = MPI.COMM_WORLD
    torch.set_num_threads(1)
    torch.manual_seed(0)
    size = SIZES["tiny" if args.tiny else "default"]
    n, layers, domain = size["n"], 1, unit_box(3)
    t_start = time.perf_counter()
    grids = dl.create_nested_grids(comm, size["NH"], n, domain)
    family = battery_family(n, NUM_PARAMS, domain)
    learned, times = train(grids, layers, family, size, comm)
    p0 = family.test_parameters(1, seed=7)[0]
    schedule = CoefficientSchedule.from_family(family.a, lambda t: np.clip(p0 + 0.2 * t, -1, 1))
    runs, finals = {}, {}
    for name, provider in (("lod", None), ("lod_ann", learned)):
        result = run_parabolic(
            grids, schedule, 1.0, size["steps"], layers,
            capacity=battery_capacity(n, domain), source=battery_source(n, domain),
            provider=provider, reference=True,
        )  # fmt: skip
        records = result.records
        runs[name] = {
            "rel_l2_error_final": result.final_errors["l2"],
            "rel_energy_error_final": result.final_errors["energy"],
            "basis_update_seconds_mean": float(
                np.mean([r["timings"]["basis_update"] for r in records])
            ),
            "recomputed_patches_total": sum(r["recomputed_patches"] for r in records),
        }
        finals[name] = gather_vertex_array(grids, result.u_ms)
        finals["fem"] = gather_vertex_array(grids, result.u_h)
        result.basis.destroy()
    summary = {
        "demo": "battery3d",
        "NH": grids.coarse, "n": n, "l": layers, "steps": size["steps"], "T": 1.0,
        "ranks": comm.size, "samples": size["samples"], "epochs": size["epochs"],
        "held_out_p0": p0.tolist(), **times, **runs,
        "basis_update_speedup": runs["lod"]["basis_update_seconds_mean"]
        / runs["lod_ann"]["basis_update_seconds_mean"],
        "error_ratio_ann_over_lod": runs["lod_ann"]["rel_l2_error_final"]
        / runs["lod"]["rel_l2_error_final"],
    }  # fmt: skip
    with OutputSet(comm, args.out) as output:
        with collective(comm, OutputError):
            if comm.rank == 0:
                summary["figures"] = figures(output.staging, grids, finals)
                summary["wall_seconds"] = time.perf_counter() - t_start
                write_json(output.path("summary.json"), summary)
        output.commit()
    return summary


def figures(out: Path, grids, finals: dict[str, np.ndarray]) -> dict[str, str]:
    """Slices z = 1/2 and y = 1/2 of the final LOD, LOD-ANN and FEM solutions (rank 0)."""
    from dolfinx_lod.plotting import plot_fields

    names = (("lod", "LOD"), ("lod_ann", "LOD-ANN"), ("fem", "FEM"))
    panels = [(title, finals[key], False) for key, title in names]
    plot_fields(out / "slice_z.png", panels, grids.domain)
    mid = grids.fine // 2
    (x0, _, z0), (x1, _, z1) = grids.domain
    xz = [(f"{title}, y = 0.5 (rows: z)", finals[key][:, mid, :], False) for key, title in names]
    plot_fields(out / "slice_y.png", xz, ((x0, z0), (x1, z1)))
    return {"slice_z": "slice_z.png", "slice_y": "slice_y.png"}


if __name__ == "__main__":
    sys.exit(run_demo(main, sys.argv[1:]))
