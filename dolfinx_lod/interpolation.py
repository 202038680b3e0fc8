"""Quasi-interpolation I_H = E_H o Pi_H : V_h -> V_H (Målqvist–Peterseim, Ex. 3.1).

Pi_H is the elementwise L2 projection onto Q1(K); E_H averages the elementwise values at each
coarse vertex z over the coarse cells containing z:

    (I_H v)(z) = 1/card{K : z in K} * sum_{K contains z} (Pi_K v)(z).

I_H maps onto the full Q1 space (boundary vertices included), so I_H is a projection and
I_H P = id. The corrector constraint I_H v = 0 is imposed at the interior coarse vertices.
Since all coarse cells are translates, Pi_K is one 4 x (r+1)^2 matrix, computed from the fine
mass matrix of one coarse cell that DOLFINx assembles.
"""

from __future__ import annotations

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import numpy.typing as npt
from mpi4py import MPI
from petsc4py import PETSc

from dolfinx_lod.forms import mass_form
from dolfinx_lod.grids import NestedGrids, bilinear_weights, coo_matrix, lattice_index
from dolfinx_lod.patches import Configuration, owned_cells


def local_projection(grids: NestedGrids) -> npt.NDArray[np.float64]:
    """Pi_K: fine vertex values on one coarse cell K -> Q1 coefficients of the L2 projection.

    Shape (4, (r+1)^2); rows are K's corners (0,0), (1,0), (0,1), (1,1), columns the fine
    vertices of K in local lattice order. Pi_K = (Phi^T M Phi)^{-1} Phi^T M, with M the fine
    mass matrix on K and Phi the coarse Q1 basis at the fine vertices.
    """
    r = grids.r
    mesh = dolfinx.mesh.create_rectangle(
        MPI.COMM_SELF, ((0.0, 0.0), tuple(grids.H)), (r, r), dolfinx.mesh.CellType.quadrilateral
    )
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    M = dolfinx.fem.assemble_matrix(mass_form(V))
    ij = lattice_index(V.tabulate_dof_coordinates(), (0.0, 0.0), grids.h)
    lattice = ij[:, 1] * (r + 1) + ij[:, 0]  # dof -> local lattice index
    Phi = np.empty((lattice.size, 4))
    Phi[:] = bilinear_weights(ij / r)
    MPhi = np.zeros_like(Phi)  # M @ Phi in dof order (CSR product)
    rows = np.repeat(np.arange(lattice.size), np.diff(M.indptr))
    np.add.at(MPhi, rows, M.data[:, None] * Phi[M.indices])
    Pi_dofs = np.linalg.solve(Phi.T @ MPhi, MPhi.T)
    Pi = np.empty_like(Pi_dofs)
    Pi[:, lattice] = Pi_dofs
    return Pi


def vertex_valence(coarse: int) -> npt.NDArray[np.int64]:
    """card{K in T_H : z in K} for every coarse vertex key z."""
    count_1d = np.full(coarse + 1, 2, dtype=np.int64)
    count_1d[[0, -1]] = 1
    return np.outer(count_1d, count_1d).ravel()


def quasi_interpolation(grids: NestedGrids, Pi: npt.NDArray[np.float64]) -> PETSc.Mat:
    """I_H as a distributed PETSc matrix, rows like V_H, columns like V_h. Collective."""
    r, n, NH = grids.r, grids.fine, grids.coarse
    cells = owned_cells(grids)
    b = np.arange(r + 1)
    local = (b[:, None] * (n + 1) + b[None, :]).ravel()  # fine vertices of K at (0, 0)
    base = (cells // NH) * r * (n + 1) + (cells % NH) * r
    fine_dofs = grids.fine_dof_global((base[:, None] + local[None, :]).ravel())
    fine_dofs = fine_dofs.reshape(cells.size, 1, -1)
    corners = (cells // NH) * (NH + 1) + cells % NH
    corners = corners[:, None] + np.array([0, 1, NH + 1, NH + 2])[None, :]
    values = Pi[None, :, :] / vertex_valence(NH)[corners][:, :, None]
    rows = np.broadcast_to(grids.coarse_dof_global[corners][:, :, None], values.shape)
    cols = np.broadcast_to(fine_dofs, values.shape)
    return coo_matrix(
        grids.comm, (grids.V_H, grids.V_h), rows.ravel(), cols.ravel(), values.ravel()
    )


def patch_constraints(
    config: Configuration, r: int, Pi: npt.NDArray[np.float64], valence: int = 4
) -> npt.NDArray[np.float64]:
    """B = I_H restricted to a patch: dense (m, nv) matrix, m constrained coarse vertices.

    Constrained are the coarse vertices of the closed patch that are not on the domain
    boundary (all have ``valence`` 4 coarse cells); columns are the patch's fine vertices in
    local order, with the columns of the patch boundary (where correctors vanish) zeroed.
    """
    wx, wy = config.shape
    left, right, bottom, top = config.on_boundary
    Zx = np.arange(1 if left else 0, wx if right else wx + 1)
    Zy = np.arange(1 if bottom else 0, wy if top else wy + 1)
    nvx = wx * r + 1
    b = np.arange(r + 1)
    cell_local = (b[:, None] * nvx + b[None, :]).ravel()  # fine vertices of cell (0, 0)
    B = np.zeros((Zx.size * Zy.size, nvx * (wy * r + 1)))
    for k, (zy, zx) in enumerate((zy, zx) for zy in Zy for zx in Zx):
        for corner, (dx, dy) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
            qx, qy = zx - dx, zy - dy  # patch cell having z as this corner
            if 0 <= qx < wx and 0 <= qy < wy:
                B[k, qy * r * nvx + qx * r + cell_local] += Pi[corner] / valence
    boundary = np.ones((wy * r + 1, nvx), dtype=bool)
    boundary[1:-1, 1:-1] = False
    B[:, boundary.ravel()] = 0.0
    return B
