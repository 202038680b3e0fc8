import numpy as np
import pytest
from helpers import dense, rough_coefficient
from petsc4py import PETSc

import dolfinx_lod as dl
from dolfinx_lod.grids import unit_box
from dolfinx_lod.interpolation import patch_constraints, quasi_interpolation
from dolfinx_lod.patches import make_patch

pytestmark = pytest.mark.mpi


@pytest.fixture(
    scope="module",
    params=[(2, 4, 16, ()), (3, 4, 8, ()), (2, (4, 3), (16, 6), ("left", "top"))],
    ids=["2d", "3d", "rectangle-neumann"],
)
def small(comm, request):
    """NH = 4, n = 16 (2D) or 8 (3D), l = 1 on a rough coefficient; and a 4 x 3 / 16 x 6 grid
    of [0, 2] x [0, 1] with Neumann sides left and top."""
    dim, NH, n, neumann = request.param
    domain = ((0.0, 0.0), (2.0, 1.0)) if neumann else unit_box(dim)
    g = dl.create_nested_grids(comm, NH, n, domain, neumann=neumann)
    A = np.random.default_rng(0).uniform(0.01, 1.0, size=g.cell_array_shape)
    basis = dl.MultiscaleBasis(g, 1)
    basis.update(A)
    return g, A, basis


def test_constraint_residual_on_every_patch(small):
    g, _, basis = small
    for patch, C in zip(basis.patches, basis.correctors, strict=True):
        Bp = patch_constraints(patch.configuration, g.refinement, basis.Pi)
        assert C.shape[1] == 2**g.dim
        assert np.abs(Bp @ C).max() <= 1e-10
        assert np.abs(C).max() > 1e-3  # a non-trivial correction


def test_global_quasi_interpolation_of_basis_is_identity(small, comm):
    g, _, basis = small
    IHB = dense(quasi_interpolation(g, basis.Pi).matMult(basis.B))
    interior = ~g.coarse_dirichlet_mask()
    # Coarse dof numbers of the vertices not on a Dirichlet side (global numbering).
    dofs = g.coarse_dof_global[interior]
    block = IHB[np.ix_(dofs, dofs)]
    assert np.abs(block - np.eye(dofs.size)).max() <= 1e-10


def test_correctors_vanish_outside_patches(small):
    g, _, basis = small
    C = dense(basis.P) - dense(basis.B)  # sum_T C_T Lambda_z in column z
    NH = g.coarse_sizes
    fine_global = g.fine_dof_global(np.arange(g.num_fine_vertices))
    inside = np.zeros_like(C, dtype=bool)
    for T in range(int(np.prod(NH))):
        patch = make_patch(T, NH, 1, g.dim, ~g.dirichlet_sides)
        rows = fine_global[patch.fine_vertex_keys(g)]
        cols = g.coarse_dof_global[patch.element_vertex_keys(NH)]
        inside[np.ix_(rows, cols)] = True
    assert np.abs(C[~inside]).max(initial=0.0) == 0.0
    assert np.abs(C[inside]).max() > 1e-3


def test_reassembled_basis_equals_the_first_assembly(small):
    """From its second assembly on B is assembled through a COO plan (summed patch blocks,
    off-process rows communicated by PETSc): it must equal the first, setValues-assembled B."""
    g, A, _ = small
    basis = dl.MultiscaleBasis(g, 1)
    first = dense(basis.update(A))
    basis.update(np.random.default_rng(2).uniform(0.01, 1.0, size=g.cell_array_shape))
    assert basis.num_assemblies == 2
    assert np.abs(dense(basis.B) - first).max() > 1e-3  # it did change
    again = dense(basis.update(A))
    assert np.abs(again - first).max() <= 1e-13 * np.abs(first).max()
    basis.destroy()


