"""Patches N^l(T) around coarse cells T, their configurations, and which rank owns which.

A patch is the box of coarse cells within ``l`` layers of T, truncated at the domain
boundary. Patches with equal *configuration* (shape, position of T inside, and which sides lie
on the domain boundary) have identical topology, constraint matrix and sparsity, so all
per-configuration work (meshes, compiled forms, factorization structure) is done once.

Local numbering on a patch of wx x wy (x wz) coarse cells (r fine cells per coarse cell and
direction), lexicographic with x fastest: fine vertex (ax, ay[, az]) -> ax + (wx r + 1) ay
(+ (wx r + 1)(wy r + 1) az), fine cell likewise with wx r, wy r cells per direction.
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
    lattice_coordinates,
    lattice_keys,
)


class Configuration(NamedTuple):
    """What determines a patch problem up to translation."""

    shape: tuple[int, ...]  # (wx, wy[, wz]) coarse cells of the patch
    element: tuple[int, ...]  # position of T in the patch (coarse cell units)
    #: patch side on dOmega: (left, right, bottom, top[, front, back]), i.e. (lo, hi) per axis
    on_boundary: tuple[bool, ...]


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
        r = grids.r
        counts = np.asarray(self.configuration.shape) * r + 1
        return box_keys(np.asarray(self.lo) * r, counts, grids.fine + 1)

    def fine_cell_keys(self, grids: NestedGrids) -> npt.NDArray[np.int64]:
        """Global fine cell keys of the patch's cells, in local patch order."""
        r = grids.r
        return box_keys(
            np.asarray(self.lo) * r, np.asarray(self.configuration.shape) * r, grids.fine
        )

    def coarse_vertex_keys(self, NH: int) -> npt.NDArray[np.int64]:
        """Coarse vertex keys of the closed patch, local order (x fastest)."""
        return box_keys(self.lo, np.asarray(self.configuration.shape) + 1, NH + 1)

    def element_vertex_keys(self, NH: int) -> npt.NDArray[np.int64]:
        """Coarse vertex keys of T's corners (order of :func:`~dolfinx_lod.grids.corner_bits`)."""
        T = lattice_coordinates(np.array([self.cell]), NH, self.dim)
        return lattice_keys(T, NH + 1) + cell_vertex_offsets(NH + 1, self.dim)


def make_patch(cell: int, coarse: int, layers: int, dim: int = 2) -> Patch:
    """N^l(T) of coarse cell key ``cell`` on a mesh of ``coarse``^``dim`` cells."""
    T = lattice_coordinates(np.array([cell]), coarse, dim)[0]
    lo = tuple(int(max(t - layers, 0)) for t in T)
    hi = tuple(int(min(t + layers + 1, coarse)) for t in T)
    config = Configuration(
        shape=tuple(b - a for a, b in zip(lo, hi, strict=True)),
        element=tuple(int(t - a) for t, a in zip(T, lo, strict=True)),
        on_boundary=tuple(
            side for a, b in zip(lo, hi, strict=True) for side in (a == 0, b == coarse)
        ),
    )
    return Patch(cell, lo, hi, config)


def owned_cells(grids: NestedGrids) -> npt.NDArray[np.int64]:
    """Coarse cells T whose patch problems this rank solves (sorted keys).

    T belongs to the rank that owns the fine cell at T's centre, so each rank works where its
    part of the fine mesh (and coefficient) lies. Local, no communication.
    """
    r, NH, d = grids.r, grids.coarse, grids.dim
    T = np.arange(NH**d, dtype=np.int64)
    centre = lattice_keys(lattice_coordinates(T, NH, d) * r + r // 2, grids.fine)
    return np.sort(T[np.isin(centre, grids.fine_cell_keys)])


def validate_layers(layers: int) -> None:
    """Raise ``ValueError`` unless the number of layers l is an integer >= 1."""
    if isinstance(layers, bool) or not isinstance(layers, int | np.integer) or layers < 1:
        raise ValueError(f"layers l must be an integer >= 1, got {layers!r}")


def validate_refinement(coarse: int, fine: int) -> None:
    """Raise ``ValueError`` unless N_H divides n with r = n / N_H >= 2: with one fine cell per
    coarse cell the constraint I_H v = 0 leaves the patch saddle-point systems singular (the
    factorization fails on patches away from the boundary). Sizes < 1 are left to
    :func:`dolfinx_lod.grids.create_nested_grids`."""
    if not all(isinstance(v, int | np.integer) and v >= 1 for v in (coarse, fine)):
        return
    allowed = [d for d in range(1, fine // 2 + 1) if fine % d == 0]
    if fine % coarse:
        raise ValueError(
            f"coarse cells per direction NH ({coarse}) must divide fine cells per direction "
            f"n ({fine}) with r = n / NH >= 2; allowed: NH in {allowed}"
        )
    if fine < 2 * coarse:
        raise ValueError(
            f"coarse cells per direction NH ({coarse}) must be at most n / 2 = {fine // 2}: the "
            f"patch problems need r = n / NH >= 2 fine cells per coarse cell; allowed: NH in "
            f"{allowed}"
        )
