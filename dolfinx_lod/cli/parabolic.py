"""``dolfinx-lod parabolic``: backward Euler for c d_t u - div(a(t) grad u) = f with the LOD."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

import dolfinx_lod
from dolfinx_lod.cli.inputs import (
    check_grid,
    learned_provider,
    load_array,
    load_boundary,
    load_params,
    load_source,
    nested_grids,
    warn,
)
from dolfinx_lod.cli.options import add_box_options, add_solve_options
from dolfinx_lod.cli.output import basis_keys, boundary_keys, grid_keys, output_set, snapshot
from dolfinx_lod.io import (
    OutputSet,
    check_free_space,
    close_writers,
    gather_vertex_array,
    vtx_bytes,
    write_json,
    write_npy,
)
from dolfinx_lod.parallel import InputError, OutputError, collective, validate
from dolfinx_lod.patches import owned_cells
from dolfinx_lod.timestepping import UPDATES, CoefficientSchedule, run_parabolic
from dolfinx_lod.updates import DEFAULT_TOL, INDICATORS


def add_parser(sub) -> None:
    """The ``parabolic`` sub-command's options."""
    q = sub.add_parser(
        "parabolic",
        help="backward Euler for c d_t u - div(a(t) grad u) = f with the LOD",
    )
    q.add_argument(
        "--coefficients",
        type=Path,
        required=True,
        help="(M, n_y, n_x) or (M, n_z, n_y, n_x) .npy stack: coefficient of step m = 1..M "
        "(orientation as for elliptic; 4 axes: 3D)",
    )
    add_box_options(q)
    q.add_argument("--T", type=float, required=True, help="final time T > 0")
    q.add_argument("--steps", type=int, required=True, help="M, number of time steps")
    q.add_argument("--update", choices=UPDATES, default="full", help="basis update strategy")
    q.add_argument(
        "--tol",
        type=float,
        help="--update selective: a patch keeps its correctors while its error indicator e_T, "
        "a bound on their relative energy change, is <= tol (default 0.1; 0: recompute every "
        "patch where a changed)",
    )
    q.add_argument(
        "--indicator",
        choices=INDICATORS,
        default="coefficient",
        help="error indicator of --update selective: coefficient (from a alone, cheap; default) "
        "or correctors (sharper, a patch assembly per changed patch)",
    )
    q.add_argument(
        "--capacity",
        type=Path,
        help="(n_y, n_x) or (n_z, n_y, n_x) .npy array of c > 0, shaped like a stack entry "
        "(default 1)",
    )
    q.add_argument(
        "--snapshots",
        type=int,
        nargs="*",
        help="steps in 1..M with PNG snapshots (default: 1, M/2, M)",
    )
    add_solve_options(
        q,
        plot="skip PNG snapshots",
        reference="also advance the fine FEM: errors per step, reference_final.npy, u_h in lod.bp",
    )
    q.add_argument(
        "--output-every",
        type=int,
        help="reconstruct u_ms and write a VTX frame every K steps (default: only the "
        "snapshot steps and T)",
    )
    q.add_argument(
        "--params",
        type=Path,
        help="(M,) or (M, N_p) .npy array: the family parameter p of each step, for --operators "
        "and a --model conditioned on p (not for a cnn model)",
    )
    q.add_argument(
        "--operators",
        type=Path,
        help="operators.pt of dolfinx-lod operators: the Petrov-Galerkin coarse operators of "
        "each step from p (--params) by the networks, no patch solve or fine-scale product in "
        "a step; u_ms at the output steps from the correctors of --model (p-conditioned) or "
        "else from patch solves at p; needs --method petrov-galerkin and capacity 1",
    )


def _check_options(args: argparse.Namespace, comm: MPI.Comm, steps: int) -> None:
    """--snapshots in 1..M; warn about --tol without --update selective.
    Collective."""

    def check() -> None:
        bad = [m for m in args.snapshots or () if not 1 <= m <= steps]
        if bad:
            raise InputError(f"--snapshots must be steps in 1..M = 1..{steps}; got {bad}")

    validate(comm, check)
    if args.tol is not None and args.update != "selective":
        warn(
            comm,
            "parabolic",
            f"--tol applies to --update selective only; ignored with --update {args.update}",
        )


