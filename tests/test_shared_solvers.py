"""Many bases alive at once: the patch solvers (DOLFINx patch meshes, MUMPS factorizations),
which hold duplicated MPI communicators, exist once per grids, not once per basis. Three
bases with l = 2 on 8 x 8 coarse cells used to exhaust MPICH's 2048 communicators, and MUMPS
then corrupted the heap (``free(): invalid pointer``): that case runs in a subprocess, so
that a crash fails the test instead of ending pytest."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dolfinx_lod as dl
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


def test_four_bases_alive_on_one_grid():
    """Four bases with solved patches, none destroyed, in one process: the run ends and the
    bases of a and 4a agree (before: heap corruption at the third)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(
        [sys.executable, "-c", MANY_BASES], capture_output=True, text=True, timeout=300, env=env
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert float(res.stdout.split()[-1]) <= 1e-10


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
