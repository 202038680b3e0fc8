"""Command line: ``dolfinx-lod elliptic ...`` (run under ``mpirun -n N`` for parallel runs)."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from mpi4py import MPI

import dolfinx_lod
from dolfinx_lod.coefficients import (
    check_coefficient_values,
    check_dtype,
    random_coefficient,
    validate_array_shape,
)
from dolfinx_lod.grids import SIDES, create_nested_grids, unit_box
from dolfinx_lod.io import (
    OutputSet,
    gather_cell_array,
    gather_vertex_array,
    write_json,
    write_npy,
    write_vtx,
)
from dolfinx_lod.lod import METHODS, solve_elliptic, validate_method, validate_source
from dolfinx_lod.parallel import InputError, LodError, OutputError, collective, validate
from dolfinx_lod.patches import owned_cells, validate_layers, validate_refinement
from dolfinx_lod.progress import interactive
from dolfinx_lod.timestepping import UPDATES, CoefficientSchedule, run_parabolic

COARSE_HELP = "N_H, coarse cells per direction (divides n, n / N_H >= 2)"
COUNTS_HELP = (
    "N_H, coarse cells per direction: one number, or one per direction as NX,NY[,NZ] (each "
    "divides the fine cells n of its direction, n / N_H >= 2)"
)
DOMAIN_HELP = (
    "the box: X0,Y0,X1,Y1 (2D) or X0,Y0,Z0,X1,Y1,Z1 (3D), lower-left then upper-right corner "
    "(default: the unit square / cube)"
)
NEUMANN_HELP = (
    f"sides with a homogeneous Neumann (insulated) condition, comma-separated out of "
    f"{','.join(SIDES)} (front/back: z, 3D only); the others have u = 0 (default: none)"
)


def _numbers(kind: type, what: str):
    """argparse type: comma-separated numbers of ``kind``."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(","))
        except ValueError as e:
            raise argparse.ArgumentTypeError(
                f"{what} must be comma-separated {kind.__name__}s, got {text!r}"
            ) from e

    return parse


def _counts(text: str) -> int | tuple[int, ...]:
    """argparse type of --coarse / --fine: "8" -> 8, "8,4" -> (8, 4)."""
    values = _numbers(int, "cell counts")(text)
    return values[0] if len(values) == 1 else values


