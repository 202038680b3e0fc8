"""Patches N^l(T) around coarse cells T, their configurations, and which rank owns which.

A patch is the rectangle of coarse cells within ``l`` layers of T, truncated at the domain
boundary. Patches with equal *configuration* (shape, position of T inside, and which sides lie
on the domain boundary) have identical topology, constraint matrix and sparsity, so all
per-configuration work (meshes, compiled forms, factorization structure) is done once.

Local numbering on a patch of wx x wy coarse cells (r fine cells per coarse cell):
fine vertex (ax, ay) -> ay * (wx r + 1) + ax, fine cell (cx, cy) -> cy * (wx r) + cx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from dolfinx_lod.grids import NestedGrids


class Configuration(NamedTuple):
    """What determines a patch problem up to translation."""

    shape: tuple[int, int]  # (wx, wy) coarse cells of the patch
    element: tuple[int, int]  # position of T in the patch (coarse cell units)
    on_boundary: tuple[bool, bool, bool, bool]  # patch side on dOmega: (left, right, bottom, top)


@dataclass(frozen=True)
class Patch:
    """N^l(T) for the coarse cell T = (Ix, Iy): coarse cells [lo, hi) in each direction."""

    cell: int  # coarse cell key of T
    lo: tuple[int, int]
    hi: tuple[int, int]
    configuration: Configuration

    def fine_vertex_keys(self, grids: NestedGrids) -> npt.NDArray[np.int64]:
        """Global fine vertex keys of the patch's vertices, in local patch order."""
        r, n = grids.r, grids.fine
        wx, wy = self.configuration.shape
        ax, ay = np.meshgrid(np.arange(wx * r + 1), np.arange(wy * r + 1))
        return ((self.lo[1] * r + ay) * (n + 1) + self.lo[0] * r + ax).ravel()

    def fine_cell_keys(self, grids: NestedGrids) -> npt.NDArray[np.int64]:
        """Global fine cell keys of the patch's cells, in local patch order."""
        r, n = grids.r, grids.fine
        wx, wy = self.configuration.shape
        cx, cy = np.meshgrid(np.arange(wx * r), np.arange(wy * r))
        return ((self.lo[1] * r + cy) * n + self.lo[0] * r + cx).ravel()

    def coarse_vertex_keys(self, NH: int) -> npt.NDArray[np.int64]:
        """Coarse vertex keys of the closed patch, local order (x fastest)."""
        wx, wy = self.configuration.shape
        jx, jy = np.meshgrid(np.arange(wx + 1), np.arange(wy + 1))
        return ((self.lo[1] + jy) * (NH + 1) + self.lo[0] + jx).ravel()

    def element_vertex_keys(self, NH: int) -> npt.NDArray[np.int64]:
        """Coarse vertex keys of T's corners (0,0), (1,0), (0,1), (1,1)."""
        Ix, Iy = self.cell % NH, self.cell // NH
        return Iy * (NH + 1) + Ix + np.array([0, 1, NH + 1, NH + 2], dtype=np.int64)


def make_patch(cell: int, coarse: int, layers: int) -> Patch:
    """N^l(T) of coarse cell key ``cell`` on an ``coarse`` x ``coarse`` mesh."""
    Ix, Iy = cell % coarse, cell // coarse
    lo = (max(Ix - layers, 0), max(Iy - layers, 0))
    hi = (min(Ix + layers + 1, coarse), min(Iy + layers + 1, coarse))
    config = Configuration(
        shape=(hi[0] - lo[0], hi[1] - lo[1]),
        element=(Ix - lo[0], Iy - lo[1]),
        on_boundary=(lo[0] == 0, hi[0] == coarse, lo[1] == 0, hi[1] == coarse),
    )
    return Patch(cell, lo, hi, config)


def owned_cells(grids: NestedGrids) -> npt.NDArray[np.int64]:
    """Coarse cells T whose patch problems this rank solves (sorted keys).

    T belongs to the rank that owns the fine cell at T's centre, so each rank works where its
    part of the fine mesh (and coefficient) lies. Local, no communication.
    """
    r, n, NH = grids.r, grids.fine, grids.coarse
    T = np.arange(NH * NH, dtype=np.int64)
    centre = ((T // NH) * r + r // 2) * n + (T % NH) * r + r // 2
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
