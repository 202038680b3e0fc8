"""Basis update strategies: which owned patches a :class:`~dolfinx_lod.basis.MultiscaleBasis`
update recomputes (:class:`FullUpdate`, :class:`SelectiveUpdate` with the error indicators of
:mod:`dolfinx_lod.indicators` or :meth:`dolfinx_lod.patch_problem.PatchProblem.indicator`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from dolfinx_lod.basis import MultiscaleBasis


class PatchValues:
    """Coefficient values per owned patch, taken from the values ``local`` on the union of the
    patches' cells only when a patch is asked for (``values[i]``, local patch cell order)."""

    def __init__(self, local: npt.NDArray[np.float64], cell_index: list[npt.NDArray[np.int64]]):
        self.local, self._index = local, cell_index

    def __getitem__(self, i: int) -> npt.NDArray[np.float64]:
        return self.local[self._index[i]]

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class UpdateStrategy(Protocol):
    """Chooses the owned patches whose correctors a basis update recomputes."""

    def select(self, basis: MultiscaleBasis, a_patches: PatchValues) -> npt.NDArray[np.bool_]:
        """Mask over ``basis.patches`` (collective), called when a changed somewhere."""
        ...


class FullUpdate:
    """Recompute every corrector whenever the coefficient changed anywhere (the reference)."""

    def select(self, basis: MultiscaleBasis, a_patches: PatchValues) -> npt.NDArray[np.bool_]:
        return np.ones(len(basis.patches), dtype=bool)


#: Default tolerance of the selective update: a patch keeps correctors whose relative energy
#: change is bounded by 10 % (error at T within 1.02x of the full update's in the
#: time-to-solution benchmark, docs/when-lod-pays-off.md).
DEFAULT_TOL = 0.1

#: Error indicators of the selective update: "coefficient" (Hellman–Keil–Målqvist, from the
#: coefficient alone, :mod:`dolfinx_lod.indicators`) or "correctors" (Hellman–Målqvist, one
#: patch assembly and eigenproblem per changed patch).
INDICATORS = ("coefficient", "correctors")


@dataclass
class SelectiveUpdate:
    """Recompute only patches whose error indicator e_T exceeds ``tol``.

    e_T bounds the relative energy change of T's correctors since they were computed,
    ||a^{1/2} grad (C_T^a - C_T^{a_ref}) w|| / ||a^{1/2} grad w||_T (w in Q1(T)); it is 0 where
    a did not change on the patch, so ``tol = 0`` recomputes exactly the patches where a
    changed. ``indicator`` (see :data:`INDICATORS`): "coefficient" (the default; a few vector
    operations per step) or "correctors" (sharper, about a patch solve per changed patch;
    with ``tol = 0`` not computed and reported as 0).
    """

    tol: float = DEFAULT_TOL
    indicator: str = "coefficient"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.tol) and self.tol >= 0):
            raise ValueError(f"selective update tolerance tol must be >= 0, got {self.tol}")
        if self.indicator not in INDICATORS:
            raise ValueError(f"indicator must be one of {INDICATORS}, got {self.indicator!r}")

    def select(self, basis: MultiscaleBasis, a_patches: PatchValues) -> npt.NDArray[np.bool_]:
        if self.indicator == "coefficient":
            basis.indicators = basis.coefficient_indicator().indicators(a_patches.local)
            basis.indicators[~np.array(basis.reference_set, dtype=bool)] = 0.0
            return basis.indicators > self.tol
        changed = basis.changed(a_patches)
        basis.indicators = np.zeros(len(basis.patches))
        if self.tol == 0:
            return changed
        for i in np.flatnonzero(changed):
            if basis.correctors[i] is not None:
                problem = basis.patch_problem(i)
                basis.indicators[i] = problem.indicator(
                    a_patches[i], basis.reference[i], basis.correctors[i]
                )
        return changed & (basis.indicators > self.tol)