def _sides(text: str) -> tuple[str, ...]:
    """argparse type of --neumann: "left,right" -> ("left", "right") (checked later)."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


#: Defaults of ``train`` for the coefficient-aware network (measured in docs/lod-ann.md).
DEFAULT_NETWORK = "cnn:24x6"
CNN_EPOCHS, CNN_LR, CNN_BATCH = 250, 1e-2, 2
#: Learning-rate schedule of ``train`` for the coefficient-aware network: factor, every epochs.
CNN_LR_DECAY, CNN_LR_STEP = 0.3, 170
FAMILIES = ("cont", "battery")
MODEL_HELP = (
    "model.pt of dolfinx-lod train: the learned basis (LOD-ANN) instead of patch solves; made "
    "for the same n, N_H, l and domain"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dolfinx-lod", description="Localized orthogonal decomposition with DOLFINx."
    )
    parser.add_argument("--version", action="version", version=dolfinx_lod.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser(
        "elliptic",
        help="solve -div(a grad u) = f on a box (u = 0 or insulated sides) with the LOD",
    )
    e.add_argument(
        "--coefficient",
        type=Path,
        help="(n_y, n_x) .npy array A[iy, ix] of fine-cell values (y from the bottom), or "
        "(n_z, n_y, n_x) A[iz, iy, ix] (z from the bottom) in 3D; default: random values in "
        "[0.01, 1] on a --fine grid of --dim dimensions",
    )
    e.add_argument(
        "--fine",
        type=_counts,
        default=128,
        help="n for the default coefficient: one number or NX,NY[,NZ] (128)",
    )
    e.add_argument(
        "--dim",
        type=int,
        help="space dimension of the default coefficient, 2 or 3 (2); with --coefficient it "
        "must match the array's axes",
    )
    e.add_argument("--seed", type=int, default=0, help="seed of the default coefficient (0)")
    e.add_argument("--coarse", type=_counts, required=True, help=COUNTS_HELP)
    e.add_argument("--domain", type=_numbers(float, "--domain"), help=DOMAIN_HELP)
    e.add_argument("--neumann", type=_sides, default=(), help=NEUMANN_HELP)
    e.add_argument("--layers", type=int, required=True, help="l >= 1, patch layers")
    e.add_argument("--method", choices=METHODS, default="galerkin")
    e.add_argument("--source", type=float, default=1.0, help="constant source f (1)")
    e.add_argument("--out", type=Path, required=True, help="output folder")
    e.add_argument("--no-plot", action="store_true", help="skip the PNG figure")
    e.add_argument(
        "--reference",
        action="store_true",
        help="also solve the fine FEM (and the coarse Q1 FEM): errors in summary.json, "
        "reference.npy",
    )
    e.add_argument("--model", type=Path, help=MODEL_HELP)
    e.add_argument(
        "--param",
        type=float,
        nargs="+",
        help="the family parameter p of a --model conditioned on p (not of a cnn model)",
    )

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
    q.add_argument("--coarse", type=_counts, required=True, help=COUNTS_HELP)
    q.add_argument("--domain", type=_numbers(float, "--domain"), help=DOMAIN_HELP)
    q.add_argument("--neumann", type=_sides, default=(), help=NEUMANN_HELP)
    q.add_argument("--layers", type=int, required=True, help="l >= 1, patch layers")
    q.add_argument("--T", type=float, required=True, help="final time T > 0")
    q.add_argument("--steps", type=int, required=True, help="M, number of time steps")
    q.add_argument("--update", choices=UPDATES, default="full", help="basis update strategy")
    q.add_argument("--tol", type=float, help="tolerance of --update selective (0)")
    q.add_argument(
        "--capacity",
        type=Path,
        help="(n_y, n_x) or (n_z, n_y, n_x) .npy array of c > 0, shaped like a stack entry "
        "(default 1)",
    )
    q.add_argument("--source", type=float, default=1.0, help="constant source f (1)")
    q.add_argument("--method", choices=METHODS, default="galerkin")
    q.add_argument(
        "--snapshots",
        type=int,
        nargs="*",
        help="steps in 1..M with PNG snapshots (default: 1, M/2, M)",
    )
    q.add_argument("--out", type=Path, required=True, help="output folder")
    q.add_argument("--no-plot", action="store_true", help="skip PNG snapshots")
    q.add_argument(
        "--reference",
        action="store_true",
        help="also advance the fine FEM: errors per step, reference_final.npy, u_h in lod.bp",
    )
    q.add_argument(
        "--output-every",
        type=int,
        help="reconstruct u_ms and write a VTX frame every K steps (default: only the "
        "snapshot steps and T)",
    )
    q.add_argument("--model", type=Path, help=MODEL_HELP)
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

    o = sub.add_parser(
        "operators",
        help="fit learned Petrov-Galerkin local operators p -> (K_T, M_T) of a family, for "
        "parabolic --operators",
    )
    o.add_argument("--family", choices=FAMILIES, required=True)
    o.add_argument("--coarse", type=int, required=True, help=COARSE_HELP)
    o.add_argument("--fine", type=int, required=True, help="n, fine cells per direction")
    o.add_argument("--layers", type=int, required=True, help="l >= 1, patch layers")
    o.add_argument("--samples", type=int, default=40, help="training parameters K (40)")
    o.add_argument(
        "--test-samples", type=int, default=5, help="held-out parameters for the report (5)"
    )
    o.add_argument("--network", default="mlp:32x3", help="'mlp:WxD', one MLP per patch (mlp:32x3)")
    o.add_argument("--epochs", type=int, default=2000, help="Adam epochs of the fit (2000)")
    o.add_argument("--threads", type=int, default=1, help="torch threads per MPI rank (1)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--out", type=Path, required=True, help="output folder")

    t = sub.add_parser(
        "train", help="train LOD-ANN corrector networks (Deep Ritz) for a family or given fields"
    )
    source = t.add_mutually_exclusive_group(required=True)
    source.add_argument("--family", choices=FAMILIES)
    source.add_argument(
        "--coefficients",
        type=Path,
        help="(K, n, n) .npy stack of training coefficients (instead of --family; cnn "
        "networks only); needs --test-coefficients",
    )
    t.add_argument(
        "--test-coefficients",
        type=Path,
        help="(K', n, n) .npy stack of held-out coefficients for the report (default with "
        "--family: --test-samples parameters of the family)",
    )
    t.add_argument("--coarse", type=int, required=True, help=COARSE_HELP)
    t.add_argument("--fine", type=int, required=True, help="n, fine cells per direction")
    t.add_argument("--layers", type=int, required=True, help="l >= 1, patch layers")
    t.add_argument(
        "--samples",
        type=int,
        help="training parameters K (with --coefficients: the first K fields, default all)",
    )
    t.add_argument(
        "--test-samples",
        type=int,
        help="held-out parameters (25; with --test-coefficients: the first ones, default all)",
    )
    t.add_argument(
        "--network",
        default=DEFAULT_NETWORK,
        help=f"'cnn:WxD' (default {DEFAULT_NETWORK}: one CNN from the coefficient on the patch, "
        "any coefficient), 'mlp:WxD' (paper Def. 3.1, e.g. mlp:128x8) or 'reduced:Q:WxD' (Q "
        "patch modes, an MLP p -> coordinates; needs the classical training correctors)",
    )
    t.add_argument(
        "--constraint",
        choices=("projection", "penalty"),
        help="B alpha = 0 by the exact projection onto ker B (cnn only; the default for cnn) "
        "or the self-adaptive penalty (16) (the default otherwise)",
    )
    t.add_argument(
        "--batch-size",
        type=int,
        help=f"training samples per optimizer step (projection only; default {CNN_BATCH} for "
        "cnn, else all)",
    )
    t.add_argument(
        "--epochs",
        type=int,
        help=f"Deep Ritz epochs ({CNN_EPOCHS} for cnn, 5000 otherwise)",
    )
    t.add_argument("--warm-start", type=int, default=0, help="supervised epochs first (0)")
    t.add_argument(
        "--lr", type=float, help=f"Adam learning rate ({CNN_LR:g} for cnn, 1e-2 otherwise)"
    )
    t.add_argument(
        "--lr-step",
        type=int,
        help=f"epochs between learning-rate decays by --lr-decay ({CNN_LR_STEP} for cnn, 1000 "
        "otherwise)",
    )
    t.add_argument(
        "--lr-decay",
        type=float,
        help=f"learning-rate factor every --lr-step ({CNN_LR_DECAY:g} for cnn, 0.9 otherwise)",
    )
    t.add_argument("--patience", type=int, default=1000, help="early stopping patience (1000)")
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoints in --out (same settings but --epochs, --patience, "
        "--checkpoint-every, --device; same number of ranks)",
    )
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    t.add_argument("--threads", type=int, default=1, help="torch threads per MPI rank (1)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, required=True, help="output folder")
    return parser


def _load_array(
    path: Path, option: str, comm: MPI.Comm, stack: bool, dims: tuple[int, ...] = (2, 3)
) -> np.ndarray:
    """Memory-map a .npy coefficient array ((n,) * d with d in ``dims``, or with ``stack`` an
    (M, n, ...) stack of them) and validate all of it before any work: type, shape and every
    value (finite, > 0, a contrast the solver resolves), a stack step by step, the steps split
    over the ranks. Collective."""
    out: list[np.ndarray] = []

    def load() -> None:
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # missing, empty, truncated, pickled, not .npy
            raise InputError(f"{option} {path}: cannot read a .npy array ({e})") from e
        if not isinstance(arr, np.ndarray):  # an .npz archive
            arr.close()
            raise InputError(
                f"{option} {path}: a .npz archive, not a .npy array (save one array with "
                "numpy.save)"
            )
        check_dtype(arr, option)
        lead = ("M",) if stack else ()
        axes = {2: ("n_y", "n_x"), 3: ("n_z", "n_y", "n_x")}
        shapes = " or ".join(str(lead + axes[d]).replace("'", "") for d in dims)
        if arr.ndim - stack not in dims or (stack and arr.shape[0] == 0):
            more = " with M >= 1" if stack else ""
            raise InputError(f"{option} array must have shape {shapes}{more}; got {arr.shape}")
        validate_array_shape(arr[0] if stack else arr, option, arr.ndim - stack)
        out.append(arr)

    validate(comm, load)
    arr = out[0]

    def check_values() -> None:
        if not stack:
            check_coefficient_values(np.asarray(arr), option)
            return
        M = arr.shape[0]  # contiguous blocks: the first failing rank has the first bad step
        for m in range(comm.rank * M // comm.size, (comm.rank + 1) * M // comm.size):
            check_coefficient_values(np.asarray(arr[m]), f"{option} step {m + 1}")

    validate(comm, check_values)
    return arr


def _load_coefficient(args: argparse.Namespace, comm: MPI.Comm) -> np.ndarray:
    """The coefficient array: memory-mapped from --coefficient, or the built-in default
    (random, --dim axes)."""

    def check_dim() -> None:
        if args.dim is not None and args.dim not in (2, 3):
            raise InputError(f"--dim must be 2 or 3, got {args.dim}")

    validate(comm, check_dim)
    if args.coefficient is not None:
        dims = (2, 3) if args.dim is None else (args.dim,)
        return _load_array(args.coefficient, "--coefficient", comm, False, dims)
    fine = args.fine if isinstance(args.fine, tuple) else (args.fine,) * (args.dim or 2)

    def check_fine() -> None:
        if args.dim is not None and len(fine) != args.dim:
            raise InputError(f"--fine {args.fine} has {len(fine)} counts; --dim is {args.dim}")
        if len(fine) not in (2, 3):
            raise InputError(f"--fine must be one count or 2 or 3 counts, got {args.fine}")
        for n in fine:
            _check_positive_int(n, "--fine")

    validate(comm, check_fine)
    return random_coefficient(fine, seed=args.seed, dim=len(fine))


def _check_positive_int(value: int, option: str) -> None:
    if value < 1:
        raise ValueError(f"{option} must be >= 1, got {value}")


def _grids(args: argparse.Namespace, comm: MPI.Comm, shape: tuple[int, ...]):
    """The nested grids of a fine-cell array of ``shape`` ((n_y, n_x) or (n_z, n_y, n_x)) on
    --domain with --coarse cells and --neumann sides, all checked (with --layers and the
    method) on every rank before any work. Collective."""
    dim = len(shape)
    fine = tuple(shape[::-1])

    def check() -> None:
        if args.domain is not None and len(args.domain) != 2 * dim:
            raise InputError(
                f"--domain needs {2 * dim} numbers for a {dim}D coefficient "
                f"({'X0,Y0,X1,Y1' if dim == 2 else 'X0,Y0,Z0,X1,Y1,Z1'}), got {len(args.domain)}"
            )
        if isinstance(args.coarse, tuple) and len(args.coarse) != dim:
            raise InputError(
                f"--coarse {','.join(map(str, args.coarse))} has {len(args.coarse)} counts; the "
                f"coefficient is {dim}D (give one number or {dim} counts)"
            )
        learned = [f"--{k}" for k in ("model", "operators") if getattr(args, k, None)]
        if learned and args.neumann:
            raise InputError(
                f"--neumann applies to the classical basis only: {' and '.join(learned)} "
                "was trained with u = 0 on every side"
            )
        coarse = args.coarse if isinstance(args.coarse, tuple) else (args.coarse,)
        if learned and len(set(fine)) * len(set(coarse)) > 1:
            raise InputError(
                f"{' and '.join(learned)} need the same number of cells in every direction "
                f"(the networks are trained on n x n grids); got fine {fine}, coarse {coarse}"
            )

    validate(comm, check)
    _check_problem(args, comm, fine)
    domain = (
        unit_box(dim)
        if args.domain is None
        else (tuple(args.domain[:dim]), tuple(args.domain[dim:]))
    )
    return create_nested_grids(comm, args.coarse, fine, domain, neumann=args.neumann)


def _counts_key(counts: tuple[int, ...]) -> int | list[int]:
    """summary.json value of cell counts: one number when equal in every direction."""
    return counts[0] if len(set(counts)) == 1 else list(counts)


def _grid_keys(grids) -> dict:
    """summary.json: the grid sizes (n, NH: a number, or [x, y(, z)] counts), domain, sides."""
    return {
        "dim": grids.dim,
        "n": _counts_key(grids.fine_cells),
        "NH": _counts_key(grids.coarse_cells),
        "domain": [list(grids.domain[0]), list(grids.domain[1])],
        "neumann": list(grids.neumann),
    }


def _check_problem(args: argparse.Namespace, comm: MPI.Comm, n: int) -> None:
    """N_H divides n with n / N_H >= 2, layers (and method, source where given) before any
    work. Collective."""

    def check() -> None:
        validate_layers(args.layers)
        validate_refinement(args.coarse, n)
        if "method" in args:
            validate_method(args.method)
        if "source" in args:
            validate_source(args.source)

    validate(comm, check)


def _warn(comm: MPI.Comm, command: str, message: str) -> None:
    if comm.rank == 0:
        print(f"dolfinx-lod {command}: warning: {message}", file=sys.stderr)


def _learned_provider(
    args: argparse.Namespace, comm: MPI.Comm, grids, option: str, params: np.ndarray | None
):
    """The learned basis provider of --model (None without) and the parameters p (K, N_p) it
    needs (None for a model that reads the coefficient). The model is checked against the
    grids and l, a p-conditioned model against ``params`` (given by ``option``), before any
    work. Collective."""
    if args.model is None:
        if params is not None and getattr(args, "operators", None) is None:
            allowed = "--model and --operators" if "operators" in args else "--model"
            raise InputError(f"{option} applies to {allowed} only")
        return None, params
    from dolfinx_lod.coefficients import family as make_family
    from dolfinx_lod.neural.provider import LearnedCorrectors, TrainedModel

    out = []

    def load() -> None:
        model = TrainedModel.load(args.model, grids, args.layers)
        family = None
        if not model.needs_coefficient:
            meta = model.metadata
            if params is None:
                raise InputError(
                    f"--model {args.model} is conditioned on the parameter p of family "
                    f"{meta['family']!r} ({meta['num_params']} value(s) in "
                    f"[{meta['param_low']}, {meta['param_high']}]): give {option}"
                )
            family = make_family(meta["family"], grids.fine, grids.domain)
            for m, p in enumerate(params):
                try:
                    family.check(p)
                except ValueError as e:
                    where = f" (step {m + 1})" if len(params) > 1 else ""
                    raise InputError(f"{option}{where}: {e}") from e
        out.append(LearnedCorrectors(model, family, grids.r))

    validate(comm, load)
    if out[0].needs_coefficient and params is not None:
        _warn(comm, args.command, f"{option} ignored: --model {args.model} reads the coefficient")
        params = None
    return out[0], params


def elliptic(args: argparse.Namespace, comm: MPI.Comm) -> dict:
    """Run the elliptic LOD and write summary.json, solution.npy, reference.npy, elliptic.png
    as one set into --out."""
    t0 = time.perf_counter()
    A = _load_coefficient(args, comm)
    grids = _grids(args, comm, A.shape)
    param = None if args.param is None else np.array([args.param])
    provider, param = _learned_provider(args, comm, grids, "--param", param)
    with OutputSet(comm, args.out) as output:
        summary = _elliptic(args, comm, grids, A, output, t0, provider, param)
        output.commit()
    return summary


def _elliptic(args, comm, grids, A, output: OutputSet, t0: float, provider, param) -> dict:
    sol = solve_elliptic(
        grids,
        A,
        args.layers,
        f=args.source,
        method=args.method,
        p=None if param is None else param[0],
        progress=True,
        reference=args.reference,
        provider=provider,
    )
    try:  # the PETSc objects are destroyed on every rank together, also after an error
        return _elliptic_output(args, comm, grids, A, sol, output, t0)
    finally:
        sol.destroy()


def _elliptic_output(args, comm, grids, A, sol, output: OutputSet, t0: float) -> dict:
    u_ms = gather_vertex_array(grids, sol.u_ms)
    u_h = gather_vertex_array(grids, sol.u_h) if args.reference else None
    summary = {
        "command": "elliptic",
        "method": args.method,
        **_grid_keys(grids),
        "l": args.layers,
        "ranks": comm.size,
        "source": args.source,
        "coefficient": str(args.coefficient) if args.coefficient else f"random(seed={args.seed})",
        "reference": args.reference,
        **_basis_keys(args),
        "timings": sol.timings,
        "files": {
            "solution": "solution.npy",
            "solution_vtx": "solution.bp",
            "coefficient_vtx": "coefficient.bp",
        },
        "version": dolfinx_lod.__version__,
    }
    fields = [sol.u_ms, sol.u_h] if args.reference else [sol.u_ms]
    write_vtx(output.path("solution.bp"), fields)
    write_vtx(output.path("coefficient.bp"), [sol.a])
    if args.reference:
        summary.update(
            {
                "rel_l2_error": sol.errors["l2"],
                "rel_energy_error": sol.errors["energy"],
                "coarse_fem_rel_l2_error": sol.errors["coarse_fem_l2"],
                "coarse_fem_rel_energy_error": sol.errors["coarse_fem_energy"],
            }
        )
        summary["files"]["reference"] = "reference.npy"
    with collective(comm, OutputError):
        if comm.rank == 0:
            _write_elliptic(args, output, grids, A, u_ms, u_h, summary, t0)
    return summary


def _basis_keys(args: argparse.Namespace) -> dict:
    """summary.json: which basis (classical patch solves or a learned model) was used."""
    learned = args.model is not None
    operators = getattr(args, "operators", None)
    return {
        "basis": "learned" if learned else "classical",
        "model": str(args.model) if learned else None,
        "operators": str(operators) if operators is not None else None,
    }


def _load_params(args: argparse.Namespace, comm: MPI.Comm, steps: int) -> np.ndarray | None:
    """--params as (M, N_p), M = ``steps``, checked before any work. Collective."""
    if args.params is None:
        return None
    out = []

    def load() -> None:
        try:
            P = np.load(args.params, allow_pickle=False)
        except Exception as e:
            raise InputError(f"--params {args.params}: cannot read a .npy array ({e})") from e
        check_dtype(P, "--params")
        P = np.asarray(P, dtype=np.float64)
        P = P[:, None] if P.ndim == 1 else P
        if P.ndim != 2 or P.shape[0] != steps:
            raise InputError(
                f"--params must have shape (M,) or (M, N_p) with M = {steps} (the steps of "
                f"--coefficients); got {np.shape(P)}"
            )
        out.append(P)

    validate(comm, load)
    return out[0]


def _write_elliptic(args, output: OutputSet, grids, A, u_ms, u_h, summary, t0) -> None:
    """The elliptic result files (rank 0); u_h is None without a reference."""
    write_npy(output.path("solution.npy"), u_ms)
    if u_h is not None:
        write_npy(output.path("reference.npy"), u_h)
    if not args.no_plot:
        from dolfinx_lod.plotting import plot_fields

        panels = [("coefficient a", np.asarray(A), True), ("LOD solution u_ms", u_ms, False)]
        if u_h is not None:
            panels.append(("abs(u_ms - u_h)", np.abs(u_ms - u_h), False))
        plot_fields(
            output.path("elliptic.png"),
            panels,
            grids.domain,
            log_scale=[True] + [False] * (len(panels) - 1),
        )
        summary["files"]["figure"] = "elliptic.png"
    summary["timings"]["wall"] = time.perf_counter() - t0
    write_json(output.path("summary.json"), summary)


def _snapshot(path: Path, grids, view) -> None:
    """PNG of coefficient, LOD (and FEM and |error| with a reference) at step m. Collective;
    rank 0 plots."""
    a_fun = view.a
    owned = grids.fine_cell_keys.size
    a = gather_cell_array(grids, a_fun.x.array[a_fun.function_space.dofmap.list[:owned, 0]])
    lod = gather_vertex_array(grids, view.u_ms)
    fem = gather_vertex_array(grids, view.u_h) if view.fem is not None else None
    with collective(grids.comm, OutputError):
        if grids.comm.rank == 0:
            from dolfinx_lod.plotting import plot_fields

            panels = [(f"coefficient a, t = {view.t:.3g}", a, True), ("LOD u_ms", lod, False)]
            if fem is not None:
                panels += [("FEM u_h", fem, False), ("abs(u_ms - u_h)", np.abs(lod - fem), False)]
            log_scale = [True] + [False] * (len(panels) - 1)
            plot_fields(path, panels, grids.domain, log_scale=log_scale)


def _check_parabolic_options(args: argparse.Namespace, comm: MPI.Comm, steps: int) -> None:
    """--snapshots in 1..M, --output-every >= 1; warn about --tol without --update selective.
    Collective."""

    def check() -> None:
        bad = [m for m in args.snapshots or () if not 1 <= m <= steps]
        if bad:
            raise InputError(f"--snapshots must be steps in 1..M = 1..{steps}; got {bad}")
        if args.output_every is not None and args.output_every < 1:
            raise InputError(f"--output-every must be >= 1, got {args.output_every}")

    validate(comm, check)
    if args.tol is not None and args.update != "selective":
        _warn(
            comm,
            "parabolic",
            f"--tol applies to --update selective only; ignored with --update {args.update}",
        )


def parabolic(args: argparse.Namespace, comm: MPI.Comm) -> dict:
    """Run the parabolic LOD against the fine FEM; write summary.json, final arrays, VTX time
    series (lod.bp: u_ms, u_h, error; coefficient.bp: a) and PNG snapshots as one set into
    --out. Every step of the coefficient stack is validated before the first step."""
    t0 = time.perf_counter()
    stack = _load_array(args.coefficients, "--coefficients", comm, True)
    dim = stack.ndim - 1
    capacity = (
        1.0
        if args.capacity is None
        else _load_array(args.capacity, "--capacity", comm, False, (dim,))
    )
    grids = _grids(args, comm, stack.shape[1:])
    _check_parabolic_options(args, comm, args.steps)
    params = _load_params(args, comm, stack.shape[0])
    provider, params = _learned_provider(args, comm, grids, "--params", params)
    schedule = CoefficientSchedule.from_stack(stack, check=False)  # checked in _load_array
    if params is not None:  # the step's field and its parameter p (for the learned basis)
        schedule = CoefficientSchedule(lambda m, t: (stack[m - 1], params[m - 1]), stack.shape[0])
    provider, classical = _operator_provider(args, comm, grids, provider, params)
    try:
        with OutputSet(comm, args.out) as output:
            summary = _parabolic(args, comm, grids, schedule, capacity, output, t0, provider)
            output.commit()
    finally:
        if classical is not None:
            classical.destroy()
    return summary


def _operator_provider(args: argparse.Namespace, comm: MPI.Comm, grids, provider, params):
    """With --operators, the provider whose Petrov-Galerkin operators come from the networks
    and whose correctors (output steps) from ``provider`` (--model) or from patch solves at p,
    with the classical patch solvers it created (to destroy; None if none). The options and
    the file are checked before any work. Collective."""
    if args.operators is None:
        return provider, None
    from dolfinx_lod.correctors import ClassicalCorrectors
    from dolfinx_lod.interpolation import local_projection
    from dolfinx_lod.neural.operators import FamilyCorrectors, LearnedOperators, OperatorProvider

    def check() -> None:
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

    validate(comm, check)
    cells = owned_cells(grids)  # the cells of the basis' patches on this rank
    nets: list = []

    def load() -> None:
        ops = LearnedOperators.load(args.operators, grids, args.layers, cells)
        for m, p in enumerate(params):
            try:
                ops.family.check(p)
            except ValueError as e:
                raise InputError(f"--params (step {m + 1}): {e}") from e
        nets.append(ops)

    validate(comm, load)
    classical = None
    if provider is None:
        classical = ClassicalCorrectors(grids, local_projection(grids))
        provider = FamilyCorrectors(classical, nets[0].family)
    return OperatorProvider(provider, nets[0]), classical


def _parabolic(
    args, comm, grids, schedule, capacity, output: OutputSet, t0: float, provider
) -> dict:
    import dolfinx.fem
    import dolfinx.io

    snapshots = set(
        args.snapshots if args.snapshots is not None else {1, max(args.steps // 2, 1), args.steps}
    )
    outputs = snapshots | {args.steps}
    if args.output_every is not None:
        outputs |= set(range(args.output_every, args.steps + 1, args.output_every))
    u_out = dolfinx.fem.Function(grids.V_h, name="u_ms")
    u_ref = dolfinx.fem.Function(grids.V_h, name="u_h")
    error = dolfinx.fem.Function(grids.V_h, name="error")
    writers: dict = {}
    frames: list[int] = []
    files: dict[str, str] = {
        "solution_final": "solution_final.npy",
        "lod_vtx": "lod.bp",
        "coefficient_vtx": "coefficient.bp",
    }
    if args.reference:
        files["reference_final"] = "reference_final.npy"

    def observe(view) -> None:
        if view.m not in outputs:
            return
        a_fun = view.a  # a(t_m), evaluated for the coefficient writer
        if not writers:
            fields = [u_out, u_ref, error] if args.reference else [u_out]
            writers["lod"] = dolfinx.io.VTXWriter(comm, output.path("lod.bp"), fields)
            writers["a"] = dolfinx.io.VTXWriter(comm, output.path("coefficient.bp"), [a_fun])
        view.lod.solution(out=u_out)
        if args.reference:
            u_ref.x.array[:] = view.u_h.x.array
            error.x.array[:] = np.abs(u_out.x.array - u_ref.x.array)
        for writer in writers.values():
            writer.write(view.t)
        frames.append(view.m)
        if view.m in snapshots and not args.no_plot:
            name = f"snapshot_step{view.m:04d}.png"
            _snapshot(output.path(name), grids, view)
            files[f"snapshot_step{view.m}"] = name

    try:
        result = run_parabolic(
            grids,
            schedule,
            args.T,
            args.steps,
            args.layers,
            method=args.method,
            update=args.update,
            tol=0.0 if args.tol is None else args.tol,
            capacity=capacity,
            source=args.source,
            provider=provider,
            observer=observe,
            progress=True,
            reference=args.reference,
        )
    finally:
        for writer in writers.values():
            writer.close()
    try:  # the PETSc objects are destroyed on every rank together, also after an error
        u_ms = gather_vertex_array(grids, result.u_ms)
        u_h = gather_vertex_array(grids, result.u_h) if args.reference else None
        records = result.records
        phases = sorted({k for r in records for k in r["timings"]})
        summary = {
            "command": "parabolic",
            **result.settings,
            **_grid_keys(grids),
            "l": args.layers,
            "ranks": comm.size,
            "source": args.source,
            "coefficients": str(args.coefficients),
            **_basis_keys(args),
            "capacity": str(args.capacity) if args.capacity else 1.0,
            "output_steps": frames,
            "recomputed_patches_total": sum(r["recomputed_patches"] for r in records),
            "mean_step_seconds": {
                k: float(np.mean([r["timings"].get(k, 0.0) for r in records])) for k in phases
            },
            "steps_record": records,
            "files": files,
            "version": dolfinx_lod.__version__,
        }
        if args.reference:
            summary["rel_l2_error_final"] = result.final_errors["l2"]
            summary["rel_energy_error_final"] = result.final_errors["energy"]
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


def train(args: argparse.Namespace, comm: MPI.Comm) -> dict:
    """Train the networks of all patches; write model.pt, summary.json, loss.png as one set
    into --out (the checkpoints go there while training runs)."""
    import torch

    from dolfinx_lod.coefficients import family as make_family
    from dolfinx_lod.coefficients import sample_family
    from dolfinx_lod.neural.training import TrainingSettings
    from dolfinx_lod.neural.workflow import parse_network, train_and_evaluate

    settings: list[TrainingSettings] = []

    def check() -> None:
        if args.coefficients is not None and args.test_coefficients is None:
            raise InputError("--coefficients needs --test-coefficients (held-out fields)")
        if args.family is not None and args.samples is None:
            raise InputError("--family needs --samples (training parameters K >= 1)")
        for name in ("samples", "test_samples", "threads"):
            if getattr(args, name) is not None:
                _check_positive_int(getattr(args, name), "--" + name.replace("_", "-"))
        spec = parse_network(args.network)
        cnn = spec["architecture"] == "cnn"
        constraint = args.constraint or ("projection" if cnn else "penalty")
        default_batch = CNN_BATCH if constraint == "projection" else 0
        s = TrainingSettings(
            **spec,
            constraint=constraint,
            batch_size=default_batch if args.batch_size is None else args.batch_size,
            epochs=args.epochs or (CNN_EPOCHS if cnn else 5000),
            lr=args.lr or (CNN_LR if cnn else 1e-2),
            lr_step=args.lr_step or (CNN_LR_STEP if cnn else 1000),
            lr_decay=args.lr_decay or (CNN_LR_DECAY if cnn else 0.9),
            patience=args.patience,
            warm_start=args.warm_start,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
            device=args.device,
        )
        s.validate()
        settings.append(s)

    validate(comm, check)
    torch.set_num_threads(args.threads)
    _check_problem(args, comm, args.fine)
    stacks = {}
    for option in ("coefficients", "test_coefficients"):
        path = getattr(args, option)
        if path is not None:
            name = "--" + option.replace("_", "-")
            stack = _load_array(path, name, comm, True, (2,))
            if stack.shape[1] != args.fine:  # the same file on every rank: all raise
                raise InputError(
                    f"{name} fields are {stack.shape[1]} x {stack.shape[2]}; --fine is {args.fine}"
                )
            stacks[option] = sample_family(stack, path.stem)
    family = stacks.get("coefficients") or make_family(args.family, args.fine)
    test_family = stacks.get("test_coefficients", family)
    default_test = 25 if "test_coefficients" not in stacks else int(test_family.high[0]) + 1
    samples = args.samples or int(family.high[0]) + 1
    grids = create_nested_grids(comm, args.coarse, args.fine)
    # train_and_evaluate checks the network size, prepares --out collectively (checkpoints go
    # there while training runs; the results are written as a set) and checks --resume.
    return train_and_evaluate(
        grids,
        args.layers,
        family,
        samples,
        args.test_samples or default_test,
        settings[0],
        args.out,
        resume=args.resume,
        progress=interactive(),  # the training's tqdm bar: on a terminal only
        test_family=test_family,
    )


def operators(args: argparse.Namespace, comm: MPI.Comm) -> dict:
    """Fit the learned Petrov-Galerkin local operators of every patch; write operators.pt and
    summary.json as one set into --out."""
    import torch

    from dolfinx_lod.coefficients import family as make_family
    from dolfinx_lod.neural.operators import train_operators
    from dolfinx_lod.neural.workflow import parse_network

    spec: list[dict] = []

    def check() -> None:
        for name in ("samples", "test_samples", "epochs", "threads"):
            _check_positive_int(getattr(args, name), "--" + name.replace("_", "-"))
        network = parse_network(args.network)
        if network["architecture"] != "mlp":
            raise InputError(f"--network must be 'mlp:WIDTHxDEPTH', got {args.network!r}")
        spec.append(network)

    validate(comm, check)
    _check_problem(args, comm, args.fine)
    torch.set_num_threads(args.threads)
    family = make_family(args.family, args.fine)
    grids = create_nested_grids(comm, args.coarse, args.fine)
    with OutputSet(comm, args.out) as output:
        nets, report = train_operators(
            grids,
            args.layers,
            family,
            args.samples,
            args.test_samples,
            spec[0]["width"],
            spec[0]["depth"],
            args.epochs,
            args.seed,
        )
        summary = {
            "command": "operators",
            "family": family.name,
            "n": grids.fine,
            "NH": grids.coarse,
            "l": args.layers,
            "ranks": comm.size,
            "samples": args.samples,
            "test_samples": args.test_samples,
            "network": args.network,
            "epochs": args.epochs,
            **{k: v for k, v in report.items() if k != "metadata"},
            "files": {"operators": "operators.pt"},
            "version": dolfinx_lod.__version__,
        }
        with collective(comm, OutputError):
            nets.save(comm, output.path("operators.pt"), report["metadata"])
            if comm.rank == 0:
                write_json(output.path("summary.json"), summary)
        output.commit()
    return summary


def _all_ranks_failed(comm: MPI.Comm, seconds: float = 5.0) -> bool:
    """Whether every rank reaches this point (all raised) within ``seconds``. Called by the
    failing ranks on a communicator used for nothing else, so that a rank still waiting in a
    collective of the computation is detected instead of waited for."""
    request, end = comm.Ibarrier(), time.monotonic() + seconds
    while not request.Test():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dolfinx-lod`` command."""
    args = _parser().parse_args(argv)
    comm = MPI.COMM_WORLD
    handshake = comm.Dup()  # for errors raised outside dolfinx_lod.parallel.collective
    try:
        commands = {
            "elliptic": elliptic,
            "parabolic": parabolic,
            "train": train,
            "operators": operators,
        }
        summary = commands[args.command](args, comm)
    except LodError as e:  # raised on every rank together (dolfinx_lod.parallel.collective)
        if comm.rank == 0:
            print(f"dolfinx-lod {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # Ctrl-C (mpirun forwards it to every rank)
        if _all_ranks_failed(handshake):
            if comm.rank == 0:
                resume = " (checkpoints so far allow --resume)" if args.command == "train" else ""
                print(
                    f"dolfinx-lod {args.command}: interrupted; the results in {args.out} are "
                    f"unchanged{resume}",
                    file=sys.stderr,
                )
            return 130
        comm.Abort(130)
        return 130
    except Exception as e:  # e.g. a RuntimeError of a coarse solve: on every rank, or not?
        code = 3 if isinstance(e, RuntimeError) else 2 if isinstance(e, ValueError) else 1
        if not isinstance(e, ValueError | RuntimeError):
            traceback.print_exc()  # a bug: show where
        if _all_ranks_failed(handshake):
            if comm.rank == 0:
                print(f"dolfinx-lod {args.command}: error: {e}", file=sys.stderr)
            return code
        print(f"dolfinx-lod {args.command}: error on rank {comm.rank}: {e}", file=sys.stderr)
        sys.stderr.flush()
        comm.Abort(code)  # the other ranks wait in a collective: stop them rather than hang
        return code
    finally:
        handshake.Free()
    if comm.rank == 0 and args.command == "train":
        base = ", ".join(
            f"{k} {v['energy']:.3e}" for k, v in summary["baseline_errors_test"].items()
        )
        print(
            f"train: {summary['family']} n={summary['n']} NH={summary['NH']} l={summary['l']} "
            f"K={summary['samples']}: basis error train {summary['basis_error_train']:.3e}, "
            f"test {summary['basis_error_test']:.3e} (baselines: {base}); "
            f"{summary['epochs']} epochs in "
            f"{summary['train_seconds']:.1f} s; {summary['note']}; results in {args.out}/"
        )
    elif comm.rank == 0 and args.command == "operators":
        err = summary["operator_error_test"]
        print(
            f"operators: {summary['family']} n={summary['n']} NH={summary['NH']} "
            f"l={summary['l']} K={summary['samples']}: held-out relative error K "
            f"{err['K']:.3e}, M {err['M']:.3e}; offline {summary['offline_seconds']:.1f} s; "
            f"results in {args.out}/"
        )
    elif comm.rank == 0 and args.command == "parabolic":
        errors = (
            f"relative L2 error at T {summary['rel_l2_error_final']:.3e}, energy "
            f"{summary['rel_energy_error_final']:.3e}; "
            if "rel_l2_error_final" in summary
            else ""
        )
        print(
            f"parabolic: n={summary['n']} NH={summary['NH']} l={summary['l']} M={summary['steps']} "
            f"ranks={comm.size}: {errors}{summary['recomputed_patches_total']} patch solves; "
            f"results in {args.out}/"
        )
    elif comm.rank == 0:
        errors = (
            f"relative L2 error {summary['rel_l2_error']:.3e}, energy error "
            f"{summary['rel_energy_error']:.3e} (plain Q1 FEM on T_H: "
            f"{summary['coarse_fem_rel_l2_error']:.3e}, "
            f"{summary['coarse_fem_rel_energy_error']:.3e}); "
            if "rel_l2_error" in summary
            else ""
        )
        print(
            f"{args.command}: n={summary['n']} NH={summary['NH']} l={summary['l']} "
            f"ranks={comm.size}: {errors}results in {args.out}/"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
