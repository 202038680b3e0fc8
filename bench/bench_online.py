"""Benchmark: the online phase per time step (issue "performance", item 2).

Run by hand (uses and fills the model cache of the demos):

    mpirun -n 2 python bench/bench_online.py --out bench/results/online-2.json

For the paper's two example sizes (the demos' --quick settings and trained networks), 24 steps
of the backward Euler loop on one held-out schedule, it reports the mean wall time per step of
the basis update for the classical full recompute, the selective update (tol 0.1) and the
LOD-ANN prediction, the coarse assembly + solve, and the fine FEM step, with their ratios.
"""

import argparse
import importlib.util
import platform
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.coefficients import battery_capacity, battery_family, battery_source, cont_family
from dolfinx_lod.experiments import cached_training, training_settings
from dolfinx_lod.io import write_json
from dolfinx_lod.neural import LearnedCorrectors, TrainedModel
from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic

DEMOS = Path(__file__).resolve().parent.parent / "demos"


def demo_settings(name: str) -> dict:
    spec = importlib.util.spec_from_file_location(name, DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SIZES["quick"]


def bench(comm, name: str) -> dict:
    s = demo_settings(name)
    n = s["n"]
    grids = dl.create_nested_grids(comm, s["NH"], n)
    if name == "example1":
        family, extra = cont_family(n), {}
        p0 = family.test_parameters(1, seed=7)[0]
        schedule = lambda t: np.minimum(p0 * (1 + 0.2 * t), 1.0)  # noqa: E731
    else:
        family = battery_family(n)
        extra = {"capacity": battery_capacity(n), "source": battery_source(n)}
        p0 = family.test_parameters(1, seed=7)[0]
        schedule = lambda t: np.clip(p0 + 0.2 * t, -1.0, 1.0)  # noqa: E731
    folder, _, _ = cached_training(
        grids, 1, family, s["samples"], s["tests"], training_settings("quick"), progress=False
    )
    model = TrainedModel.load(folder / "model.pt", grids, 1, family)
    coefficient = CoefficientSchedule.from_family(family.a, schedule)
    variants = {
        "classical_full": dict(update="full"),
        "classical_selective_0.1": dict(update="selective", tol=0.1),
        "lod_ann": dict(provider=LearnedCorrectors(model, family, grids.r)),
    }
    out = {"example": name, "n": n, "NH": s["NH"], "l": 1, "steps": s["steps"], "ranks": comm.size}
    for key, kwargs in variants.items():
        res = run_parabolic(grids, coefficient, 1.0, s["steps"], 1, **extra, **kwargs)
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
    parser.add_argument("--out", type=Path, default=Path("bench/results/online.json"))
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    results = [bench(comm, name) for name in ("example1", "example2")]
    if comm.rank == 0:
        head = ("example", "variant", "basis s/step", "coarse s/step", "FEM s/step", "patches")
        print("".join(f"{c:>24}" for c in head))
        for r in results:
            for key in ("classical_full", "classical_selective_0.1", "lod_ann"):
                v = r[key]
                row = (
                    r["example"],
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
                "machine": {"node": platform.node(), "cpus": __import__("os").cpu_count()},
                "results": results,
            },
        )


if __name__ == "__main__":
    main()
