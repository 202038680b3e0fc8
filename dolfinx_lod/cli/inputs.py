"""Loading and checking the commands' inputs, collectively, before any work."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mpi4py import MPI

from dolfinx_lod.cli.options import COUNTS, COUNTS_OR_ZERO, RATES
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


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "a device")


def check_option_values(args: argparse.Namespace, comm: MPI.Comm) -> None:
    """Counts >= 1 (or >= 0), rates > 0 and --lr-decay in (0, 1] wherever a command has them
    (:data:`~dolfinx_lod.cli.options.COUNTS`): ``InputError`` naming the option. Collective."""

    def option(name: str) -> str:
        return "--" + name.replace("_", "-")

    def check() -> None:
        given = {k: v for k, v in vars(args).items() if v is not None}
        for name in COUNTS:
            if name in given:
                check_positive_int(given[name], option(name))
        for name in COUNTS_OR_ZERO:
            if name in given and given[name] < 0:
                raise InputError(f"{option(name)} must be >= 0, got {given[name]}")
        for name in RATES:
            if name in given and not given[name] > 0:  # NaN too
                raise InputError(f"{option(name)} must be > 0, got {given[name]}")
        decay = given.get("lr_decay")
        if decay is not None and not 0 < decay <= 1:
            raise InputError(f"--lr-decay must be in (0, 1], got {decay}")

    validate(comm, check)


def check_input_files(args: argparse.Namespace, comm: MPI.Comm) -> None:
    """Every path option but --out names an existing regular file: a FIFO or a device would
    block or never end, so nothing is opened before this check (stat only). Collective;
    ``InputError`` naming the option."""

    def check() -> None:
        for key, value in vars(args).items():
            if isinstance(value, Path) and key != "out":
                option = "--" + key.replace("_", "-")
                try:
                    mode = os.stat(value).st_mode
                except OSError as e:
                    raise InputError(f"{option} {value}: {e.strerror or e}") from e
                if not stat.S_ISREG(mode):
                    raise InputError(f"{option} {value}: not a regular file ({_file_kind(mode)})")

    validate(comm, check)


def open_npy(path: Path, option: str, mmap_mode: str | None = None) -> np.ndarray:
    """The array of the .npy file ``path`` (memory-mapped with ``mmap_mode``), never
    unpickled: anything but a .npy file is refused by its first bytes. Rank-local."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise InputError(f"{option} {path}: {e.strerror or e}") from e
    if magic[:4] == b"PK\x03\x04":
        raise InputError(
            f"{option} {path}: a .npz archive, not a .npy file (save one array with numpy.save)"
        )
    if magic != b"\x93NUMPY":
        raise InputError(f"{option} {path}: not a .npy file (save the array with numpy.save)")
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except Exception as e:  # truncated, damaged header, object arrays
        raise InputError(f"{option} {path}: cannot read the .npy array ({e})") from e


def load_array(
    path: Path,
    option: str,
    comm: MPI.Comm,
    stack: bool,
    dims: tuple[int, ...] = (2, 3),
    shape_check: Callable[[tuple[int, ...]], None] | None = None,
) -> np.ndarray:
    """Memory-map a .npy coefficient array ((n,) * d with d in ``dims``, or with ``stack`` an
    (M, n, ...) stack of them) and validate all of it before any work: type, shape, then
    ``shape_check(field shape)`` (collective; e.g. :func:`check_grid`, so that a file of the
    wrong size is refused before it is read), then every value (finite, > 0, a contrast the
    solver resolves), a stack step by step, the steps split over the ranks. Collective."""
    out: list[np.ndarray] = []

    def load() -> None:
        arr = open_npy(path, option, "r")
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
    if shape_check is not None:
        shape_check(arr.shape[1:] if stack else arr.shape)

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
        A = load_array(
            args.coefficient,
            "--coefficient",
            comm,
            False,
            dims,
            lambda n: check_grid(args, comm, n),
        )
        if args.fine is not None:
            _check_fine_of_file(args, comm, A.shape[::-1])
        return A
    given = 128 if args.fine is None else args.fine
    fine = given if isinstance(given, tuple) else (given,) * (args.dim or 2)

    def check_fine() -> None:
        if args.dim is not None and len(fine) != args.dim:
            raise InputError(f"--fine {args.fine} has {len(fine)} counts; --dim is {args.dim}")
        if len(fine) not in (2, 3):
            raise InputError(f"--fine must be one count or 2 or 3 counts, got {args.fine}")
        for n in fine:
            check_positive_int(n, "--fine")

    validate(comm, check_fine)
    check_memory(comm, int(np.prod(fine)), "--fine")
    return random_coefficient(fine, seed=args.seed, dim=len(fine))


