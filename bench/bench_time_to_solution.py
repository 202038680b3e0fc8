"""Benchmark: time to solution of a backward Euler loop with a changing coefficient.

    python -m bench run time-to-solution [--ranks 2] [-- --coarse 16 --fine 256 --out FILE]

(H, h, l) = (1/32, 1/512, 2) by default, T = 1, ``--steps`` M steps. Cases (a(t_m) per step):

- ``battery`` / ``cont``: the paper's families with p(t) changing every step (as bench_step);
- ``defects``: a textured background with ``--inclusions`` square inclusions (a = 20), one of
  which vanishes at each step m >= 2 (local changes);
- ``growing``: ``--inclusions`` discs (a = 100) whose radius grows linearly in t (changes on
  every disc's rim at every step).

Methods, advanced side by side on the same coefficient (:func:`advance`): the fine FEM (CG +
GAMG at rtol 1e-8, matrix and preconditioner kept while a is unchanged: the fair yardstick,
:data:`~dolfinx_lod.steppers.FEM_RTOL`), and the Galerkin / Petrov–Galerkin LOD with the full
update and with the selective update (coefficient-only indicators, ``--tol``, or per method
``NAME@TOL``, e.g. ``petrov_galerkin_selective@0.3``). Per method:
step 1 (the offline part: every corrector from scratch), the mean of steps 2..M, the total
time to T, the relative L2 error at T against the fine FEM, the patches recomputed and the
indicators' seconds per step (and every phase's: the steppers' and the basis update's,
the maximum over the ranks), and the break-even M against the FEM: the smallest M with
first_lod + (M - 1) step_lod <= first_fem + (M - 1) step_fem (None if the LOD step is not the
cheaper one). The seconds of step 1 and 2 of the full update are the seconds of a classical
basis for a first and for a further parameter (the patch problems, their symbolic
factorisation and assembly data are reused: only values change).
"""

import argparse
import resource
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from harness import grid_parser
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.io import write_json
from dolfinx_lod.lod import relative_errors
from dolfinx_lod.steppers import FEM_RTOL, FEMStepper, LODStepper
from dolfinx_lod.timestepping import CoefficientSchedule, advance

#: method name -> (LOD method, update)
METHODS = {
    "galerkin_full": ("galerkin", "full"),
    "galerkin_selective": ("galerkin", "selective"),
    "petrov_galerkin_full": ("petrov-galerkin", "full"),
    "petrov_galerkin_selective": ("petrov-galerkin", "selective"),
}


def _centres(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.1, 0.9, (count, 2))


