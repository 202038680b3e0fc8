"""The patch solvers hold duplicated MPI communicators (a patch mesh about twelve, a live MUMPS
factorization about five; MPICH has 2048 per process, and MUMPS corrupts the heap when a
duplication fails): they exist once per grids, not once per basis, and at most
``MAX_LIVE_FACTORIZATIONS`` factorizations live in a process. Three bases with l = 2 on 8 x 8
coarse cells, or one 3D basis with l = 2 on 8^3, used to crash with ``free(): invalid
pointer``: those cases run in a subprocess, so that a crash fails the test instead of ending
pytest."""

import textwrap

import numpy as np
import pytest
from helpers import run_mpi
from petsc4py import PETSc

import dolfinx_lod as dl
from dolfinx_lod import patch_solver
from dolfinx_lod.correctors import ClassicalCorrectors
from dolfinx_lod.interpolation import local_projection

MANY_BASES = textwrap.dedent(
    """
    from mpi4py import MPI
    from petsc4py import PETSc
    import dolfinx_lod as dl

    grids = dl.create_nested_grids(MPI.COMM_WORLD, 8, 64, neumann=("right", "top"))
    A = dl.coefficients.random_coefficient(64, 0.01, 1.0, seed=1)
    bases = [dl.MultiscaleBasis(grids, 2) for _ in range(4)]
    for k, basis in enumerate(bases):
        basis.update((1.0 + k) * A)  # the correctors do not change with the scale of a
    D = bases[-1].B.copy()
    D.axpy(-1.0, bases[0].B, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
    print("difference", D.norm() / bases[0].B.norm())
    """
)


BASIS_3D = textwrap.dedent(
    """
    import numpy as np
    from mpi4py import MPI
    import dolfinx_lod as dl

    grids = dl.create_nested_grids(MPI.COMM_WORLD, 8, 16, dl.grids.unit_box(3))
    basis = dl.MultiscaleBasis(grids, 2)  # 343 patch configurations
    basis.update(np.random.default_rng(0).uniform(0.01, 1.0, size=grids.cell_array_shape))
    print("patches", sum(np.isfinite(C).all() for C in basis.correctors))
    """
)


def run(script: str) -> str:
    """Run ``script`` in a fresh serial Python process; its stdout (asserts exit code 0)."""
    res = run_mpi(["-c", script], ranks=None)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_four_bases_alive_on_one_grid():
    """Four bases with solved patches, none destroyed, in one process: the run ends and the
    bases of a and 4a agree (before: heap corruption at the third)."""
    assert float(run(MANY_BASES).split()[-1]) <= 1e-10


@pytest.mark.slow
def test_3d_basis_with_343_patch_configurations():
    """One 3D basis with l = 2 on 8^3 coarse cells: every correctors finite (before: heap
    corruption, 343 live factorizations)."""
    assert run(BASIS_3D).split() == ["patches", "512"]


@pytest.mark.mpi
def test_factorizations_beyond_the_limit_are_freed(comm, monkeypatch):
    """With at most two live factorizations, each problem refactorizes from scratch when it
    was freed, and the correctors equal those of a basis without the limit."""
    grids = dl.create_nested_grids(comm, 4, 16, neumann=("right",))
    rng = np.random.default_rng(5)
    A1, A2 = (rng.uniform(0.01, 1.0, size=grids.cell_array_shape) for _ in range(2))
    with dl.MultiscaleBasis(grids, 1) as basis:
        basis.update(A1)
        expected = [C.copy() for C in basis.correctors]
    monkeypatch.setattr(patch_solver, "MAX_LIVE_FACTORIZATIONS", 2)
    with dl.MultiscaleBasis(grids, 1) as basis:
        for A in (A1, A2, A1):
            basis.update(A)
            assert len(patch_solver._live) <= 2
        assert len(basis.patch_problems._problems) > 2  # some were freed and factorized again
        for C, C_free in zip(basis.correctors, expected, strict=True):
            assert np.abs(C - C_free).max() <= 1e-12 * np.abs(C_free).max()


@pytest.mark.mpi
def test_bases_share_solvers_and_keep_their_own_correctors(comm):
    """Two bases on one grids share the classical provider; each keeps the correctors of its
    own coefficient (equal to those of a provider of its own), also after the other basis is
    destroyed; the last destroy frees the solvers."""
    grids = dl.create_nested_grids(comm, 4, 16, neumann=("right",))
    rng = np.random.default_rng(3)
    A1, A2 = (rng.uniform(0.01, 1.0, size=grids.cell_array_shape) for _ in range(2))
    first, second = dl.MultiscaleBasis(grids, 1), dl.MultiscaleBasis(grids, 1)
    assert first.patch_problems is second.patch_problems
    first.update(A1)
    second.update(A2)
    own = ClassicalCorrectors(grids, local_projection(grids))
    for basis, A in ((first, A1), (second, A2)):
        expected = own.correctors(basis.patches, basis.patch_coefficients(A))
        for C, C_own in zip(basis.correctors, expected, strict=True):
            assert np.abs(C - C_own).max() <= 1e-12 * np.abs(C_own).max()
    own.destroy()
    first.destroy()
    first.destroy()  # a second destroy does not release the shared solvers again
    second.update(A1)
    for C, C_first in zip(second.correctors, first.correctors, strict=True):
        assert np.abs(C - C_first).max() <= 1e-12 * np.abs(C_first).max()
    solvers = second.patch_problems
    second.destroy()
    assert not solvers._problems
    third = dl.MultiscaleBasis(grids, 1)
    assert third.patch_problems is not solvers
    third.destroy()


def test_default_and_database_options_reach_mumps():
    """The default MUMPS ordering and scaling (ICNTL(7) = 5, METIS; ICNTL(8) = 0, none) are
    applied to the factor, which MUMPS creates at the first set-up; an option in the database
    with the prefix wins; none of the defaults is left in the database."""
    indptr, indices = np.array([0, 2, 4], np.int32), np.array([0, 1, 0, 1], np.int32)
    values = np.array([2.0, -1.0, -1.0, 2.0])
    opts, prefix = PETSc.Options(), patch_solver.PATCH_OPTIONS_PREFIX
    solver = patch_solver.SaddleSolver(indptr, indices, patch_solver.PatchSolverOptions())
    solver.values[:] = values
    assert solver.factorize() is None
    factor = solver.ksp.getPC().getFactorMatrix()
    assert (factor.getMumpsIcntl(7), factor.getMumpsIcntl(8)) == (5, 0)
    assert not opts.hasName(prefix + "mat_mumps_icntl_7")
    assert not opts.hasName(prefix + "mat_mumps_icntl_8")
    solver.destroy()
    opts.setValue(prefix + "mat_mumps_icntl_7", 2)  # AMF
    try:
        solver = patch_solver.SaddleSolver(indptr, indices, patch_solver.PatchSolverOptions())
        solver.values[:] = values
        assert solver.factorize() is None
        assert solver.ksp.getPC().getFactorMatrix().getMumpsIcntl(7) == 2
        solver.destroy()
    finally:
        opts.delValue(prefix + "mat_mumps_icntl_7")