def _check_fine_of_file(args: argparse.Namespace, comm: MPI.Comm, cells: tuple) -> None:
    """--fine with --coefficient: refused unless it names the array's cells (then a note)."""
    fine = args.fine if isinstance(args.fine, tuple) else (args.fine,) * len(cells)
    text = "x".join(map(str, cells))

    def check() -> None:
        if tuple(fine) != tuple(cells):
            raise InputError(
                f"--fine {args.fine} does not match --coefficient {args.coefficient}, which has "
                f"{text} fine cells (--fine applies to the default coefficient; leave it out)"
            )

    validate(comm, check)
    warn(comm, args.command, f"--fine {args.fine} is the size of --coefficient ({text}): a no-op")


def load_params(args: argparse.Namespace, comm: MPI.Comm, steps: int) -> np.ndarray | None:
    """--params as (M, N_p), M = ``steps``, checked before any work. Collective."""
    if args.params is None:
        return None
    out = []

    def load() -> None:
        P = open_npy(args.params, "--params")
        check_dtype(P, "--params")
        P = np.asarray(P, dtype=np.float64)
        if not np.isfinite(P).all():
            raise InputError("--params must be finite; found NaN or infinite values")
        P = P[:, None] if P.ndim == 1 else P
        if P.ndim != 2 or P.shape[0] != steps:
            raise InputError(
                f"--params must have shape (M,) or (M, N_p) with M = {steps} (the steps of "
                f"--coefficients); got {np.shape(P)}"
            )
        out.append(P)

    validate(comm, load)
    return out[0]


#: A lower bound of the memory a run takes per fine cell, in bytes: the nested grids alone
#: take more (create_nested_grids at n = 1024 on one rank: 317 bytes per cell).
BYTES_PER_CELL = 300


def check_memory(comm: MPI.Comm, cells: int, option: str) -> None:
    """Refuse, before any allocation, ``cells`` fine cells that need more memory than the nodes
    of ``comm`` have (:data:`BYTES_PER_CELL`). Collective; ``InputError`` naming ``option``."""
    mine = (MPI.Get_processor_name(), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    total = sum(dict(comm.allgather(mine)).values())
    need = cells * BYTES_PER_CELL
    if need > total:
        raise InputError(
            f"{option}: {cells:,} fine cells need at least {need / 2**30:.1f} GiB of memory "
            f"(about {BYTES_PER_CELL} bytes per cell), more than the {total / 2**30:.1f} GiB "
            "of the machine: choose fewer cells"
        )


def check_problem(args: argparse.Namespace, comm: MPI.Comm, n) -> None:
    """N_H divides n with n / N_H >= 2, layers (and method, source where given), the memory
    the fine grid needs, before any work. Collective."""
    cells = int(np.prod(n)) if isinstance(n, tuple) else int(n) ** 2
    given = [f"--{k}" for k in ("coefficient", "coefficients") if getattr(args, k, None)]
    check_memory(comm, cells, given[0] if given else "--fine")

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


def check_grid(args: argparse.Namespace, comm: MPI.Comm, shape: tuple[int, ...]) -> None:
    """Check --domain, --coarse, --neumann, --layers and the method for a fine-cell array of
    ``shape`` ((n_y, n_x) or (n_z, n_y, n_x)), and the memory it needs. Collective."""
    fine = tuple(shape[::-1])
    validate(comm, lambda: _check_box(args, len(shape)))
    check_problem(args, comm, fine)


def nested_grids(args: argparse.Namespace, comm: MPI.Comm, shape: tuple[int, ...]) -> NestedGrids:
    """The nested grids of a fine-cell array of ``shape`` ((n_y, n_x) or (n_z, n_y, n_x)) on
    --domain with --coarse cells and --neumann sides, all checked (with --layers and the
    method) on every rank before any work (:func:`check_grid`). Collective."""
    dim = len(shape)
    fine = tuple(shape[::-1])
    check_grid(args, comm, shape)
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
