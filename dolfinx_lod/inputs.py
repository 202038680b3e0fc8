"""The one normaliser of user data: coefficient a, capacity c, source f -> DG0 values on T_h,
boundary data g, q -> Q1 Functions on T_h.

Every argument accepts the forms a DOLFINx user writes:

- a number, or a scalar ``fem.Constant`` (changed in place between steps);
- a scalar UFL expression on the fine mesh T_h (``ufl.SpatialCoordinate``, Constants,
  Functions on T_h), interpolated with ``fem.Expression`` at the target space's points;
- a DOLFINx Function, any scalar space, on T_h or on another mesh with the same cells (a mesh
  created separately with the same points, other partitioning): interpolated at the cell
  midpoints for DG0 targets (for DG0 and Q1 data this is the cell mean) and at the vertices for
  Q1 targets (non-matching interpolation where the meshes differ);
- a numpy array in the fine-cell layout ``grids.cell_array_shape`` ((n_y, n_x) = A[iy, ix], x
  fastest, 3D (n_z, n_y, n_x)), or for vertex data ``grids.vertex_array_shape``;
- a callable with the convention of ``Function.interpolate``: ``x -> values``, x of shape
  (3, N) (x[2] = 0 in 2D), returning N values. Time-dependent data in the time loop is
  ``(t, x) -> values`` (:func:`at_time`); parametrised coefficient families are ``(x, p) ->
  values`` and only take that form where a parameter p is given.

Vector- or tensor-valued data is refused with a message naming the argument: the problem is
scalar. All functions are collective; a bad value on any rank raises ``InputError`` (a
``ValueError``) on every rank.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import dolfinx.fem
import numpy as np
import numpy.typing as npt
import ufl
from mpi4py import MPI

from dolfinx_lod.grids import NestedGrids, lattice_coordinates
from dolfinx_lod.parallel import InputError, validate

CoefficientLike = (
    float | npt.ArrayLike | Callable[..., npt.ArrayLike] | dolfinx.fem.Function | ufl.core.expr.Expr
)

#: Smallest ratio min(a) / max(a) the patch solves resolve in double precision (a contrast of
#: 1e14); smaller ratios, and subnormal values, are rejected.
MIN_RATIO = 1e-14

_DTYPE_KINDS = {
    "b": "boolean",
    "c": "complex",
    "M": "datetime",
    "m": "timedelta",
    "U": "string",
    "S": "bytes",
    "O": "object",
    "V": "structured or void",
}


def fine_cell_midpoints(
    grids: NestedGrids, keys: npt.NDArray[np.int64] | None = None
) -> npt.NDArray[np.float64]:
    """Midpoints x of the fine cells ``keys`` (default: the owned ones, in ``fine_cell_keys``
    order): shape (3, N), the shape DOLFINx gives interpolation callables (x[2] = 0 in 2D)."""
    keys = grids.fine_cell_keys if keys is None else keys
    ij = lattice_coordinates(keys, grids.fine_sizes, grids.dim).T
    x = np.zeros((3, ij.shape[1]))
    x[: grids.dim] = grids.origin[:, None] + (ij + 0.5) * grids.h[:, None]
    return x


def check_dtype(arr: npt.NDArray, name: str) -> None:
    """Raise ``InputError`` unless ``arr`` holds real floating-point or integer numbers."""
    kind = np.asarray(arr).dtype.kind
    if kind not in "fiu":
        raise InputError(
            f"{name} must hold real floating-point or integer values; got dtype "
            f"{np.asarray(arr).dtype} ({_DTYPE_KINDS.get(kind, 'other')})"
        )


def check_contrast(low: float, high: float, name: str) -> None:
    """Raise ``InputError`` if positive values in [low, high] span a contrast the patch solves
    cannot resolve: ``low / high < MIN_RATIO``, or ``low`` subnormal."""
    if low < np.finfo(np.float64).tiny or low < MIN_RATIO * high:
        digits = np.log10(high) - np.log10(low)
        raise InputError(
            f"{name} values span a contrast max/min = 1e{digits:.0f} (max {high:.3g}, min "
            f"{low:.3g}); double-precision patch solves resolve contrasts up to "
            f"{1 / MIN_RATIO:.0e} (min/max >= {MIN_RATIO:g}, no subnormal values): rescale or "
            "clip the values"
        )


def check_values(values: npt.NDArray, name: str, positive: bool) -> None:
    """Raise ``InputError`` unless ``values`` are real, finite and (if ``positive``) > 0."""
    check_dtype(values, name)
    if not np.all(np.isfinite(values)):
        raise InputError(f"{name} must be finite; found NaN or infinite values")
    if positive and values.size and values.min() <= 0.0:
        raise InputError(f"{name} must be > 0 on every fine cell; minimum is {values.min():g}")


def check_coefficient_values(values: npt.NDArray, name: str = "coefficient") -> None:
    """All checks of a coefficient array on one process: dtype, finite, > 0, contrast.
    Rank-local (raise collectively with :func:`dolfinx_lod.parallel.validate`)."""
    check_values(values, name, True)
    if values.size:
        check_contrast(float(values.min()), float(values.max()), name)


def validate_array_shape(arr: npt.NDArray, name: str = "coefficient", dim: int = 2) -> None:
    """Raise ``ValueError`` unless ``arr`` is a non-empty array of fine-cell values with ``dim``
    axes: (n_y, n_x) = A[iy, ix] in 2D or (n_z, n_y, n_x) = A[iz, iy, ix] in 3D."""
    if arr.ndim != dim or 0 in arr.shape:
        axes = {2: "(n_y, n_x)", 3: "(n_z, n_y, n_x)"}[dim]
        raise InputError(f"{name} array must be {dim}D of shape {axes}; got shape {arr.shape}")


def scalar_error(name: str, shape: tuple[int, ...]) -> InputError:
    """The error for vector- or tensor-valued data."""
    return InputError(
        f"{name} must be scalar-valued: the problem -div(a grad u) = f is scalar; got data of "
        f"value shape {tuple(shape)}"
    )


def positional_arity(fn: Callable) -> int | None:
    """Number of required positional arguments of ``fn`` (None: not known, e.g. *args)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(q.kind is inspect.Parameter.VAR_POSITIONAL for q in parameters):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(q.kind in positional and q.default is inspect.Parameter.empty for q in parameters)


