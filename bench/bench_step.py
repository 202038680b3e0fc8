"""Benchmark: what one online time step costs, LOD steppers against a plain fine FEM step.

Run by hand, e.g.

    python bench/bench_step.py --out bench/results/step-1.json
    mpirun -n 2 python bench/bench_step.py --out bench/results/step-2.json

(H, h, l) = (1/32, 1/512, 2) by default. Cases, each a backward Euler loop (T = 1):

- ``constant``: a rough coefficient (values in [0.01, 1] per fine cell) constant in time,
  ``--steps`` steps: the LOD basis is computed at step 1 and kept;
- ``battery`` / ``cont``: the paper's families with p(t) changing every step
  (``--changing-steps`` steps), classical full update, and the Galerkin LOD with the
  selective update (patches whose error indicator e_T exceeds ``--tol`` recomputed).

All steppers of a case advance side by side on the same coefficient (:func:`advance`): the
fine FEM (CG + GAMG, rtol 1e-8 since the fair yardstick, results before it: 1e-12; assembly and
preconditioner only when a changed), the LOD with the Galerkin and
Petrov–Galerkin methods and, for the families, the Petrov–Galerkin LOD with learned local
operators (:mod:`dolfinx_lod.neural.operators`, fitted to the classical operators at
``--samples`` training parameters of the family; the fit is timed apart). Its fine solution at
T is reconstructed with the classical correctors of p(T) (:class:`FamilyCorrectors`), outside
the timed steps (``--methods`` selects the LOD steppers). Reported per stepper: mean wall time
per phase over steps 2..M (step 1 builds every basis from scratch and is reported apart), the
ratio of the fine FEM step to the LOD step, the relative L2 error at T of the LOD against the
fine FEM (computed after the loop, outside the timed steps) and the peak memory per rank.
"""

import resource
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
import torch
from harness import grid_parser, machine
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.correctors import ClassicalCorrectors
from dolfinx_lod.interpolation import local_projection
from dolfinx_lod.io import write_json
from dolfinx_lod.lod import relative_errors
from dolfinx_lod.neural.operator_provider import FamilyCorrectors, OperatorProvider
from dolfinx_lod.neural.operators import fit_operators, interpolation_report
from dolfinx_lod.neural.presets import OPERATOR_FIT, OPERATOR_INTERPOLATION
from dolfinx_lod.timestepping import CoefficientSchedule, FEMStepper, LODStepper, advance


def battery_parameter(battery, t: float) -> np.ndarray:
    """The battery schedule's p(t): a held-out p_0 moved by 0.2 t in every component."""
    p0 = battery.test_parameters(1, seed=7)[0]
    return battery.check(np.clip(p0 + 0.2 * t, -1.0, 1.0))


def schedules(n: int, steps: int, changing: int) -> dict:
    """The benchmark's coefficient schedules: name -> (schedule, steps, family or None)."""
    rough = dl.coefficients.random_coefficient(n, 0.01, 1.0, seed=0)
    battery = dl.coefficients.family("battery", n)
    cont = dl.coefficients.family("cont", n)
    return {
        "constant": (
            CoefficientSchedule.from_stack(np.repeat(rough[None], steps, 0)),
            steps,
            None,
        ),
        "battery": (
            CoefficientSchedule.from_family(battery.a, lambda t: battery_parameter(battery, t)),
            changing,
            battery,
        ),
        "cont": (
            CoefficientSchedule.from_family(cont.a, lambda t: cont.check([0.3 + 0.2 * t])),
            changing,
            cont,
        ),
    }


#: The LOD steppers of ``--methods`` (selective and learned: the changing cases only).
METHODS = ("galerkin", "petrov-galerkin", "selective", "learned")


def learned_stepper(
    grids, layers: int, tau: float, family, samples: int, epochs: int, kind: str, exact: bool
) -> tuple:
    """The Petrov–Galerkin LOD stepper with local operators fitted (``kind``: a fit of
    :func:`fit_operators`) at ``samples`` training parameters; returns (stepper, fit record,
    the fit)."""
    t0 = time.perf_counter()
    basis = MultiscaleBasis(grids, layers, capacity=1.0)
    train = family.training_parameters(samples)
    tol = None if exact else OPERATOR_INTERPOLATION["tol"]  # the element part's interpolation
    nets, loss = fit_operators(basis, family, train, epochs=epochs, fit=kind, interpolation=tol)
    basis.destroy()
    seconds = grids.comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    fit = {"fit": kind, "element": "exact" if exact else "interpolated", "samples": samples}
    fit.update({"epochs": epochs, "loss": loss, "seconds": seconds})
    correctors = FamilyCorrectors(ClassicalCorrectors(grids, local_projection(grids)), family)
    provider = OperatorProvider(correctors, nets)
    return LODStepper(grids, layers, tau, "petrov-galerkin", provider=provider), fit, nets


def interpolation_record(nets, family, steps: int, comm) -> dict:
    """The element part's interpolation (reduced fits): points per coarse cell, its error at 5
    held-out parameters, the coarse cells that fell back in the timed steps; {} without."""
    element = getattr(nets, "element", None)
    if element is None or element.points is None:
        return {}
    fallbacks = comm.allreduce(element.fallbacks)  # of the steps, before the report adds its own
    report = interpolation_report(nets, family, family.test_parameters(5, seed=99), comm)
    cells = comm.allreduce(len(element.D))
    record = {**report["element_interpolation"], "fallback_cells_steps": fallbacks}
    return {"element_interpolation": {**record, "cells_steps": cells * steps}}


