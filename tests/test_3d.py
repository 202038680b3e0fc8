"""3D (hexahedral) LOD: decay in l, rank invariance, a wrapped hexahedral mesh, bad input, and
an independent dense numpy LOD (constraints and I_H B = id: test_correctors.py, d = 2, 3)."""

import itertools

import dolfinx.mesh
import numpy as np
import pytest
from helpers import rough_coefficient
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.grids import UNIT_CUBE, lattice_keys
from dolfinx_lod.io import gather_vertex_array
from dolfinx_lod.parallel import InputError
from dolfinx_lod.patches import make_patch

pytestmark = pytest.mark.mpi


def test_exponential_decay_in_layers_3d():
    """||(B_l - B_ideal) e_z||_S / ||B_ideal e_z||_S for the centre vertex z decays in l: the
    column of z sums the correctors of the 8 cells at z (rank-local patch solves)."""
    g = dl.create_nested_grids(MPI.COMM_SELF, 6, 12, UNIT_CUBE)
    A = rough_coefficient(12, seed=2, dim=3).ravel()
    basis = dl.MultiscaleBasis(g, 1)
    provider = basis.patch_problems
    cells = [
        lattice_keys(np.array([[x, y, z]]), 6)[0] for z, y, x in itertools.product((2, 3), repeat=3)
    ]
    z_key = lattice_keys(np.array([[3, 3, 3]]), 7)[0]
    columns = {}
    for layers in (1, 2, 3):  # l = 3: the patches of the cells at z are the whole domain
        column = np.zeros(13**3)
        for T in cells:
            patch = make_patch(int(T), 6, layers, 3)
            corner = list(patch.element_vertex_keys(6)).index(z_key)
            C = provider.correctors([patch], [A[patch.fine_cell_keys(g)]])[0]
            column[patch.fine_vertex_keys(g)] -= C[:, corner]
        columns[layers] = column
    whole = provider.problem(make_patch(int(cells[0]), 6, 3, 3).configuration).space
    S = whole.S_full.to_dense()[np.ix_(np.argsort(whole.dof_vertex), np.argsort(whole.dof_vertex))]

    def energy(v):
        return np.sqrt(v @ S @ v)

    rows = g.fine_dof_global(np.arange(13**3)).astype(np.int32)
    hat = basis.P.getValues(rows, [int(g.coarse_dof_global[z_key])])[:, 0]
    ideal = hat + columns[3]
    err = [energy(columns[layers] - columns[3]) / energy(ideal) for layers in (1, 2)]
    assert err[0] > 1e-2 and err[1] / err[0] < 0.3, err
    basis.destroy()


def test_3d_rank_invariance(comm):
    """COMM_SELF and COMM_WORLD (1 and comm.size ranks) give the same solution to 1e-10."""
    A = rough_coefficient(8, seed=5, dim=3)
    out = []
    for c in (MPI.COMM_SELF, comm):
        g = dl.create_nested_grids(c, 4, 8, UNIT_CUBE)
        for method in dl.lod.METHODS:
            sol = dl.solve_elliptic(g, A, 1, method=method)
            out.append(comm.bcast(gather_vertex_array(g, sol.u_ms), root=0))
            sol.destroy()
    assert out[0].shape == (9, 9, 9) and np.abs(out[0]).max() > 1e-3
    assert np.abs(out[0] - out[2]).max() <= 1e-10
    assert np.abs(out[1] - out[3]).max() <= 1e-10


def test_user_hex_mesh_is_wrapped(comm):
    mesh = dolfinx.mesh.create_box(
        comm, ((0.0, 0.0, 0.0), (2.0, 1.0, 1.0)), (4, 4, 4), dolfinx.mesh.CellType.hexahedron
    )
    g = dl.nested_grids_from_mesh(mesh, 2)
    assert (g.dim, g.fine, g.r) == (3, 4, 2) and g.fine_mesh is mesh
    assert g.domain == ((0.0, 0.0, 0.0), (2.0, 1.0, 1.0))
    tet = dolfinx.mesh.create_unit_cube(comm, 2, 2, 2)
    with pytest.raises(ValueError, match="quadrilateral or hexahedral"):
        dl.nested_grids_from_mesh(tet, 1)


def test_bad_3d_input_raises_on_every_rank(comm):
    with pytest.raises(ValueError, match=r"NH \(3\) must divide .* n \(8\)"):
        dl.create_nested_grids(comm, 3, 8, UNIT_CUBE)
    with pytest.raises(ValueError, match="domain"):
        dl.create_nested_grids(comm, 2, 4, ((0.0, 0.0, 0.0), (1.0, 0.0, 1.0)))
    g = dl.create_nested_grids(comm, 2, 4, UNIT_CUBE)
    expected = r"shape \(n_z, n_y, n_x\) = \(4, 4, 4\) \(fine cells\); got \(4, 4, 5\)"
    with pytest.raises(InputError, match=expected):
        dl.solve_elliptic(g, np.ones((4, 4, 5)), 1)
    with pytest.raises(InputError, match=r"= \(4, 4, 4\) \(fine cells\); got \(6, 6, 6\)"):
        dl.solve_elliptic(g, np.ones((6, 6, 6)), 1)
    with pytest.raises(InputError, match=r"3D of shape \(n_z, n_y, n_x\); got shape \(4, 4\)"):
        dl.solve_elliptic(g, np.ones((4, 4)), 1)