def call_points(fn: Callable, x: npt.NDArray[np.float64], p: Any, name: str) -> npt.NDArray:
    """fn(x) (or fn(x, p) for a family with a parameter p) as N real values.

    Raises:
        InputError: A two-argument callable without a parameter, a wrong shape or dtype.
    """
    arity = positional_arity(fn)
    if arity == 2 and p is None:
        raise InputError(
            f"{name} is a callable of two arguments, but data callables take x alone, as "
            "Function.interpolate does: write lambda x: ... (x of shape (3, N)); (t, x) is for "
            "time-dependent sources and data of the time loop, and (x, p) for a parametrised "
            "family with its parameter p (solve_elliptic(..., p=...), "
            "CoefficientSchedule.from_family)"
        )
    values = np.asarray(fn(x) if p is None or arity == 1 else fn(x, p))
    check_dtype(values, f"{name}(x)")
    if values.ndim == 2 and values.shape[0] == 1:
        values = values[0]
    if values.ndim == 2 and values.shape[1] == x.shape[1]:
        raise scalar_error(name, values.shape[:1])
    if values.ndim == 0:
        values = np.full(x.shape[1], float(values))
    if values.shape != (x.shape[1],):
        raise InputError(
            f"{name}(x) must return one value per cell midpoint or point, shape "
            f"({x.shape[1]},); got {values.shape}"
        )
    return values.astype(np.float64, copy=False)


def at_time(data: Any, t: float, time: dolfinx.fem.Constant | None = None) -> Any:
    """Data of the time loop at time t: a callable (t, x) becomes x -> data(t, x); a callable
    of x alone is constant in time; ``time`` (a Constant the user's UFL data reads) is set to
    t. Other data is returned as it is (a Constant or Function the caller updates)."""
    if time is not None:
        time.value = t
    if callable(data) and not isinstance(data, dolfinx.fem.Function):
        if positional_arity(data) == 2:
            return lambda x: data(t, x)
    return data


def _is_ufl(data: Any) -> bool:
    return isinstance(data, ufl.core.expr.Expr)