def test_patch_solve_matches_dense_kkt(comm):
    """The MUMPS saddle-point solve against numpy on the dense KKT system of one patch, built
    from the patch-problem API (:meth:`PatchProblem.system`), in the patch's vertex order."""
    g = dl.create_nested_grids(comm.Split(comm.rank), 4, 16)
    basis = dl.MultiscaleBasis(g, 1)
    A = rough_coefficient(16, seed=3)
    patch = make_patch(5, 4, 1)  # an interior cell: 3 x 3 patch
    problem = basis.provider.problem(patch.configuration)
    a_patch = A.ravel()[patch.fine_cell_keys(g)]
    system = problem.system(a_patch)
    n = system.F.shape[0]
    S = np.zeros((n, n))
    S[np.repeat(np.arange(n), np.diff(system.crow)), system.cols] = system.S
    assert np.abs(S - S.T).max() <= 1e-13 * np.abs(S).max()
    assert np.allclose(system.hats.sum(axis=1)[system.F.any(axis=1)], 1.0)  # partition of 1
    B = patch_constraints(patch.configuration, g.r, basis.Pi)  # vertex order
    m = B.shape[0]
    KKT = np.block([[S, B.T], [B, np.zeros((m, m))]])
    expected = np.linalg.solve(KKT, np.vstack([system.F, np.zeros((m, 4))]))[:n]
    C = problem.solve(a_patch)
    assert np.abs(C - expected).max() <= 1e-10 * np.abs(expected).max()
    # Another configuration of the same shape assembles into the shared patch space: the
    # first problem's system and solve must still be those of its own coefficient.
    other = basis.provider.problem(make_patch(6, 4, 1).configuration)
    other.system(a_patch[::-1].copy())
    assert np.array_equal(problem.system(a_patch).S, system.S)
    assert np.abs(problem.solve(a_patch) - expected).max() <= 1e-10 * np.abs(expected).max()
    basis.destroy()


def test_patch_options_prefix_and_no_global_options(comm):
    """The patch solvers use the caller's options prefix, take options from the database with
    that prefix, and leave no option of their own in PETSc's global options database."""
    g = dl.create_nested_grids(comm, 4, 16)
    opts = PETSc.Options()
    before = opts.getAll()
    A = rough_coefficient(16, seed=4)
    with dl.MultiscaleBasis(g, 1, petsc_options_prefix="my_patch_") as basis:
        reference = dense(basis.update(A))
        ksp = basis.patch_problem(0).ksp
        assert ksp.getOptionsPrefix() == "my_patch_"
        assert ksp.getPC().getType() == "cholesky"
        assert ksp.getPC().getFactorSolverType() == "mumps"
    assert opts.getAll() == before
    opts["my_patch_pc_type"] = "lu"  # a user's option wins over the default
    try:
        with dl.MultiscaleBasis(g, 1, petsc_options_prefix="my_patch_") as basis:
            again = dense(basis.update(A))
            assert basis.patch_problem(0).ksp.getPC().getType() == "lu"
    finally:
        opts.delValue("my_patch_pc_type")
    assert np.abs(again - reference).max() <= 1e-10 * np.abs(reference).max()
    assert opts.getAll() == before
    with pytest.raises(ValueError, match="petsc_options_prefix must be a non-empty string"):
        dl.MultiscaleBasis(g, 1, petsc_options_prefix="")


def test_exponential_decay_in_layers(comm):
    """||(B_l - B_ideal) e_z||_S / ||B_ideal e_z||_S decays geometrically in l."""
    g = dl.create_nested_grids(comm, 8, 64)
    A = rough_coefficient(64, seed=2)
    fine = dl.FineSystem(g, dl.coefficient_function(g, A))
    z = g.coarse_dof_global[4 * 9 + 4]  # the centre vertex
    columns = {}
    for layers in (1, 2, 3, 8):
        basis = dl.MultiscaleBasis(g, layers)
        B = basis.update(A)
        e = B.createVecRight()
        e.setValue(z, 1.0)
        e.assemble()
        columns[layers] = B.createVecLeft()
        B.mult(e, columns[layers])
        basis.destroy()

    def energy(v):
        w = fine.S.createVecLeft()
        fine.S.mult(v, w)
        return np.sqrt(w.dot(v))

    err = [energy(columns[layers] - columns[8]) / energy(columns[8]) for layers in (1, 2, 3)]
    assert err[0] > err[1] > err[2]
    assert err[1] / err[0] < 0.3 and err[2] / err[1] < 0.3, err