# An independent LOD in dense numpy (no DOLFINx): Q1 hexahedra on the unit cube, x fastest.


def _q1_element(h: float) -> tuple[np.ndarray, np.ndarray]:
    """Element stiffness and mass of a trilinear cube of side h (vertex order x fastest)."""
    k = np.array([[1.0, -1.0], [-1.0, 1.0]]) / h
    m = np.array([[2.0, 1.0], [1.0, 2.0]]) * h / 6
    stiff = np.kron(m, np.kron(m, k)) + np.kron(m, np.kron(k, m)) + np.kron(k, np.kron(m, m))
    return stiff, np.kron(m, np.kron(m, m))


def _cells(n: int):
    """(cell index (iz, iy, ix), its 8 vertex numbers x fastest) on an n^3 grid."""
    for iz, iy, ix in itertools.product(range(n), repeat=3):
        yield (
            (iz, iy, ix),
            [
                (iz + bz) * (n + 1) ** 2 + (iy + by) * (n + 1) + ix + bx
                for bz, by, bx in itertools.product((0, 1), repeat=3)
            ],
        )


def numpy_lod(A: np.ndarray, NH: int, layers: int) -> np.ndarray:
    """u_ms = B U (Galerkin, f = 1) on the fine vertices, shape (n+1,)^3, by dense algebra."""
    n = A.shape[0]
    r, h, N = n // NH, 1.0 / n, (n + 1) ** 3
    Ke, Me = _q1_element(h)
    S, M = np.zeros((N, N)), np.zeros((N, N))
    Scell = {}
    for c, v in _cells(n):
        S[np.ix_(v, v)] += A[c] * Ke
        M[np.ix_(v, v)] += Me
        Scell[c] = v
    X = np.array(list(itertools.product(range(n + 1), repeat=3)))[:, ::-1] * h  # (x, y, z)
    NC = (NH + 1) ** 3
    Z = np.array(list(itertools.product(range(NH + 1), repeat=3)))[:, ::-1] / NH
    hat = np.prod(np.maximum(0, 1 - np.abs(X[:, None, :] - Z[None]) * NH), axis=2)  # P (N, NC)
    # I_H: elementwise L2 projection, averaged at the coarse vertices.
    IH = np.zeros((NC, N))
    valence = np.zeros(NC)
    for (Kz, Ky, Kx), corners in _cells(NH):
        fine = [v for c, v in Scell.items() if (c[0] // r, c[1] // r, c[2] // r) == (Kz, Ky, Kx)]
        dofs = np.unique(np.concatenate(fine))
        MK = np.zeros((N, N))
        for v in fine:
            MK[np.ix_(v, v)] += Me
        MK = MK[np.ix_(dofs, dofs)]
        Phi = hat[np.ix_(dofs, corners)]
        IH[np.ix_(corners, dofs)] += np.linalg.solve(Phi.T @ MK @ Phi, Phi.T @ MK)
        valence[corners] += 1
    IH /= valence[:, None]
    coords_c = np.rint(Z * NH).astype(int)
    interior_c = ((coords_c > 0) & (coords_c < NH)).all(axis=1)
    coords_f = np.rint(X * n).astype(int)
    B = hat.copy()
    for (Kz, Ky, Kx), corners in _cells(NH):
        lo = np.maximum(np.array([Kx, Ky, Kz]) - layers, 0) * r
        hi = np.minimum(np.array([Kx, Ky, Kz]) + layers + 1, NH) * r
        inside = ((coords_f > lo) & (coords_f < hi)).all(axis=1)  # patch-interior vertices
        closed = ((coords_c * r >= lo) & (coords_c * r <= hi)).all(axis=1)
        p = np.flatnonzero(inside)
        rows = np.flatnonzero(closed & interior_c)
        ST = np.zeros((N, N))  # a-stiffness on T only
        for c, v in Scell.items():
            if (c[0] // r, c[1] // r, c[2] // r) == (Kz, Ky, Kx):
                ST[np.ix_(v, v)] += A[c] * Ke
        Bc = IH[np.ix_(rows, p)]
        m = rows.size
        KKT = np.block([[S[np.ix_(p, p)], Bc.T], [Bc, np.zeros((m, m))]])
        F = ST[p] @ hat[:, corners]
        C = np.linalg.solve(KKT, np.vstack([F, np.zeros((m, len(corners)))]))[: p.size]
        B[np.ix_(p, corners)] -= C * interior_c[corners][None, :]
    fine_interior = ((coords_f > 0) & (coords_f < n)).all(axis=1)
    Bi = B[np.ix_(fine_interior, interior_c)]
    Si = S[np.ix_(fine_interior, fine_interior)]
    load = (M @ np.ones(N))[fine_interior]
    U = np.linalg.solve(Bi.T @ Si @ Bi, Bi.T @ load)
    u = np.zeros(N)
    u[fine_interior] = Bi @ U
    return u.reshape(n + 1, n + 1, n + 1)


def test_3d_lod_equals_independent_numpy_lod(comm):
    A = rough_coefficient(6, seed=7, dim=3)
    g = dl.create_nested_grids(comm, 3, 6, UNIT_CUBE)
    sol = dl.solve_elliptic(g, A, 1)
    u = comm.bcast(gather_vertex_array(g, sol.u_ms), root=0)
    expected = numpy_lod(A, 3, 1)
    assert np.abs(expected).max() > 1e-3
    assert np.abs(u - expected).max() <= 1e-6 * np.abs(expected).max()
    sol.destroy()