def _check_ufl(grids: NestedGrids, data: Any, name: str) -> None:
    """Scalar, no test/trial functions, on T_h (a Function may live on a copy of T_h)."""
    shape = data.value.shape if isinstance(data, dolfinx.fem.Constant) else data.ufl_shape
    if tuple(shape) != ():
        raise scalar_error(name, shape)
    if isinstance(data, dolfinx.fem.Function | dolfinx.fem.Constant):
        if isinstance(data, dolfinx.fem.Function):
            mesh = data.function_space.mesh
            cells = mesh.topology.index_map(mesh.topology.dim).size_global
            if mesh is not grids.fine_mesh and cells != grids.num_fine_cells:
                raise InputError(
                    f"{name} is a Function on a mesh of {cells} cells; it must live on the fine "
                    f"mesh T_h or a mesh with the same {grids.num_fine_cells} cells"
                )
        return
    if ufl.algorithms.extract_arguments(data):
        raise InputError(f"{name} must not contain a TestFunction or TrialFunction")
    domain = ufl.domain.extract_unique_domain(data)
    if domain is not None and domain is not grids.fine_mesh.ufl_domain():
        raise InputError(
            f"{name} is a UFL expression on another mesh; it must be built on the fine mesh "
            "T_h (grids.fine_mesh), or interpolated into a Function first"
        )


def interpolate_into(
    grids: NestedGrids, data: Any, target: dolfinx.fem.Function, name: str
) -> dolfinx.fem.Function:
    """Interpolate a Constant, UFL expression or Function into ``target`` (DG0 or Q1 on T_h).
    Collective; errors (which depend only on the data's type and mesh) are raised on every
    rank together."""
    validate(grids.comm, lambda: _check_ufl(grids, data, name))
    V = target.function_space
    if isinstance(data, dolfinx.fem.Constant):
        target.x.array[:] = float(data.value)
    elif isinstance(data, dolfinx.fem.Function) and data.function_space.mesh is not V.mesh:
        mesh = V.mesh
        cells = np.arange(mesh.topology.index_map(mesh.topology.dim).size_local, dtype=np.int32)
        found = dolfinx.fem.Function(V)
        data_space = data.function_space
        marker = dolfinx.fem.Function(dolfinx.fem.functionspace(data_space.mesh, ("DG", 0)))
        marker.x.array[:] = 1.0
        interpolation = dolfinx.fem.create_interpolation_data(V, data_space, cells, 1e-10)
        target.interpolate_nonmatching(data, cells, interpolation)
        marker_data = dolfinx.fem.create_interpolation_data(V, marker.function_space, cells, 1e-10)
        found.interpolate_nonmatching(marker, cells, marker_data)
        missing = int(np.count_nonzero(found.x.array[: V.dofmap.index_map.size_local] < 0.5))
        missing = grids.comm.allreduce(missing, op=MPI.SUM)
        if missing:
            raise InputError(f"{name}: {missing} points of T_h lie outside its mesh")
    elif isinstance(data, dolfinx.fem.Function):
        target.interpolate(data)
    else:
        target.interpolate(dolfinx.fem.Expression(data, V.element.interpolation_points))
    target.x.scatter_forward()
    return target


def _local_values(grids: NestedGrids, a: Any, p: Any, name: str) -> npt.NDArray[np.float64]:
    """Values of number/array/callable data on the owned fine cells (local, no communication)."""
    if callable(a):
        return call_points(a, fine_cell_midpoints(grids), p, name)
    arr = np.asarray(a)
    check_dtype(arr, name)
    if arr.ndim == 0:
        return np.full(grids.fine_cell_keys.size, float(arr))
    validate_array_shape(arr, name, grids.dim)
    if arr.shape != grids.cell_array_shape:
        axes = "(n_y, n_x)" if grids.dim == 2 else "(n_z, n_y, n_x)"
        raise InputError(
            f"{name} array must have shape {axes} = {grids.cell_array_shape} (fine cells); "
            f"got {arr.shape}"
        )
    return np.asarray(arr.reshape(-1)[grids.fine_cell_keys], dtype=np.float64)


def _dg0_values(grids: NestedGrids, a: Any, name: str) -> npt.NDArray[np.float64]:
    """Values of UFL data (Constant, expression, Function) on the owned fine cells. Collective."""
    owned = grids.fine_cell_keys.size
    V = a.function_space if isinstance(a, dolfinx.fem.Function) else None
    if V is not None and V.mesh is grids.fine_mesh and V.element.space_dimension == 1:
        check_dtype(a.x.array, name)  # DG0 on T_h: the values as they are
        return np.asarray(a.x.array[V.dofmap.list[:owned, 0]], dtype=np.float64)
    f = interpolate_into(grids, a, dolfinx.fem.Function(grids.Q_h), name)
    return np.asarray(f.x.array[grids.Q_h.dofmap.list[:owned, 0]], dtype=np.float64)


