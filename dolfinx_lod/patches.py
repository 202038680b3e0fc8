"""Patches N^l(T) around coarse cells T, their configurations, and which rank owns which.

A patch is the box of coarse cells within ``l`` layers of T, truncated at the domain
boundary. Patches with equal *configuration* (shape, position of T inside, and which sides lie
on the domain boundary) have identical topology, constraint matrix and sparsity, so all
per-configuration work (meshes, compiled forms, factorization structure) is done once.

Local numbering on a patch of wx x wy (x wz) coarse cells (r_k fine cells per coarse cell in
direction k), lexicographic with x fastest: fine vertex (ax, ay[, az]) -> ax + (wx r_x + 1) ay
(+ (wx r_x + 1)(wy r_y + 1) az), fine cell likewise with wx r_x, wy r_y cells per direction.

A patch side on a Neumann side of the domain is a natural boundary of the patch problem: the
correctors are free there (they vanish only on the rest of the patch boundary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from dolfinx_lod.grids import (
    NestedGrids,
    box_keys,
    cell_vertex_offsets,
    check_nested,
    lattice_coordinates,
    lattice_keys,
)

#: Value of :attr:`Configuration.on_boundary` for a patch side on a Neumann side of dOmega.
NEUMANN = 2


class Configuration(NamedTuple):
    """What determines a patch problem up to translation."""

    shape: tuple[int, ...]  # (wx, wy[, wz]) coarse cells of the patch
    element: tuple[int, ...]  # position of T in the patch (coarse cell units)
    #: patch side on dOmega: (left, right, bottom, top[, front, back]), i.e. (lo, hi) per axis;
    #: False inside the domain, True on a Dirichlet side, :data:`NEUMANN` on a Neumann side
    #: (truthy too: the side lies on dOmega either way)
    on_boundary: tuple[bool | int, ...]

    def dirichlet_sides(self) -> npt.NDArray[np.bool_]:
        """(d, 2) mask of the patch sides where the correctors vanish: every side except those
        on a Neumann side of dOmega."""
        d = len(self.shape)
        return (np.asarray(self.on_boundary) != NEUMANN).reshape(d, 2)

    def neumann_sides(self) -> npt.NDArray[np.bool_]:
        """(d, 2) mask of the patch sides on a Neumann side of dOmega."""
        return ~self.dirichlet_sides()

    def constrained_sides(self) -> npt.NDArray[np.bool_]:
        """(d, 2) mask of the patch sides on the Dirichlet part of dOmega (coarse vertices
        there are not coarse dofs, so not constrained by I_H v = 0)."""
        d = len(self.shape)
        return np.asarray(self.on_boundary, dtype=bool).reshape(d, 2) & self.dirichlet_sides()


@dataclass(frozen=True)
class Patch:
    """N^l(T) for the coarse cell T: coarse cells [lo, hi) in each direction."""

    cell: int  # coarse cell key of T
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    configuration: Configuration

    @property
    def dim(self) -> int:
        """Space dimension d."""
        return len(self.lo)

    def fine_vertex_keys(self, grids: NestedGrids) -> npt.NDArray[np.int64]:
        """Global fine vertex keys of the patch's vertices, in local patch order."""
        r = grids.refinement
        counts = np.asarray(self.configuration.shape) * r + 1
        return box_keys(np.asarray(self.lo) * r, counts, grids.fine_sizes + 1)

    def fine_cell_keys(self, grids: NestedGrids) -> npt.NDArray[np.int64]:
        """Global fine cell keys of the patch's cells, in local patch order."""
        r = grids.refinement
        return box_keys(
            np.asarray(self.lo) * r, np.asarray(self.configuration.shape) * r, grids.fine_sizes
        )

    def coarse_vertex_keys(self, NH: int | npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Coarse vertex keys of the closed patch, local order (x fastest); ``NH`` coarse
        cells per direction (one number or one per direction)."""
        NH = np.asarray(NH, dtype=np.int64)
        return box_keys(self.lo, np.asarray(self.configuration.shape) + 1, NH + 1)

    def element_vertex_keys(self, NH: int | npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Coarse vertex keys of T's corners (order of :func:`~dolfinx_lod.grids.corner_bits`)."""
        NH = np.asarray(NH, dtype=np.int64)
        T = lattice_coordinates(np.array([self.cell]), NH, self.dim)
        return lattice_keys(T, NH + 1) + cell_vertex_offsets(NH + 1, self.dim)


def make_patch(
    cell: int,
    coarse: int | npt.ArrayLike,
    layers: int,
    dim: int = 2,
    neumann: npt.ArrayLike | None = None,
) -> Patch:
    """N^l(T) of coarse cell key ``cell`` on a mesh of ``coarse`` cells per direction (one
    number or one per direction), d = ``dim``; ``neumann``: (d, 2) mask of the domain sides
    with a Neumann condition (``~grids.dirichlet_sides``; None: all Dirichlet)."""
    NH = np.broadcast_to(np.asarray(coarse, dtype=np.int64), (dim,))
    T = lattice_coordinates(np.array([cell]), NH, dim)[0]
    lo = tuple(int(max(t - layers, 0)) for t in T)
    hi = tuple(int(min(t + layers + 1, N)) for t, N in zip(T, NH, strict=True))
    on_domain = [side for a, b, N in zip(lo, hi, NH, strict=True) for side in (a == 0, b == N)]
    free = np.zeros(2 * dim, dtype=bool) if neumann is None else np.ravel(neumann)
    config = Configuration(
        shape=tuple(b - a for a, b in zip(lo, hi, strict=True)),
        element=tuple(int(t - a) for t, a in zip(T, lo, strict=True)),
        on_boundary=tuple(
            NEUMANN if on and f else bool(on) for on, f in zip(on_domain, free, strict=True)
        ),
    )
    return Patch(cell, lo, hi, config)


def owned_cells(grids: NestedGrids) -> npt.NDArray[np.int64]:
    """Coarse cells T whose patch problems this rank solves (sorted keys).

    T belongs to the rank that owns the fine cell at T's centre, so each rank works where its
    part of the fine mesh (and coefficient) lies. Local, no communication.
    """
    r, NH, d = grids.refinement, grids.coarse_sizes, grids.dim
    T = np.arange(np.prod(NH), dtype=np.int64)
    centre = lattice_keys(lattice_coordinates(T, NH, d) * r + r // 2, grids.fine_sizes)
    return np.sort(T[np.isin(centre, grids.fine_cell_keys)])


def validate_layers(layers: int) -> None:
    """Raise ``ValueError`` unless the number of layers l is an integer >= 1."""
    if isinstance(layers, bool) or not isinstance(layers, int | np.integer) or layers < 1:
        raise ValueError(f"layers l must be an integer >= 1, got {layers!r}")


def validate_refinement(coarse: int | tuple[int, ...], fine: int | tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless N_k divides n_k with r_k = n_k / N_k >= 2 in every direction
    (one count for all directions or one per direction): with one fine cell per coarse cell
    the constraint I_H v = 0 leaves the patch saddle-point systems singular (the factorization
    fails on patches away from the boundary). Sizes < 1 are left to
    :func:`dolfinx_lod.grids.create_nested_grids`."""
    pairs = np.broadcast_arrays(np.atleast_1d(coarse), np.atleast_1d(fine))
    if all(isinstance(v, int | np.integer) and v >= 1 for v in np.concatenate(pairs)):
        check_nested(tuple(map(int, pairs[0])), tuple(map(int, pairs[1])), min_ratio=2)
