import dolfinx.mesh
import numpy as np
import pytest
from helpers import dense

import dolfinx_lod as dl
from dolfinx_lod.interpolation import local_projection, quasi_interpolation

pytestmark = pytest.mark.mpi


def test_keys_cover_everything(comm):
    g = dl.create_nested_grids(comm, 3, 12, ((0.0, -1.0), (2.0, 0.5)))
    for keys, total in ((g.fine_cell_keys, 144), (g.fine_dof_keys, 169), (g.coarse_dof_keys, 16)):
        allkeys = np.sort(np.concatenate(comm.allgather(keys)))
        assert np.array_equal(allkeys, np.arange(total))
    assert g.r == 4 and np.allclose(g.H, [2 / 3, 0.5]) and np.allclose(g.h, [1 / 6, 0.125])


def test_3d_keys_cover_everything(comm):
    g = dl.create_nested_grids(comm, 2, 6, ((0.0, 0.0, 0.0), (2.0, 1.0, 3.0)))
    assert g.dim == 3 and g.r == 3 and np.allclose(g.h, [1 / 3, 1 / 6, 0.5])
    for keys, total in ((g.fine_cell_keys, 216), (g.fine_dof_keys, 343), (g.coarse_dof_keys, 27)):
        assert np.array_equal(np.sort(np.concatenate(comm.allgather(keys))), np.arange(total))


@pytest.mark.parametrize(
    "NH, n, domain, f",
    [  # a multilinear function is in V_H; P must reproduce it at the fine vertices
        (4, 16, ((0.0, 0.0), (2.0, 1.0)), lambda x: x[0] * x[1] + 2 * x[0] - x[1]),
        (
            2,
            6,
            ((0.0, 0.0, 0.0), (2.0, 1.0, 3.0)),
            lambda x: x[0] * x[1] * x[2] - 2 * x[0] * x[2] + x[1] + 1,
        ),
    ],
)
def test_prolongation_interpolates_coarse_functions(comm, NH, n, domain, f):
    g = dl.create_nested_grids(comm, NH, n, domain)
    P = g.prolongation()
    uH = dolfinx.fem.Function(g.V_H)
    uH.interpolate(f)
    uh = dolfinx.fem.Function(g.V_h)
    P.mult(uH.x.petsc_vec, uh.x.petsc_vec)
    x = g.V_h.tabulate_dof_coordinates()[: g.V_h.dofmap.index_map.size_local]
    assert np.allclose(uh.x.array[: x.shape[0]], f(x.T), atol=1e-13)


@pytest.mark.parametrize("dim, NH, n", [(2, 4, 24), (3, 2, 6)])
def test_quasi_interpolation_is_projection(comm, dim, NH, n):
    g = dl.create_nested_grids(comm, NH, n, dl.grids.unit_box(dim))
    Pi = local_projection(g)
    # Pi_K reproduces Q1 on K: Pi_K Phi = I.
    s = dl.grids.box_points((g.r + 1,) * dim) / g.r
    assert np.allclose(Pi @ dl.grids.multilinear_weights(s), np.eye(2**dim), atol=1e-12)
    IH, P = quasi_interpolation(g, Pi), g.prolongation()
    IHP = dense(IH.matMult(P))
    assert np.abs(IHP - np.eye((NH + 1) ** dim)).max() < 1e-12
    # Row sums of I_H are 1 (constants are reproduced).
    assert np.allclose(dense(IH).sum(axis=1), 1.0)


def test_user_mesh_is_wrapped(comm):
    mesh = dolfinx.mesh.create_rectangle(
        comm, ((1.0, 1.0), (3.0, 2.0)), (12, 12), dolfinx.mesh.CellType.quadrilateral
    )
    g = dl.nested_grids_from_mesh(mesh, 3)
    assert g.fine == 12 and g.r == 4 and g.domain == ((1.0, 1.0), (3.0, 2.0))
    assert g.fine_mesh is mesh


def test_bad_grids_raise_everywhere(comm):
    with pytest.raises(ValueError, match=r"NH \(5\) must divide .* n \(12\)"):
        dl.create_nested_grids(comm, 5, 12)
    with pytest.raises(ValueError, match="coarse cells per direction"):
        dl.create_nested_grids(comm, 0, 12)
    with pytest.raises(ValueError, match="domain"):
        dl.create_nested_grids(comm, 2, 4, ((0.0, 0.0), (0.0, 1.0)))
    tri = dolfinx.mesh.create_unit_square(comm, 4, 4)
    with pytest.raises(ValueError, match="quadrilateral"):
        dl.nested_grids_from_mesh(tri, 2)


def test_rectangular_grids(comm):
    """N_x x N_y coarse and n_x x n_y fine cells (r differs between directions here)."""
    g = dl.create_nested_grids(comm, (4, 2), (16, 12), ((0.0, 0.0), (2.0, 1.0)))
    assert g.coarse_cells == (4, 2) and g.fine_cells == (16, 12)
    assert list(g.refinement) == [4, 6] and np.allclose(g.h, [0.125, 1 / 12])
    assert g.cell_array_shape == (12, 16) and g.vertex_array_shape == (13, 17)
    for keys, total in ((g.fine_cell_keys, 192), (g.fine_dof_keys, 221), (g.coarse_dof_keys, 15)):
        assert np.array_equal(np.sort(np.concatenate(comm.allgather(keys))), np.arange(total))
    x = g.V_h.tabulate_dof_coordinates()[: g.fine_dof_keys.size]
    assert np.allclose(x[:, 0], (g.fine_dof_keys % 17) * 0.125)  # keys: x fastest
    for name in ("coarse", "fine", "r"):
        with pytest.raises(ValueError, match="differ between directions"):
            getattr(g, name)
    P = g.prolongation()  # reproduces a bilinear function at the fine vertices
    uH = dolfinx.fem.Function(g.V_H)
    uH.interpolate(lambda x: 1 + x[0] * x[1] - 2 * x[1])
    uh = dolfinx.fem.Function(g.V_h)
    P.mult(uH.x.petsc_vec, uh.x.petsc_vec)
    assert np.allclose(uh.x.array[: x.shape[0]], 1 + x[:, 0] * x[:, 1] - 2 * x[:, 1])
    mesh = dolfinx.mesh.create_rectangle(
        comm, ((0.0, 0.0), (2.0, 1.0)), (24, 12), dolfinx.mesh.CellType.quadrilateral
    )
    w = dl.nested_grids_from_mesh(mesh, (6, 3), neumann="top")
    assert (w.fine_cells, w.coarse_cells, w.neumann) == ((24, 12), (6, 3), ("top",))


@pytest.mark.parametrize(
    "coarse, fine, message",
    [
        ((3, 2), (16, 8), r"coarse cells in direction x NH \(3\) must divide fine cells in "),
        ((4, 3), (16, 8), r"in direction y NH \(3\) must divide .* n \(8\); allowed: NH in"),
        ((4, 2, 1), (16, 8), r"coarse cells per direction NH must be .* tuple of 2 integers"),
        ((4, 0), (16, 8), r"coarse cells per direction NH must be an integer >= 1"),
        (4, (16, 8.0), r"fine cells per direction n must be"),
    ],
)
def test_bad_counts_per_direction_raise_everywhere(comm, coarse, fine, message):
    with pytest.raises(ValueError, match=message):
        dl.create_nested_grids(comm, coarse, fine, ((0.0, 0.0), (2.0, 1.0)))
