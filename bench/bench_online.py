"""Benchmark: the online phase per time step (issue "performance", item 2).

Run by hand (uses and fills the model cache of the demos):

    mpirun -n 2 python bench/bench_online.py --out bench/results/online-2.json

For the paper's two examples (the demos' --quick settings and trained networks) and both
examples' families at (H, h, l) = (1/16, 1/128, 2), 24 steps of the backward Euler loop on the first
held-out schedule: the mean wall time per step (after step 1) of the basis update for the
classical full recompute, the selective update (tol 0.1) and the LOD-ANN prediction, the coarse
assembly + solve and the fine FEM step, with their ratios and the final errors against the FEM.
"""

import argparse
from dataclasses import replace
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from harness import machine
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.coefficients import battery_capacity, battery_family, battery_source, cont_family
from dolfinx_lod.io import write_json
from dolfinx_lod.neural import LearnedCorrectors, TrainedModel
from dolfinx_lod.paper.cache import cached_training
from dolfinx_lod.paper.examples import EXAMPLES
from dolfinx_lod.paper.experiments import Example
from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic

#: Cases at (H, h, l) = (1/16, 1/128, 2): a demo's family on the finer grids (1000 epochs).
FINE_CASES = {"16-128-2": "example1", "battery-16-128-2": "example2"}


def case(comm, name: str) -> Example:
    """The demos' examples (--quick), or a demo's family at (1/16, 1/128, 2): Example 1's with
    40 training parameters, Example 2's with its capacity and source."""
    if name in ("example1", "example2"):
        return EXAMPLES[name]("quick", comm=comm)
    base = EXAMPLES[FINE_CASES[name]]("quick", comm=comm)
    n = 128
    if base.number == 1:
        extra = {"family": cont_family(n), "samples": 40}
    else:
        extra = {
            "family": battery_family(n),
            "capacity": battery_capacity(n),
            "source": battery_source(n),
        }
    return replace(
        base,
        number=0,
        mode=name,
        grids=dl.create_nested_grids(comm, 16, n),
        layers=2,
        settings=replace(base.settings, epochs=1000),
        **extra,
    )


def bench(comm, name: str) -> dict:
    ex = case(comm, name)
    grids, family, layers = ex.grids, ex.family, ex.layers
    folder, _, _ = cached_training(
        grids, layers, family, ex.samples, ex.test_samples, ex.settings, progress=False
    )
    model = TrainedModel.load(folder / "model.pt", grids, layers, family)
    coefficient = CoefficientSchedule.from_family(family.a, ex.schedules[0])
    extra = {"capacity": ex.capacity, "source": ex.source}
    variants = {
        "classical_full": dict(update="full"),
        "classical_selective_0.1": dict(update="selective", tol=0.1),
        "lod_ann": dict(provider=LearnedCorrectors(model, family, grids.r)),
    }
    out = {
        "case": name,
        "n": grids.fine,
        "NH": grids.coarse,
        "l": layers,
        "steps": ex.steps,
        "ranks": comm.size,
    }
    for key, kwargs in variants.items():
        res = run_parabolic(
            grids, coefficient, ex.T, ex.steps, layers, **extra, **kwargs, reference=True
        )
        later = res.records[1:]  # step 1 builds every basis from scratch
        t = {k: float(np.mean([r["timings"][k] for r in later])) for k in later[0]["timings"]}
        out[key] = {
            "basis_seconds_per_step": t["basis_update"],
            "coarse_seconds_per_step": t["coarse_assembly"] + t["coarse_solve"],
            "fem_seconds_per_step": t["fine_assembly"] + t["fine_solve"],
            "recomputed_patches_per_step": float(np.mean([r["recomputed_patches"] for r in later])),
            "rel_l2_error_final_vs_fem": res.final_errors["l2"],
        }
        res.basis.destroy()
    full, ann = out["classical_full"], out["lod_ann"]
    out["speedup_ann_vs_full_basis"] = (
        full["basis_seconds_per_step"] / ann["basis_seconds_per_step"]
    )
    out["speedup_selective_vs_full_basis"] = (
        full["basis_seconds_per_step"] / out["classical_selective_0.1"]["basis_seconds_per_step"]
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["example1", "example2", *FINE_CASES],
        choices=["example1", "example2", *FINE_CASES],
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/online.json"))
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    results = [bench(comm, name) for name in args.cases]
    if comm.rank == 0:
        head = ("example", "variant", "basis s/step", "coarse s/step", "FEM s/step", "patches")
        print("".join(f"{c:>24}" for c in head))
        for r in results:
            for key in ("classical_full", "classical_selective_0.1", "lod_ann"):
                v = r[key]
                row = (
                    r["case"],
                    key,
                    f"{v['basis_seconds_per_step']:.4f}",
                    f"{v['coarse_seconds_per_step']:.4f}",
                    f"{v['fem_seconds_per_step']:.4f}",
                    f"{v['recomputed_patches_per_step']:.1f}",
                )
                print("".join(f"{c:>24}" for c in row))
            speedup = r["speedup_ann_vs_full_basis"]
            print(f"  LOD-ANN basis update {speedup:.1f}x faster than the full recompute")
        write_json(
            args.out,
            {
                "machine": machine(),
                "results": results,
            },
        )


if __name__ == "__main__":
    main()
