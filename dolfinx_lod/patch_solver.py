"""The sparse direct solver of a patch saddle-point problem: K = [[S, B^T], [B, 0]] and its
MUMPS LDL^T factorization, at most :data:`MAX_LIVE_FACTORIZATIONS` of them alive per process.

A live MUMPS factorization holds about five duplicated MPI communicators (a patch mesh with its
spaces and matrices about twelve). MPICH has 2048 per process, and MUMPS does not check a
failed duplication: it then corrupts the heap (``free(): invalid pointer``) or reports an
allocation failure (INFOG(1) = -13). There is one patch problem per patch configuration, 49 in
2D and 343 in 3D with l = 2, so the factorizations used least recently are freed (the next solve
of their problem factorizes anew, with the symbolic phase) once more than the limit exist.
Rank-local."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from mpi4py import MPI
from petsc4py import PETSc

from dolfinx_lod.parallel import PETScResource

#: Default options prefix of the patch solvers.
PATCH_OPTIONS_PREFIX = "lod_patch_"

#: Default PETSc options of the patch solvers. Options given on the command line or set in the
#: options database with the solver's prefix (e.g. ``-lod_patch_pc_factor_mat_solver_type``)
#: take precedence; the defaults are put into the database only while the solver reads them.
PATCH_SOLVER_OPTIONS = {
    "ksp_type": "preonly",
    "pc_type": "cholesky",
    "pc_factor_mat_solver_type": "mumps",
    # METIS ordering, no scaling (S is divided by a power of two near max a before each
    # factorization): the fastest factorization and solve measured by bench/bench_patch_solver.py
    "mat_mumps_icntl_7": 5,
    "mat_mumps_icntl_8": 0,
}


@dataclass(frozen=True)
class PatchSolverOptions:
    """Options prefix (non-empty) and default PETSc options of the patch solvers (default
    :data:`PATCH_SOLVER_OPTIONS`); options already in the database with the prefix win."""

    prefix: str = PATCH_OPTIONS_PREFIX
    options: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.prefix:
            raise ValueError("petsc_options_prefix must be a non-empty string")
        if self.options is None:
            object.__setattr__(self, "options", dict(PATCH_SOLVER_OPTIONS))


#: Most MUMPS factorizations of patch problems alive at once in a process (about 640 MPI
#: communicators): every patch configuration of l <= 4 in 2D and l = 1 in 3D keeps its own.
MAX_LIVE_FACTORIZATIONS = 128

#: The solvers holding a factorization, least recently factorized first (by id; weak).
_live: OrderedDict[int, weakref.ref] = OrderedDict()


class SaddleSolver(PETScResource):
    """K of one CSR sparsity (values set by the user before each factorization) and the KSP
    that factorizes it, configured from the options database and ``solver``. Rank-local.
    Owns PETSc objects: release them with :meth:`destroy`.

    Args:
        indptr: CSR row offsets of K.
        indices: CSR column indices of K (sorted per row).
        solver: Options prefix and default PETSc options.
    """

    def __init__(
        self,
        indptr: npt.NDArray[np.int32],
        indices: npt.NDArray[np.int32],
        solver: PatchSolverOptions,
    ):
        self.prefix, self._options = solver.prefix, solver.options
        self._indptr, self._indices = indptr, indices  # K reads these arrays (no copy)
        size = indptr.size - 1
        #: K's values, shared with PETSc (no copy): the user writes them here before each
        #: :meth:`factorize`; explicit zeros keep the whole pattern.
        self.values = np.zeros(indices.size)
        self.K = PETSc.Mat().createAIJWithArrays(
            (size, size), (indptr, indices, self.values), comm=MPI.COMM_SELF
        )
        self.K.setOption(PETSc.Mat.Option.SYMMETRIC, True)
        self.ksp = PETSc.KSP().create(MPI.COMM_SELF)
        self.ksp.setOptionsPrefix(self.prefix)
        self.ksp.setOperators(self.K)
        self._set_from_options()

    def factorize(self) -> str | None:
        """Factorize K with the values in :attr:`values` (CSR order of the sparsity, written
        there by the user: K reads them without a copy); freeing the least recently used
        factorization of the process beyond :data:`MAX_LIVE_FACTORIZATIONS`.

        Returns:
            What went wrong (:meth:`failure`), or None.
        """
        key = id(self)
        _live.pop(key, None)
        _live[key] = weakref.ref(self)
        while len(_live) > MAX_LIVE_FACTORIZATIONS:
            other = _live.popitem(last=False)[1]()
            if other is not None:
                other.release()
        self.K.stateIncrease()  # new values, same pattern: a numeric factorization only
        try:
            with self._defaults():  # the first set-up creates the factor from the options
                self.ksp.setUp()  # a failed factorization is flagged, not raised
            return self.failure()
        except PETSc.Error as e:
            return self.failure() or f"PETSc error code {e.ierr}"

    @contextmanager
    def _defaults(self):
        """The default options in the database with the prefix, only inside the block (the
        options of MUMPS are read when the factor is created, at the first set-up); options
        the database already has win."""
        opts = PETSc.Options()
        added = [key for key in self._options if not opts.hasName(self.prefix + key)]
        for key in added:
            opts.setValue(self.prefix + key, self._options[key])
        try:
            yield
        finally:
            for key in added:
                opts.delValue(self.prefix + key)

    def _set_from_options(self) -> None:
        """Configure the KSP from the options database and the default options."""
        with self._defaults():
            self.ksp.setFromOptions()

    def release(self) -> None:
        """Free the factorization (after a failed one, or to bound their number): the next
        :meth:`factorize` starts anew. K and the options stay."""
        _live.pop(id(self), None)
        self.ksp.reset()
        self.ksp.setOperators(self.K)
        self._set_from_options()

    def failure(self) -> str | None:
        """What went wrong in the last factorization or solve (None if nothing)."""
        pc = self.ksp.getPC()
        reasons = []
        if pc.getFailedReason() != 0:
            reasons.append(f"factorization failed (PC failed reason {pc.getFailedReason()})")
        if self.ksp.getConvergedReason() < 0:
            reasons.append(f"KSP reason {self.ksp.getConvergedReason()}")
        try:
            infog = pc.getFactorMatrix().getMumpsInfog(1)
        except PETSc.Error:  # not MUMPS, or nothing factorized
            infog = 0
        if infog < 0:
            reasons.append(f"MUMPS INFOG(1) = {infog}")
        return ", ".join(reasons) or None

    def destroy(self) -> None:
        """Free the KSP (and its factorization) and K."""
        _live.pop(id(self), None)
        self.ksp.destroy()
        self.K.destroy()