def run(args: argparse.Namespace, comm: MPI.Comm) -> dict:
    """Run the parabolic LOD against the fine FEM; write summary.json, final arrays, VTX time
    series (lod.bp: u_ms, u_h, error; coefficient.bp: a) and PNG snapshots as one set into
    --out. Every step of the coefficient stack is validated before the first step."""
    t0 = time.perf_counter()
    with output_set(args, comm) as output:  # --out checked first, before any work
        stack = load_array(
            args.coefficients,
            "--coefficients",
            comm,
            True,
            (2, 3),
            lambda n: check_grid(args, comm, n),
        )
        dim = stack.ndim - 1
        capacity = (
            1.0
            if args.capacity is None
            else load_array(args.capacity, "--capacity", comm, False, (dim,))
        )
        grids = nested_grids(args, comm, stack.shape[1:])
        _check_options(args, comm, args.steps)
        params = load_params(args, comm, stack.shape[0])
        provider, params = learned_provider(args, comm, grids, "--params", params)
        schedule = CoefficientSchedule.from_stack(stack, check=False)  # checked in load_array
        if params is not None:  # the step's field and its parameter p (for the learned basis)
            schedule = CoefficientSchedule(
                lambda m, t: (stack[m - 1], params[m - 1]), stack.shape[0]
            )
        provider, classical = _operator_provider(args, comm, grids, provider, params, stack)
        try:
            summary = _advance(args, comm, grids, schedule, capacity, output, t0, provider)
            output.commit()
        finally:
            if classical is not None:
                classical.destroy()
    return summary


def _check_operator_options(args: argparse.Namespace, provider, params) -> None:
    """--operators needs Petrov-Galerkin, c = 1, a full update, --params and no p-free model."""
    if args.method != "petrov-galerkin":
        raise InputError("--operators needs --method petrov-galerkin")
    if args.capacity is not None or args.update != "full":
        raise InputError(
            "--operators: the operators were fitted for capacity c = 1 and a full update; "
            "drop --capacity / --update selective"
        )
    if params is None:
        raise InputError("--operators needs --params (the family parameter p of each step)")
    if provider is not None and provider.needs_coefficient:
        raise InputError(
            f"--operators with --model {args.model}: the model reads the coefficient; use a "
            "model conditioned on p, or none (patch solves at the output steps)"
        )


def _operator_provider(
    args: argparse.Namespace, comm: MPI.Comm, grids, provider, params, stack: np.ndarray
):
    """With --operators, the provider whose Petrov-Galerkin operators come from the networks
    and whose correctors (output steps) from ``provider`` (--model) or from patch solves at p,
    with the classical patch solvers it created (to destroy; None if none). The options and
    the file are checked before any work. Collective."""
    if args.operators is None:
        return provider, None
    from dolfinx_lod.correctors import ClassicalCorrectors
    from dolfinx_lod.interpolation import local_projection
    from dolfinx_lod.neural.operator_provider import FamilyCorrectors, OperatorProvider
    from dolfinx_lod.neural.operators import LearnedOperators
    from dolfinx_lod.samples import params_family

    validate(comm, lambda: _check_operator_options(args, provider, params))
    cells = owned_cells(grids)  # the cells of the basis' patches on this rank
    nets: list = []

    def given(meta: dict):
        """Operators fitted to given samples: their family is the steps' fields at --params."""
        if not meta.get("given_samples"):
            return None
        box = (meta["param_low"], meta["param_high"])
        return params_family(stack, params, meta["family"], grids.domain, box)

    def load() -> None:
        ops = LearnedOperators.load(args.operators, grids, args.layers, cells, given)
        for m, p in enumerate(params):
            try:
                ops.family.check(p)
            except ValueError as e:
                raise InputError(f"--params (step {m + 1}): {e}") from e
        nets.append(ops)

    validate(comm, load)
    classical = None
    if provider is None:
        classical = ClassicalCorrectors.shared(grids, local_projection(grids))
        provider = FamilyCorrectors(classical, nets[0].family)
    return OperatorProvider(provider, nets[0]), classical