def defects_stack(n: int, steps: int, count: int) -> np.ndarray:
    """Background in [1, 2]; ``count`` squares of side 1/32 with a = 20; inclusion m - 2
    vanishes at step m >= 2 (needs count >= steps - 1)."""
    base = dl.coefficients.random_coefficient(n, 1.0, 2.0, seed=11)
    side = max(n // 32, 1)
    corners = (_centres(count, 12) * n).astype(int)
    stack = []
    for m in range(1, steps + 1):
        a = base.copy()
        for k, (x, y) in enumerate(corners):
            if k >= m - 1:  # inclusions 0..m-2 have vanished
                a[y : y + side, x : x + side] = 20.0
        stack.append(a)
    return np.array(stack)


def growing_stack(n: int, steps: int, count: int) -> np.ndarray:
    """Background 1; ``count`` discs with a = 100 of radius 0.01 (1 + 2 t_m)."""
    x = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(x, x)
    centres = _centres(count, 13)
    dist = np.min([np.hypot(X - cx, Y - cy) for cx, cy in centres], axis=0)
    return np.array(
        [np.where(dist < 0.01 * (1 + 2 * m / steps), 100.0, 1.0) for m in range(1, steps + 1)]
    )


def schedules(n: int, steps: int, inclusions: int) -> dict[str, CoefficientSchedule]:
    """The benchmark's coefficient schedules by case name."""
    battery = dl.coefficients.family("battery", n)
    cont = dl.coefficients.family("cont", n)
    p0 = battery.test_parameters(1, seed=7)[0]
    return {
        "battery": CoefficientSchedule.from_family(
            battery.a, lambda t: battery.check(np.clip(p0 + 0.2 * t, -1.0, 1.0))
        ),
        "cont": CoefficientSchedule.from_family(cont.a, lambda t: cont.check([0.3 + 0.2 * t])),
        "defects": CoefficientSchedule.from_stack(defects_stack(n, steps, inclusions)),
        "growing": CoefficientSchedule.from_stack(growing_stack(n, steps, inclusions)),
    }


def tol_of(method: str, default: float) -> float:
    """The selective update's tolerance of a method name: "NAME@TOL", or ``default``."""
    return float(method.split("@")[1]) if "@" in method else default


def method_name(text: str) -> str:
    """An argparse type: a name of :data:`METHODS`, optionally "@TOL" (its own tolerance)."""
    if text.split("@")[0] not in METHODS or text.count("@") > 1:
        raise argparse.ArgumentTypeError(f"{text!r}: one of {list(METHODS)}, optionally @TOL")
    if "@" in text:
        tol_of(text, 0.0)  # a number
    return text


def break_even(first: float, step: float, fem_first: float, fem_step: float) -> int | None:
    """Smallest M >= 1 with first + (M - 1) step <= fem_first + (M - 1) fem_step."""
    if first <= fem_first:
        return 1
    if step >= fem_step:
        return None
    return int(np.ceil((first - fem_first) / (fem_step - step))) + 1


def run_case(grids, schedule, steps: int, layers: int, tol: float, methods: list[str]) -> dict:
    """Advance the FEM and the LOD ``methods`` side by side; per-method figures."""
    comm, tau = grids.comm, 1.0 / steps
    fem = FEMStepper(grids, tau)
    lods = {
        name: LODStepper(grids, layers, tau, *METHODS[name.split("@")[0]], tol=tol_of(name, tol))
        for name in methods
    }
    steppers = {"fem": fem, **lods}
    seconds = {name: [] for name in steppers}
    recomputed = {name: [] for name in lods}
    indicators = {name: [] for name in lods}
    phases = {name: [] for name in lods}

    def observe(m, t, state):
        for name, stepper in steppers.items():
            seconds[name].append(comm.allreduce(sum(stepper.timings.values()), op=MPI.MAX))
        for name, lod in lods.items():
            recomputed[name].append(lod.touched_fine["patches_recomputed"])
            indicators[name].append(comm.allreduce(lod.timings["indicators"], op=MPI.MAX))
            timed = {**lod.timings, **{f"basis_{k}": v for k, v in lod.basis.timings.items()}}
            phases[name].append({k: comm.allreduce(v, op=MPI.MAX) for k, v in timed.items()})
        if comm.rank == 0:
            print(f"  step {m}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in seconds.items()))

    advance(grids, schedule, 1.0, steps, list(steppers.values()), observe)
    out = {}
    for name, s in seconds.items():
        first, step = s[0], float(np.mean(s[1:])) if steps > 1 else s[0]
        out[name] = {"first_step": first, "mean_step": step, "total": float(sum(s))}
    fem_first, fem_step = out["fem"]["first_step"], out["fem"]["mean_step"]
    out["fem"]["preconditioner_setups"] = fem.setups
    for name, lod in lods.items():
        errors = relative_errors(
            lod.solution().x.petsc_vec, fem.u.x.petsc_vec, fem.fine.M, fem.fine.S
        )
        rec = out[name]
        rec["rel_l2_error_T_vs_fem"] = errors["l2"]
        rec["fem_step_over_lod_step"] = fem_step / rec["mean_step"]
        rec["break_even_steps"] = break_even(
            rec["first_step"], rec["mean_step"], fem_first, fem_step
        )
        rec["patches_recomputed_per_step"] = recomputed[name]
        rec["indicator_seconds_per_step"] = indicators[name]
        rec["phase_seconds_per_step"] = phases[name]  # max over the ranks of each phase
        lod.destroy()
    fem.destroy()
    return out


def main() -> None:
    parser = grid_parser(__doc__, 32, 512, 2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--inclusions", type=int, default=64)
    parser.add_argument("--tol", type=float, default=0.1, help="selective update tolerance")
    parser.add_argument("--cases", nargs="+", default=["battery", "cont", "defects", "growing"])
    parser.add_argument(
        "--methods",
        nargs="+",
        type=method_name,
        default=list(METHODS),
        help="method names; NAME@TOL: a selective update with its own tolerance",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/time-to-solution.json"))
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    g = dl.create_nested_grids(comm, args.coarse, args.fine)
    all_schedules = schedules(args.fine, args.steps, args.inclusions)
    result = {
        "benchmark": "time-to-solution",
        "H": 1 / args.coarse,
        "h": 1 / args.fine,
        "layers": args.layers,
        "steps": args.steps,
        "T": 1.0,
        "tol": args.tol,
        "fem_rtol": FEM_RTOL,
        "ranks": comm.size,
        "cases": {},
    }
    for name in args.cases:
        if comm.rank == 0:
            print(name, flush=True)
        run = run_case(g, all_schedules[name], args.steps, args.layers, args.tol, args.methods)
        result["cases"][name] = run
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # GiB
        result["peak_memory_gib_per_rank"] = comm.allgather(peak)
        if comm.rank == 0:
            write_json(args.out, result)  # after every case: a long run keeps what it measured


if __name__ == "__main__":
    main()
