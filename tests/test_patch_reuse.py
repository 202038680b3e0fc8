"""What a patch problem reuses between coefficients: the element-wise assembly against DOLFINx
forms, and one symbolic factorization per configuration (a basis for a further parameter
refactors numerically only) with the same correctors as a fresh solver."""

import dolfinx.fem
import numpy as np
import pytest
import ufl
from helpers import dense, rough_coefficient
from petsc4py import PETSc

import dolfinx_lod as dl
from dolfinx_lod.grids import unit_box
from dolfinx_lod.patches import make_patch


def _factorizations() -> tuple[int, int]:
    """(symbolic, numeric) Cholesky factorizations logged so far in this process."""
    PETSc.Log.begin()
    return tuple(
        int(PETSc.Log.Event(name).getPerfInfo()["count"])
        for name in ("MatCholFctrSym", "MatCholFctrNum")
    )


@pytest.mark.parametrize(
    "dim, NH, n", [(2, (4, 2), (16, 8)), (3, 2, 4)], ids=["2d-anisotropic", "3d"]
)
def test_cell_assembly_equals_dolfinx_forms(comm, dim, NH, n):
    """S = sum_c a_c K_c and F_j = S_T Lambda_j (element by element) against the DOLFINx
    assembly of int a grad u . grad v and of int_T a grad Lambda_j . grad v."""
    g = dl.create_nested_grids(comm.Split(comm.rank), NH, n, unit_box(dim))
    basis = dl.MultiscaleBasis(g, 1)
    problem = basis.patch_problem(0)
    space = problem.space
    a = np.random.default_rng(1).uniform(0.1, 5.0, space.num_cells)
    F = problem.system(a).F[space.dof_vertex]  # dof order
    expected = dolfinx.fem.assemble_matrix(space.S_form)  # space.a was set by the assembly
    assert np.abs(space.S_full.data - expected.data).max() <= 1e-12 * np.abs(expected.data).max()
    v = ufl.TestFunction(space.V)
    dx = ufl.Measure("dx", domain=space.mesh, subdomain_data=problem.tags)(1)
    for j, hat in enumerate(problem.hats):
        L = dolfinx.fem.form(space.a * ufl.inner(ufl.grad(hat), ufl.grad(v)) * dx)
        F_j = dolfinx.fem.assemble_vector(L).array
        F_j[space.boundary_dofs] = 0.0
        assert np.abs(F[:, j] - F_j).max() <= 1e-12 * np.abs(F_j).max()
    basis.destroy()


def test_further_parameter_refactors_numerically_only(comm):
    """A basis for a second coefficient: no symbolic factorization (one per configuration for
    the first), one numeric factorization per patch, and correctors equal to a fresh basis's
    to 1e-12."""
    g = dl.create_nested_grids(comm.Split(comm.rank), 6, 24)
    A1, A2 = rough_coefficient(24, seed=5), rough_coefficient(24, seed=6)
    symbolic0, numeric0 = _factorizations()
    basis = dl.MultiscaleBasis(g, 1)
    basis.update(A1)
    symbolic1, numeric1 = _factorizations()
    configurations = len(basis.patch_problems._problems)
    assert configurations < len(basis.patches) == 36
    assert symbolic1 - symbolic0 == configurations
    assert numeric1 - numeric0 == len(basis.patches)
    B2 = dense(basis.update(A2))
    symbolic2, numeric2 = _factorizations()
    assert symbolic2 == symbolic1  # values change, the analysis is kept
    assert numeric2 - numeric1 == len(basis.patches)
    with dl.MultiscaleBasis(g, 1, petsc_options_prefix="fresh_patch_") as fresh:
        expected = dense(fresh.update(A2))
        for C, C_fresh in zip(basis.correctors, fresh.correctors, strict=True):
            assert np.abs(C - C_fresh).max() <= 1e-12 * np.abs(C_fresh).max()
    assert np.abs(B2 - expected).max() <= 1e-12 * np.abs(expected).max()
    basis.destroy()


def test_patch_space_matmul_shares_the_assembled_values(comm):
    """S C through the PETSc view equals the dense product after every reassembly."""
    g = dl.create_nested_grids(comm.Split(comm.rank), 4, 16)
    with dl.MultiscaleBasis(g, 1) as basis:
        patch = make_patch(5, 4, 1)
        space = basis.provider.problem(patch.configuration).space
        X = np.random.default_rng(2).standard_normal((space.dof_vertex.size, 3))
        for seed in (0, 1):
            space.assemble_stiffness(np.random.default_rng(seed).uniform(1, 2, space.num_cells))
            S = space.S_full.to_dense()
            assert np.abs(space.matmul(space.S_full, X) - S @ X).max() <= 1e-12 * np.abs(S).max()