def run_case(
    grids, schedule, steps, layers, comm, family, samples, epochs, tol, methods, kind, exact=False
) -> dict:
    """Advance the FEM and the LOD steppers ``methods`` (a subset of :data:`METHODS`) side by
    side; per-step timings and errors."""
    tau = 1.0 / steps
    fem = FEMStepper(grids, tau)
    lods = {}
    if "galerkin" in methods:
        lods["lod_galerkin"] = LODStepper(grids, layers, tau, "galerkin")
    if "petrov-galerkin" in methods:
        lods["lod_petrov_galerkin"] = LODStepper(grids, layers, tau, "petrov-galerkin")
    if family is not None and "selective" in methods:
        lods["lod_galerkin_selective"] = LODStepper(
            grids, layers, tau, "galerkin", update="selective", tol=tol
        )
    fit = nets = None
    if family is not None and "learned" in methods:
        lods["lod_learned_operators"], fit, nets = learned_stepper(
            grids, layers, tau, family, samples, epochs, kind, exact
        )
        if comm.rank == 0:
            print(f"  operator fit: {fit['seconds']:.1f} s, loss {fit['loss']:.2e}", flush=True)
    steppers = {"fem": fem, **lods}
    timings: dict[str, list[dict[str, float]]] = {name: [] for name in steppers}
    recomputed: dict[str, list[int]] = {name: [] for name in lods}

    def observe(m, t, state):
        for name, stepper in steppers.items():
            timings[name].append(
                {k: comm.allreduce(v, op=MPI.MAX) for k, v in stepper.timings.items()}
            )
        for name, lod in lods.items():
            recomputed[name].append(lod.touched_fine["patches_recomputed"])  # global already
        if comm.rank == 0:
            seconds = ", ".join(f"{k} {sum(v[-1].values()):.3f}" for k, v in timings.items())
            print(f"  step {m} (s): {seconds}", flush=True)

    advance(grids, schedule, 1.0, steps, list(steppers.values()), observe)
    out = {}
    for name, records in timings.items():
        later = records[1:] if len(records) > 1 else records
        mean = {k: float(np.mean([r[k] for r in later])) for k in later[0]}
        out[name] = {
            "first_step": records[0],
            "mean_step": mean,
            "step_seconds": float(sum(mean.values())),
        }
    for name, lod in lods.items():
        errors = relative_errors(
            lod.solution().x.petsc_vec, fem.u.x.petsc_vec, fem.fine.M, fem.fine.S
        )
        out[name]["patches_recomputed_per_step"] = recomputed[name]
        out[name]["rel_l2_error_T_vs_fem"] = errors["l2"]
        out[name]["fem_step_over_lod_step"] = out["fem"]["step_seconds"] / out[name]["step_seconds"]
        lod.destroy()
    fem.destroy()
    if fit is not None:
        out["lod_learned_operators"]["fit"] = {
            **fit,
            **interpolation_record(nets, family, steps, comm),
            # of sym(M/tau + K) at the first step (> 0: not coercive, the stepper warned)
            "negative_eigenvalues": lods["lod_learned_operators"].negative_eigenvalues,
        }
    return out


def main() -> None:
    parser = grid_parser(__doc__, 32, 512, 2)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--changing-steps", type=int, default=12)
    parser.add_argument("--cases", nargs="+", default=["constant", "battery", "cont"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--samples", type=int, default=40, help="training parameters (40)")
    parser.add_argument("--epochs", type=int, default=2000, help="operator fit epochs (2000)")
    parser.add_argument(
        "--fit",
        choices=("reduced", "poly", "mlp"),
        default=OPERATOR_FIT["fit"],
        help=f"the learned operators' fit ({OPERATOR_FIT['fit']})",
    )
    parser.add_argument(
        "--element",
        choices=("interpolated", "exact"),
        default="interpolated",
        help="the learned operators' element part: from a at a few points per coarse cell, "
        "or from a on every fine cell (interpolated)",
    )
    parser.add_argument(
        "--tol", type=float, default=0.1, help="selective update tolerance on e_T (0.1)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/step.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread per rank: ranks x threads <= cores
    comm = MPI.COMM_WORLD
    g = dl.create_nested_grids(comm, args.coarse, args.fine)
    all_schedules = schedules(args.fine, args.steps, args.changing_steps)
    result = {
        "benchmark": "step",
        "H": 1 / args.coarse,
        "h": 1 / args.fine,
        "layers": args.layers,
        "ranks": comm.size,
        "methods": args.methods,
        "samples": args.samples,
        "machine": machine(),
        "cases": {},
    }
    for name in args.cases:
        schedule, steps, family = all_schedules[name]
        run = run_case(
            g,
            schedule,
            steps,
            args.layers,
            comm,
            family,
            args.samples,
            args.epochs,
            args.tol,
            args.methods,
            args.fit,
            args.element == "exact",
        )
        result["cases"][name] = {"steps": steps, **run}
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # GiB (kB on Linux)
        result["peak_memory_gib_per_rank"] = comm.allgather(peak)
        if comm.rank == 0:
            summary = {
                k: (v["step_seconds"], v.get("rel_l2_error_T_vs_fem")) for k, v in run.items()
            }
            print(name, summary, flush=True)
            write_json(args.out, result)  # after every case: a long run keeps what it measured


if __name__ == "__main__":
    main()