def owned_coefficient_values(
    grids: NestedGrids,
    a: CoefficientLike,
    p: Any = None,
    name: str = "coefficient",
    positive: bool = True,
) -> npt.NDArray[np.float64]:
    """Validated values of ``a`` (any form of the module docstring) on the owned fine cells, in
    ``grids.fine_cell_keys`` order: real numbers, finite, and if ``positive`` > 0 with a
    contrast max/min over all ranks that double-precision solves resolve
    (:func:`check_contrast`). ``p``: the parameter of a family a(x, p).

    Collective: a bad value on any rank raises ``InputError`` (a ``ValueError``) on every rank.
    """
    ufl_values = _dg0_values(grids, a, name) if _is_ufl(a) else None
    out: list[npt.NDArray[np.float64]] = []

    def check() -> None:
        values = ufl_values if ufl_values is not None else _local_values(grids, a, p, name)
        check_values(values, name, positive)
        out.append(values)

    validate(grids.comm, check)
    values = out[0]
    if positive:  # the global range, the same on every rank: raising here is collective
        low = grids.comm.allreduce(float(values.min()) if values.size else np.inf, op=MPI.MIN)
        high = grids.comm.allreduce(float(values.max()) if values.size else 0.0, op=MPI.MAX)
        check_contrast(low, high, name)
    return values


def set_cell_values(f: dolfinx.fem.Function, values: npt.NDArray[np.float64]) -> None:
    """Set a DG0 Function on T_h from owned fine-cell values (``fine_cell_keys`` order)."""
    V = f.function_space
    f.x.array[V.dofmap.list[: values.size, 0]] = values
    f.x.scatter_forward()


def coefficient_function(
    grids: NestedGrids,
    a: CoefficientLike,
    p: Any = None,
    name: str = "coefficient",
    positive: bool = True,
) -> dolfinx.fem.Function:
    """The data ``a`` as a DG0 Function on T_h (validated, collective)."""
    f = dolfinx.fem.Function(grids.Q_h, name=name)
    set_cell_values(f, owned_coefficient_values(grids, a, p, name, positive))
    return f


def vertex_function(grids: NestedGrids, g: Any, name: str) -> dolfinx.fem.Function:
    """Boundary data g (number, Constant, UFL expression, Function, vertex array of shape
    ``grids.vertex_array_shape``, callable x -> values) as a finite Q1 Function on T_h.
    Collective; bad data raises ``InputError`` on every rank."""
    u = dolfinx.fem.Function(grids.V_h, name=name)
    if _is_ufl(g):
        interpolate_into(grids, g, u, name)
    else:

        def local() -> None:
            nowned = grids.V_h.dofmap.index_map.size_local
            x = grids.V_h.tabulate_dof_coordinates()[:nowned].T
            if callable(g):
                u.x.array[:nowned] = call_points(g, x, None, name)
                return
            arr = np.asarray(g)
            check_dtype(arr, name)
            if arr.ndim != 0 and arr.shape != grids.vertex_array_shape:
                raise InputError(
                    f"{name} must be a number or an array of fine-vertex values of shape "
                    f"{grids.vertex_array_shape}; got shape {arr.shape}"
                )
            flat = arr.reshape(-1)[grids.fine_dof_keys] if arr.ndim else float(arr)
            u.x.array[:nowned] = flat

        validate(grids.comm, local)
        u.x.scatter_forward()
    nowned = grids.V_h.dofmap.index_map.size_local
    validate(grids.comm, lambda: check_values(u.x.array[:nowned], name, False))
    return u


def validate_source(f: float) -> None:
    """Raise ``ValueError`` unless the constant source f is a finite number."""
    if not np.isfinite(f):
        raise ValueError(f"source f must be a finite number, got {f!r}")


def source_function(grids: NestedGrids, f: CoefficientLike) -> float | dolfinx.fem.Function:
    """The source f as :class:`~dolfinx_lod.lod.FineSystem` takes it: a finite number as it
    is, any other form of this module (Constant, UFL expression, Function, array, callable
    x -> values) as a DG0 Function on T_h. Collective: bad data raises ``InputError`` on
    every rank."""
    if isinstance(f, int | float | np.number):
        validate(grids.comm, lambda: validate_source(f))
        return float(f)
    return coefficient_function(grids, f, name="source f", positive=False)
