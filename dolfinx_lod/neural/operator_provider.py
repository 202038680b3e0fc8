"""Corrector providers beside learned local operators: :class:`OperatorProvider` (the
Petrov–Galerkin local operators (K_T, M_T) from :class:`~dolfinx_lod.neural.operators.
LearnedOperators`, the correctors from another provider) and :class:`FamilyCorrectors` (the
classical correctors of a family from p alone, the reference for output reconstruction).
Rank-local."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from dolfinx_lod.coefficients import Family, fine_cell_midpoints
from dolfinx_lod.correctors import ClassicalCorrectors, CorrectorProvider
from dolfinx_lod.patches import Patch

if TYPE_CHECKING:
    from dolfinx_lod.neural.operators import LearnedOperators


class FamilyCorrectors:
    """Classical correctors of a coefficient family from p alone (``needs_coefficient``
    False): evaluates a(x, p) at the patch's fine-cell midpoints and solves the patch problems.
    The reference corrector provider beside learned operators (output reconstruction)."""

    needs_coefficient = False

    def __init__(self, classical: ClassicalCorrectors, family: Family):
        self.classical, self.family = classical, family

    def correctors(self, patches, a_patches=None, p=None, progress=False):
        g = self.classical.grids
        a = []
        for patch in patches:
            x = fine_cell_midpoints(g, patch.fine_cell_keys(g))
            a.append(self.family.a(x, self.family.check(p)))
        return self.classical.correctors(patches, a, progress=progress)


class OperatorProvider:
    """A corrector provider whose Petrov–Galerkin local operators come from
    :class:`LearnedOperators`: p alone decides both (``needs_coefficient`` False).

    Args:
        correctors: The provider of the correctors (used when B is assembled: output steps),
            e.g. :class:`~dolfinx_lod.neural.provider.LearnedCorrectors`.
        operators: Networks fitted for the patches of the basis this provider is used in.
    """

    needs_coefficient = False

    def __init__(self, correctors: CorrectorProvider, operators: LearnedOperators):
        self._correctors, self.operators = correctors, operators
        self._position = {int(c): g for g, c in enumerate(operators.cells)}

    def correctors(self, patches, a_patches, p=None, progress=False):
        return self._correctors.correctors(patches, a_patches, p, progress)

    def local_operators(
        self, patches: Sequence[Patch], p: Any
    ) -> list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
        """(K_T, M_T) of each patch for parameter p, by one batched forward pass."""
        values = self.operators.evaluate(p)
        size, c = self.operators.size, self.operators.corners
        out = []
        for patch in patches:
            g = self._position[patch.cell]
            n = self.operators.sizes[g]
            out.append(
                (
                    values[g, : n * c].reshape(n, c),
                    values[g, size * c : size * c + n * c].reshape(n, c),
                )
            )
        return out
