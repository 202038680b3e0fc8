"""Loading and checking the commands' inputs, collectively, before any work."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

from dolfinx_lod.coefficients import (
    check_coefficient_values,
    check_dtype,
    random_coefficient,
    validate_array_shape,
)
from dolfinx_lod.grids import NestedGrids, create_nested_grids, unit_box
from dolfinx_lod.lod import validate_method, validate_source
from dolfinx_lod.parallel import InputError, validate
from dolfinx_lod.patches import validate_layers, validate_refinement


def warn(comm: MPI.Comm, command: str, message: str) -> None:
    """One warning line on rank 0."""
    if comm.rank == 0:
        print(f"dolfinx-lod {command}: warning: {message}", file=sys.stderr)


def check_positive_int(value: int, option: str) -> None:
    """Raise naming ``option`` unless ``value`` >= 1."""
    if value < 1:
        raise ValueError(f"{option} must be >= 1, got {value}")


def load_array(
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


def load_coefficient(args: argparse.Namespace, comm: MPI.Comm) -> np.ndarray:
    """The coefficient array: memory-mapped from --coefficient, or the built-in default
    (random, --dim axes)."""

    def check_dim() -> None:
        if args.dim is not None and args.dim not in (2, 3):
            raise InputError(f"--dim must be 2 or 3, got {args.dim}")

    validate(comm, check_dim)
    if args.coefficient is not None:
        dims = (2, 3) if args.dim is None else (args.dim,)
        return load_array(args.coefficient, "--coefficient", comm, False, dims)
    fine = args.fine if isinstance(args.fine, tuple) else (args.fine,) * (args.dim or 2)

    def check_fine() -> None:
        if args.dim is not None and len(fine) != args.dim:
            raise InputError(f"--fine {args.fine} has {len(fine)} counts; --dim is {args.dim}")
        if len(fine) not in (2, 3):
            raise InputError(f"--fine must be one count or 2 or 3 counts, got {args.fine}")
        for n in fine:
            check_positive_int(n, "--fine")

    validate(comm, check_fine)
    return random_coefficient(fine, seed=args.seed, dim=len(fine))


def load_params(args: argparse.Namespace, comm: MPI.Comm, steps: int) -> np.ndarray | None:
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


def check_problem(args: argparse.Namespace, comm: MPI.Comm, n) -> None:
    """N_H divides n with n / N_H >= 2, layers (and method, source where given) before any
    work. Collective."""

    def check() -> None:
        validate_layers(args.layers)
        validate_refinement(args.coarse, n)
        if "method" in args:
            validate_method(args.method)
        if "source" in args and not isinstance(args.source, Path):
            validate_source(args.source)

    validate(comm, check)


def _check_box(args: argparse.Namespace, dim: int) -> None:
    """--domain and --coarse against the coefficient's dimension (a --model or --operators file
    records its grids and sides: checked when it is loaded)."""
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


def nested_grids(args: argparse.Namespace, comm: MPI.Comm, shape: tuple[int, ...]) -> NestedGrids:
    """The nested grids of a fine-cell array of ``shape`` ((n_y, n_x) or (n_z, n_y, n_x)) on
    --domain with --coarse cells and --neumann sides, all checked (with --layers and the
    method) on every rank before any work. Collective."""
    dim = len(shape)
    fine = tuple(shape[::-1])
    validate(comm, lambda: _check_box(args, dim))
    check_problem(args, comm, fine)
    domain = (
        unit_box(dim)
        if args.domain is None
        else (tuple(args.domain[:dim]), tuple(args.domain[dim:]))
    )
    return create_nested_grids(comm, args.coarse, fine, domain, neumann=args.neumann)


def learned_provider(
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
        try:
            model = TrainedModel.load(args.model, grids, args.layers)
        except InputError:  # not a model: the message names the file
            raise
        except ValueError as e:  # a model made for another problem
            raise InputError(f"--model {args.model}: {e}") from e
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
        warn(comm, args.command, f"{option} ignored: --model {args.model} reads the coefficient")
        params = None
    return out[0], params


def _load_npy(path: Path, option: str) -> np.ndarray:
    """A .npy array of real numbers, read whole (rank-local; raises ``InputError``)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # missing, empty, truncated, pickled, not .npy
        raise InputError(f"{option} {path}: cannot read a .npy array ({e})") from e
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{option} {path}: a .npz archive, not a .npy array")
    check_dtype(arr, option)
    return arr


def load_boundary(args: argparse.Namespace, comm: MPI.Comm) -> dict:
    """``dirichlet`` and ``flux`` keywords of the solvers from --dirichlet and --flux (values
    and shapes are checked by the solvers, on every rank). Collective."""
    out: dict = {"dirichlet": args.dirichlet, "flux": dict(args.flux) or None}
    if isinstance(args.dirichlet, Path):
        arrays: list[np.ndarray] = []
        validate(comm, lambda: arrays.append(_load_npy(args.dirichlet, "--dirichlet")))
        out["dirichlet"] = arrays[0]
    return out


def load_source(args: argparse.Namespace, comm: MPI.Comm, grids: NestedGrids, stack: bool):
    """The source of --source: a number, a fine-cell field, or (with ``stack``, the time loop)
    an (M, ...) stack as a callable (t, x) -> values of step m = round(t / tau). Collective."""
    if not isinstance(args.source, Path):
        return args.source
    arrays: list[np.ndarray] = []

    def load() -> None:
        arr = _load_npy(args.source, "--source")
        fields = [grids.cell_array_shape]
        if stack:
            fields.append((args.steps, *grids.cell_array_shape))
        if arr.shape not in fields:
            raise InputError(
                f"--source array must have shape {' or '.join(map(str, fields))}; got {arr.shape}"
            )
        arrays.append(arr)

    validate(comm, load)
    arr = arrays[0]
    if arr.ndim == grids.dim:
        return arr
    tau, keys = args.T / args.steps, grids.fine_cell_keys
    return lambda t, x: arr[int(round(t / tau)) - 1].reshape(-1)[keys]
