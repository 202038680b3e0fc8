"""Coefficients a(x) >= alpha > 0, piecewise constant on the fine cells of T_h (DG0).

A coefficient can be given as
- a numpy array of fine-cell values of shape (n, n): row = y index from the bottom,
  column = x index from the left (``A[iy, ix]``),
- a callable ``a(x, p)`` evaluated at fine-cell midpoints ``x`` (shape (2, N_cells)),
- a DG0 :class:`dolfinx.fem.Function` on the fine mesh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import numpy.typing as npt

from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.parallel import validate

CoefficientLike = npt.ArrayLike | Callable[..., npt.ArrayLike] | dolfinx.fem.Function


def fine_cell_midpoints(grids: NestedGrids) -> npt.NDArray[np.float64]:
    """Midpoints (shape (2, N_owned)) of the owned fine cells, in ``fine_cell_keys`` order."""
    n = grids.fine
    ij = np.stack([grids.fine_cell_keys % n, grids.fine_cell_keys // n])
    return grids.origin[:, None] + (ij + 0.5) * grids.h[:, None]


def _check_values(values: npt.NDArray, name: str, positive: bool) -> None:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite; found NaN or infinite values")
    if positive and values.size and values.min() <= 0.0:
        raise ValueError(f"{name} must be > 0 on every fine cell; minimum is {values.min():g}")


def validate_array_shape(arr: npt.NDArray, name: str = "coefficient") -> None:
    """Raise ``ValueError`` unless ``arr`` is a square 2D array of fine-cell values."""
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"{name} array must be square 2D of shape (n, n); got shape {arr.shape}")


def random_coefficient(
    n: int, low: float = 0.01, high: float = 1.0, seed: int = 0
) -> npt.NDArray[np.float64]:
    """Rough coefficient: independent uniform values in [low, high] on each of n x n cells."""
    return np.random.default_rng(seed).uniform(low, high, size=(n, n))


def _owned_values(grids: NestedGrids, a: Any, p: Any, name: str) -> npt.NDArray[np.float64]:
    """Values of ``a`` on the owned fine cells (local, no communication)."""
    n = grids.fine
    if isinstance(a, dolfinx.fem.Function):
        element = a.function_space.element
        if a.function_space.mesh is not grids.fine_mesh or element.space_dimension != 1:
            raise ValueError(f"{name} as a Function must live in a DG0 space on the fine mesh T_h")
        cell_dofs = a.function_space.dofmap.list[: grids.fine_cell_keys.size, 0]
        return np.asarray(a.x.array[cell_dofs], dtype=np.float64)
    if callable(a):
        values = np.asarray(a(fine_cell_midpoints(grids), p), dtype=np.float64)
        if values.shape != grids.fine_cell_keys.shape:
            raise ValueError(
                f"{name}(x, p) must return one value per cell midpoint, shape "
                f"{grids.fine_cell_keys.shape}; got {values.shape}"
            )
        return values
    arr = np.asarray(a)
    validate_array_shape(arr, name)
    if arr.shape != (n, n):
        raise ValueError(f"{name} array must have shape ({n}, {n}) (fine cells); got {arr.shape}")
    return np.asarray(arr.reshape(-1)[grids.fine_cell_keys], dtype=np.float64)


def owned_coefficient_values(
    grids: NestedGrids,
    a: CoefficientLike,
    p: Any = None,
    name: str = "coefficient",
    positive: bool = True,
) -> npt.NDArray[np.float64]:
    """Validated values of ``a`` on the owned fine cells, in ``grids.fine_cell_keys`` order:
    finite, and > 0 if ``positive``.

    Collective: a bad value on any rank raises ``ValueError`` on every rank.
    """
    out: list[npt.NDArray[np.float64]] = []

    def check() -> None:
        values = _owned_values(grids, a, p, name)
        _check_values(values, name, positive)
        out.append(values)

    validate(grids.comm, check)
    return out[0]


def coefficient_function(
    grids: NestedGrids,
    a: CoefficientLike,
    p: Any = None,
    name: str = "coefficient",
    positive: bool = True,
) -> dolfinx.fem.Function:
    """The coefficient as a DG0 Function on T_h (validated, collective)."""
    f = dolfinx.fem.Function(grids.Q_h, name=name)
    set_cell_values(f, owned_coefficient_values(grids, a, p, name, positive))
    return f


def set_cell_values(f: dolfinx.fem.Function, values: npt.NDArray[np.float64]) -> None:
    """Set a DG0 Function on T_h from owned fine-cell values (``fine_cell_keys`` order)."""
    V = f.function_space
    f.x.array[V.dofmap.list[: values.size, 0]] = values
    f.x.scatter_forward()
