"""Quasi-interpolation I_H = E_H o Pi_H : V_h -> V_H (Målqvist–Peterseim, Ex. 3.1), d = 2, 3.

Pi_H is the elementwise L2 projection onto Q1(K); E_H averages the elementwise values at each
coarse vertex z over the coarse cells containing z:

    (I_H v)(z) = 1/card{K : z in K} * sum_{K contains z} (Pi_K v)(z).

I_H maps onto the full Q1 space (boundary vertices included), so I_H is a projection and
I_H P = id. The corrector constraint I_H v = 0 is imposed at the coarse vertices that are
coarse dofs: all but those on a Dirichlet side (vertices on a Neumann side are constrained).
Since all coarse cells are translates, Pi_K is one 2^d x prod(r_k + 1) matrix, computed from
the fine mass matrix of one coarse cell that DOLFINx assembles.
"""

from __future__ import annotations

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import numpy.typing as npt
from mpi4py import MPI
from petsc4py import PETSc

from dolfinx_lod.forms import mass_form
from dolfinx_lod.grids import (
    NestedGrids,
    box_keys,
    box_mesh,
    box_points,
    cell_vertex_offsets,
    coo_matrix,
    corner_bits,
    lattice_coordinates,
    lattice_index,
    lattice_keys,
    multilinear_weights,
)
from dolfinx_lod.patches import Configuration, owned_cells


def local_projection(grids: NestedGrids) -> npt.NDArray[np.float64]:
    """Pi_K: fine vertex values on one coarse cell K -> Q1 coefficients of the L2 projection.

    Shape (2^d, prod(r_k + 1)); rows are K's corners (:func:`~dolfinx_lod.grids.corner_bits`
    order), columns the fine vertices of K in local lattice order. Pi_K = (Phi^T M Phi)^{-1}
    Phi^T M, with M the fine mass matrix on K and Phi the coarse Q1 basis at the fine vertices.
    """
    r, d = grids.refinement, grids.dim
    origin = (0.0,) * d
    extent = (origin, tuple(map(float, grids.H)))
    mesh = box_mesh(MPI.COMM_SELF, extent, tuple(map(int, r)), ghost_mode=None)
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    M = dolfinx.fem.assemble_matrix(mass_form(V))
    ij = lattice_index(V.tabulate_dof_coordinates(), origin, grids.h)
    lattice = lattice_keys(ij, r + 1)  # dof -> local lattice index
    Phi = multilinear_weights(ij / r)
    MPhi = np.zeros_like(Phi)  # M @ Phi in dof order (CSR product)
    rows = np.repeat(np.arange(lattice.size), np.diff(M.indptr))
    np.add.at(MPhi, rows, M.data[:, None] * Phi[M.indices])
    Pi_dofs = np.linalg.solve(Phi.T @ MPhi, MPhi.T)
    Pi = np.empty_like(Pi_dofs)
    Pi[:, lattice] = Pi_dofs
    return Pi


def vertex_valence(coarse: int | npt.ArrayLike, dim: int = 2) -> npt.NDArray[np.int64]:
    """card{K in T_H : z in K} for every coarse vertex key z (d = ``dim``; ``coarse`` cells
    per direction, one number or one per direction)."""
    NH = np.broadcast_to(np.asarray(coarse, dtype=np.int64), (dim,))
    index = box_points(NH + 1)
    interior = (index > 0) & (index < NH)
    return np.where(interior, 2, 1).prod(axis=1)


def quasi_interpolation(grids: NestedGrids, Pi: npt.NDArray[np.float64]) -> PETSc.Mat:
    """I_H as a distributed PETSc matrix, rows like V_H, columns like V_h. Collective."""
    r, n, NH, d = grids.refinement, grids.fine_sizes, grids.coarse_sizes, grids.dim
    cells = owned_cells(grids)
    local = box_keys(np.zeros(d, dtype=np.int64), r + 1, n + 1)  # K at the origin
    index = lattice_coordinates(cells, NH, d)
    base = lattice_keys(index * r, n + 1)
    fine_dofs = grids.fine_dof_global((base[:, None] + local[None, :]).ravel())
    fine_dofs = fine_dofs.reshape(cells.size, 1, -1)
    corners = lattice_keys(index, NH + 1)[:, None] + cell_vertex_offsets(NH + 1, d)[None, :]
    values = Pi[None, :, :] / vertex_valence(NH, d)[corners][:, :, None]
    rows = np.broadcast_to(grids.coarse_dof_global[corners][:, :, None], values.shape)
    cols = np.broadcast_to(fine_dofs, values.shape)
    return coo_matrix(
        grids.comm, (grids.V_H, grids.V_h), rows.ravel(), cols.ravel(), values.ravel()
    )


def patch_constraints(
    config: Configuration, r: int | npt.ArrayLike, Pi: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """B = I_H restricted to a patch: dense (m, nv) matrix, m constrained coarse vertices.

    Constrained are the coarse vertices of the closed patch that are not on the Dirichlet part
    of the domain boundary; each row is I_H's row of that vertex, (1 / card{K : z in K})
    sum_K Pi_K, with the valence counted in the whole mesh (a vertex on a Neumann side lies
    in fewer coarse cells). Columns are the patch's fine vertices in local order, with the
    columns of the patch boundary where correctors vanish zeroed (not on a Neumann side).
    ``r``: fine cells per coarse cell, one number or one per direction.
    """
    shape = np.asarray(config.shape)
    d = shape.size
    r = np.broadcast_to(np.asarray(r, dtype=np.int64), (d,))
    fixed = config.constrained_sides()
    # Constrained vertices z (patch coarse-vertex coordinates, x fastest): not on dOmega_D.
    Z = box_points(shape + 1 - fixed.sum(axis=1)) + fixed[:, 0]
    on_domain = np.asarray(config.on_boundary, dtype=bool).reshape(d, 2)
    domain_side = (on_domain[:, 0] & (Z == 0)) | (on_domain[:, 1] & (Z == shape))
    valence = np.where(domain_side, 1, 2).prod(axis=1)
    nv = shape * r + 1
    cell_local = box_keys(np.zeros(d), r + 1, nv)  # fine vertices of cell 0
    B = np.zeros((Z.shape[0], int(nv.prod())))
    rows = np.arange(Z.shape[0])
    for corner, bits in enumerate(corner_bits(d)):
        q = Z - bits  # patch cell having z as this corner
        inside = ((q >= 0) & (q < shape)).all(axis=1)
        cols = lattice_keys(q[inside] * r, nv)[:, None] + cell_local[None, :]
        B[rows[inside, None], cols] += Pi[corner] / valence[inside, None]
    B[:, patch_dirichlet_vertices(nv - 1, config.dirichlet_sides())] = 0.0
    return B


def patch_dirichlet_vertices(
    cells: npt.NDArray[np.int64], sides: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """True for the fine vertices (local order) of a patch of ``cells`` fine cells per
    direction that lie on one of its ``sides`` ((d, 2) mask, (lo, hi) per axis): where the
    correctors vanish when ``sides`` = :meth:`Configuration.dirichlet_sides`."""
    index = box_points(np.asarray(cells) + 1)
    return ((sides[:, 0] & (index == 0)) | (sides[:, 1] & (index == cells))).any(axis=1)