class _Observer:
    """Writes u_ms (u_h, |u_ms - u_h| with a reference) and a(t_m) as VTX frames at the output
    steps and PNG snapshots at the snapshot steps. Collective."""

    def __init__(self, args: argparse.Namespace, comm: MPI.Comm, grids, output: OutputSet):
        import dolfinx.fem

        self.args, self.comm, self.grids, self.output = args, comm, grids, output
        self.snapshots = set(
            args.snapshots
            if args.snapshots is not None
            else {1, max(args.steps // 2, 1), args.steps}
        )
        self.outputs = self.snapshots | {args.steps}
        if args.output_every is not None:
            self.outputs |= set(range(args.output_every, args.steps + 1, args.output_every))
        self.u_out = dolfinx.fem.Function(grids.V_h, name="u_ms")
        self.u_ref = dolfinx.fem.Function(grids.V_h, name="u_h")
        self.error = dolfinx.fem.Function(grids.V_h, name="error")
        self.fields = [self.u_out, self.u_ref, self.error] if args.reference else [self.u_out]
        self.writers: dict = {}
        self.frames: list[int] = []
        self.files = {
            "solution_final": "solution_final.npy",
            "lod_vtx": "lod.bp",
            "coefficient_vtx": "coefficient.bp",
        }
        if args.reference:
            self.files["reference_final"] = "reference_final.npy"

    def _open(self, a_fun) -> None:
        import dolfinx.io

        path = self.output.path
        self.writers["lod"] = dolfinx.io.VTXWriter(self.comm, path("lod.bp"), self.fields)
        self.writers["a"] = dolfinx.io.VTXWriter(self.comm, path("coefficient.bp"), [a_fun])

    def __call__(self, view) -> None:
        if view.m not in self.outputs:
            return
        if not self.writers:
            self._open(view.a)  # a(t_m), evaluated for the coefficient writer
        view.lod.solution(out=self.u_out)
        if self.args.reference:
            self.u_ref.x.array[:] = view.u_h.x.array
            self.error.x.array[:] = np.abs(self.u_out.x.array - self.u_ref.x.array)
        first = not self.frames
        need = vtx_bytes(self.fields, first) + vtx_bytes([view.a], first)
        check_free_space(self.comm, self.output.staging, need, "the VTX time series")
        for writer in self.writers.values():
            writer.write(view.t)
        self.frames.append(view.m)
        if view.m in self.snapshots and not self.args.no_plot:
            name = f"snapshot_step{view.m:04d}.png"
            snapshot(self.output.path(name), self.grids, view)
            self.files[f"snapshot_step{view.m}"] = name

    def close(self, error: BaseException | None) -> None:
        """Close the VTX writers (or keep them for a collective close, :func:`close_writers`)."""
        close_writers(self.comm, list(self.writers.values()), error)


def _advance(args, comm, grids, schedule, capacity, output: OutputSet, t0: float, provider):
    """Run the time loop with the observer; write the final arrays and summary. Collective."""
    observer = _Observer(args, comm, grids, output)
    error = None
    try:
        result = run_parabolic(
            grids,
            schedule,
            args.T,
            args.steps,
            args.layers,
            method=args.method,
            update=args.update,
            tol=DEFAULT_TOL if args.tol is None else args.tol,
            indicator=args.indicator,
            capacity=capacity,
            source=load_source(args, comm, grids, True),
            provider=provider,
            observer=observer,
            progress=True,
            reference=args.reference,
            **load_boundary(args, comm),
        )
    except BaseException as e:
        error = e
        raise
    finally:
        observer.close(error)
    try:  # the PETSc objects are destroyed on every rank together, also after an error
        u_ms = gather_vertex_array(grids, result.u_ms)
        u_h = gather_vertex_array(grids, result.u_h) if args.reference else None
        summary = _summary(args, comm, grids, result, observer)
        element = getattr(getattr(provider, "operators", None), "element", None)
        if element is not None and element.points is not None:  # learned operators, interpolated
            summary["element_interpolation_fallbacks"] = comm.allreduce(element.fallbacks)
        with collective(comm, OutputError):
            if comm.rank == 0:
                write_npy(output.path("solution_final.npy"), u_ms)
                if u_h is not None:
                    write_npy(output.path("reference_final.npy"), u_h)
                summary["wall_seconds"] = time.perf_counter() - t0
                write_json(output.path("summary.json"), summary)
    finally:
        result.basis.destroy()
    return summary


def _summary(args, comm, grids, result, observer: _Observer) -> dict:
    """summary.json of a time loop."""
    records = result.records
    phases = sorted({k for r in records for k in r["timings"]})
    summary = {
        "command": "parabolic",
        **result.settings,
        **grid_keys(grids),
        "l": args.layers,
        "ranks": comm.size,
        **boundary_keys(args),
        "coefficients": str(args.coefficients),
        **basis_keys(args),
        "capacity": str(args.capacity) if args.capacity else 1.0,
        "output_steps": observer.frames,
        "recomputed_patches_total": sum(r["recomputed_patches"] for r in records),
        "mean_step_seconds": {
            k: float(np.mean([r["timings"].get(k, 0.0) for r in records])) for k in phases
        },
        "steps_record": records,
        "files": observer.files,
        "version": dolfinx_lod.__version__,
    }
    if args.reference:
        summary["rel_l2_error_final"] = result.final_errors["l2"]
        summary["rel_energy_error_final"] = result.final_errors["energy"]
    return summary


def report(args: argparse.Namespace, summary: dict, comm: MPI.Comm) -> str:
    """The closing console line."""
    errors = (
        f"relative L2 error at T {summary['rel_l2_error_final']:.3e}, energy "
        f"{summary['rel_energy_error_final']:.3e}; "
        if "rel_l2_error_final" in summary
        else ""
    )
    return (
        f"parabolic: n={summary['n']} NH={summary['NH']} l={summary['l']} M={summary['steps']} "
        f"ranks={comm.size}: {errors}{summary['recomputed_patches_total']} patch solves; "
        f"results in {args.out}/"
    )
