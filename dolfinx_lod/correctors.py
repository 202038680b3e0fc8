"""Classical element correctors C_T^l Lambda_j (paper (7)) by patch saddle-point solves.

For a patch N^l(T) with fine stiffness S (zero Dirichlet values on the patch boundary, except
on patch sides that lie on a Neumann side of the domain, where the correctors are free) and
constraint matrix B = I_H restricted to the patch, the 2^d correctors of T (d = 2, 3) solve

    [ S  B^T ] [ C_j ]   [ F_j ]
    [ B   0  ] [ mu  ] = [  0  ],      F_j = (v -> int_T a grad Lambda_j . grad v),

for the corners j of T, with one factorization per patch (MUMPS LDL^T) and all
right-hand sides at once. Everything that depends only on the patch configuration (mesh,
compiled forms, constraint rows, sparsity, symbolic factorization) is built once and reused.
Rank-local: no communication.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from dolfinx_lod.grids import (
    NestedGrids,
)
from dolfinx_lod.parallel import PETScResource
from dolfinx_lod.patch_problem import (
    PATCH_OPTIONS_PREFIX,
    PatchProblem,
    PatchSolveError,
    PatchSolverOptions,
)
from dolfinx_lod.patch_space import PatchSpace
from dolfinx_lod.patches import Configuration, Patch
from dolfinx_lod.progress import progress as progress_report


class CorrectorProvider(Protocol):
    """Anything that produces the element correctors of patches for a coefficient."""

    #: Whether the correctors are computed from the coefficient values on the patch (classical
    #: solves) or from the parameter p alone (learned and baseline providers): the basis then
    #: skips fetching the coefficient and recomputes only when p changes.
    needs_coefficient: bool

    def correctors(
        self,
        patches: Sequence[Patch],
        a_patches: Sequence[npt.NDArray[np.float64]],
        p: Any = None,
        progress: bool = False,
    ) -> list[npt.NDArray[np.float64]]:
        """Correctors C_T Lambda_j on each patch's fine vertices. Rank-local.

        Args:
            patches: The patches N^l(T).
            a_patches: Coefficient on each patch's fine cells (local patch order).
            p: Parameter of the coefficient family, if any (learned providers use it).
            progress: Show a progress bar.

        Returns:
            Per patch an array (n_vertices, 2^d): column j is C_T Lambda_j for T's corner j in
            the order of :func:`~dolfinx_lod.grids.corner_bits` ((0,0), (1,0), (0,1), (1,1),
            then z = 1 in 3D); rows follow the patch's local vertex order.
        """
        ...


@runtime_checkable
class OperatorSource(Protocol):
    """A provider that also gives the Petrov–Galerkin local operators (K_T, M_T) from the
    parameter p alone (learned operators): the basis then takes them instead of computing them
    from the correctors, and computes the correctors only when B is needed."""

    def local_operators(
        self, patches: Sequence[Patch], p: Any
    ) -> list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
        """(K_T, M_T) of each patch for parameter p. Rank-local."""
        ...


class ClassicalCorrectors(PETScResource):
    """The classical corrector provider: patch saddle-point solves, one PatchProblem per
    configuration (created on first use and kept).

    Owns the patch solvers' PETSc objects: release them with :meth:`destroy` or use the
    provider as a context manager. The patch meshes, spaces and matrices hold duplicated MPI
    communicators (about 430 on one rank for l = 2 on 8 x 8 coarse cells, and the live MUMPS
    factorizations about five each: see :mod:`dolfinx_lod.patch_solver`; MPICH has 2048 per
    process), so every basis on the same grids uses one provider, :meth:`shared`.

    Args:
        grids: Nested meshes.
        Pi: Local L2 projection of I_H.
        petsc_options_prefix: Options prefix of the patch solvers (non-empty).
        petsc_options: PETSc options of the patch solvers (default
            :data:`~dolfinx_lod.patch_problem.PATCH_SOLVER_OPTIONS`).
    """

    needs_coefficient = True

    #: The providers of :meth:`shared`, by (id of the grids, options prefix); an entry lives
    #: while a user holds its provider (which holds the grids, so the id stays theirs).
    _shared: ClassVar[weakref.WeakValueDictionary] = weakref.WeakValueDictionary()

    def __init__(
        self,
        grids: NestedGrids,
        Pi: npt.NDArray[np.float64],
        petsc_options_prefix: str = PATCH_OPTIONS_PREFIX,
        petsc_options: dict[str, Any] | None = None,
    ):
        self.grids, self.Pi = grids, Pi
        self._solver = PatchSolverOptions(petsc_options_prefix, petsc_options)
        self._spaces: dict[tuple[tuple[int, ...], tuple[bool, ...]], PatchSpace] = {}
        self._problems: dict[Configuration, PatchProblem] = {}
        self._users = 1  # owners that still have to call destroy()

    @classmethod
    def shared(
        cls,
        grids: NestedGrids,
        Pi: npt.NDArray[np.float64],
        petsc_options_prefix: str = PATCH_OPTIONS_PREFIX,
    ) -> ClassicalCorrectors:
        """The provider (default PETSc options) that every caller with these ``grids`` and
        this prefix shares while one of them holds it, so that the patch solvers exist once
        per process however many bases live. Each caller calls :meth:`destroy` once; the last
        call frees the solvers (as does dropping every reference). Rank-local.
        """
        key = (id(grids), petsc_options_prefix)
        provider = cls._shared.get(key)
        if provider is None:
            provider = cls(grids, Pi, petsc_options_prefix)
            cls._shared[key] = provider
        else:
            provider._users += 1
        return provider

    def problem(self, config: Configuration) -> PatchProblem:
        """The (cached) PatchProblem of a configuration."""
        if config not in self._problems:
            key = (config.shape, tuple(config.neumann_sides().ravel()))
            if key not in self._spaces:
                self._spaces[key] = PatchSpace(config.shape, self.grids, config.dirichlet_sides())
            space = self._spaces[key]
            self._problems[config] = PatchProblem(
                config, space, self.grids.refinement, self.Pi, self._solver
            )
        return self._problems[config]

    def _solve(self, patch: Patch, a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Correctors of one patch, a failed solve named by coarse cell T and rank."""
        try:
            return self.problem(patch.configuration).solve(a)
        except PatchSolveError as e:
            raise PatchSolveError(
                f"patch solve for coarse cell T = {patch.cell} (patch of "
                f"{' x '.join(map(str, patch.configuration.shape))} coarse "
                f"cells) failed on rank {self.grids.comm.rank}: {e}; coefficient on the "
                f"patch in [{np.min(a):.3g}, {np.max(a):.3g}]"
            ) from e

    def correctors(self, patches, a_patches, p=None, progress=False):
        """Correctors of ``patches`` (rank-local).

        Raises:
            PatchSolveError: A patch solve failed; the message names the coarse cell T and
                this rank (:meth:`dolfinx_lod.basis.MultiscaleBasis.update` raises it on
                every rank as :class:`~dolfinx_lod.parallel.NumericalError`).
        """
        pairs = zip(patches, a_patches, strict=True)
        bar = progress_report(pairs, "correctors", "patch", progress, total=len(patches))
        return [self._solve(patch, a) for patch, a in bar]

    def correctors_and_operators(
        self,
        patches: Sequence[Patch],
        a_patches: Sequence[npt.NDArray[np.float64]],
        c_patches: Sequence[npt.NDArray[np.float64]],
        progress: bool = False,
    ) -> list[tuple[npt.NDArray[np.float64], tuple[npt.NDArray, npt.NDArray]]]:
        """Correctors and the Petrov–Galerkin local operators (K_T, M_T) of each patch from one
        assembly of the patch matrices (:meth:`PatchProblem.local_operators`). Rank-local;
        raises like :meth:`correctors`."""
        out = []
        bar = progress_report(range(len(patches)), "correctors", "patch", progress)
        for i in bar:
            C = self._solve(patches[i], a_patches[i])
            problem = self.problem(patches[i].configuration)
            out.append((C, problem.local_operators(C, c_patches[i])))
        return out

    def solve_items(
        self, items: Sequence[tuple], indicator: Any = None, progress: bool = False
    ) -> list[tuple]:
        """(C, (K_T, M_T) or None, mu_T' or None) per item (patch, a, c or None): correctors,
        with a capacity c the Petrov–Galerkin local operators, with a
        :class:`~dolfinx_lod.indicators.CoefficientIndicator` the weights mu_T' of its
        patch. Computed from the items alone (the work that
        :func:`~dolfinx_lod.balance.spread` sends to any rank). Rank-local; raises like
        :meth:`correctors`."""
        patches, a_patches, c_patches = ([item[k] for item in items] for k in range(3))
        if c_patches[0] is not None:
            pairs = self.correctors_and_operators(patches, a_patches, c_patches, progress)
        else:
            pairs = [(C, None) for C in self.correctors(patches, a_patches, None, progress)]
        return [
            (C, ops, None if indicator is None else indicator.weights(patch, a, C))
            for (C, ops), patch, a in zip(pairs, patches, a_patches, strict=True)
        ]

    def operators_for(
        self,
        patches: Sequence[Patch],
        a_patches: Sequence[npt.NDArray[np.float64]],
        c_patches: Sequence[npt.NDArray[np.float64]],
        correctors: Sequence[npt.NDArray[np.float64]],
    ) -> list[tuple[npt.NDArray, npt.NDArray]]:
        """(K_T, M_T) of given correctors (from any provider) for the coefficient on each
        patch: assembles the patch matrices, solves nothing. Rank-local."""
        out = []
        for patch, a, c, C in zip(patches, a_patches, c_patches, correctors, strict=True):
            problem = self.problem(patch.configuration)
            problem.system(a)
            out.append(problem.local_operators(C, c))
        return out

    def destroy(self) -> None:
        """Free all patch solvers (of a :meth:`shared` provider: when its last user calls)."""
        self._users = max(self._users - 1, 0)
        if self._users:
            return
        key = (id(self.grids), self._solver.prefix)
        if self._shared.get(key) is self:
            del self._shared[key]
        for problem in self._problems.values():
            problem.destroy()
        for space in self._spaces.values():
            space.destroy()
        self._problems.clear()
        self._spaces.clear()
