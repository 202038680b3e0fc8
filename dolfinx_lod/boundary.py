"""Non-homogeneous boundary data done the multiscale way: Dirichlet values g on the Dirichlet
sides, fluxes q = a grad u . n on chosen Neumann sides.

Dirichlet data is split into a coarse and a fine part. The coarse part G (g at the coarse
boundary vertices) is carried by the multiscale basis itself: its lifting B G is
a-orthogonal to the fine-scale space W = ker I_H up to the localization, so it adds no error
the homogeneous problem does not have. The fine remainder r_h = g_h - (P G) on the fine
boundary vertices (zero at the coarse vertices, O(H^2 |g''|) for smooth g) is lifted by the
fine boundary layer of one cell. The LOD solves for u_0 = u - L with L = B G + r_h:

    test^T S B U_0 = test^T (F - S L),   u_ms = B U_0 + L,

with U_0 = 0 at the boundary coarse vertices, so that u_ms = g at every fine boundary vertex.
A fine lifting of the whole of g (the "naive" lifting F - S g_h) puts g's coarse part into the
right-hand side as a functional of h-scale support that the coarse test space cannot resolve:
docs/boundary.md compares the two (measured).

Fluxes enter the load as int_side q v ds (q interpolated into Q1 on T_h, exact for numbers).
All functions are collective; bad data raises ``InputError`` on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dolfinx.fem
import dolfinx.fem.petsc
import dolfinx.mesh
import numpy as np
import numpy.typing as npt
import ufl
from petsc4py import PETSc

from dolfinx_lod.grids import SIDES, NestedGrids, lattice_coordinates, lattice_keys
from dolfinx_lod.inputs import vertex_function
from dolfinx_lod.parallel import InputError, NumericalError, collective, fetch, validate


def check_flux_sides(grids: NestedGrids, flux: Any) -> None:
    """Raise ``InputError`` unless ``flux`` maps Neumann sides of ``grids`` to data."""
    if not isinstance(flux, dict):
        raise InputError(f"flux must be a dict side -> value; got {type(flux).__name__}")
    sides = SIDES[: 2 * grids.dim]
    for side in flux:
        if side not in sides:
            raise InputError(f"flux side {side!r} is not one of {sides}")
        if side not in grids.neumann:
            raise InputError(
                f"flux on side {side!r}, which is a Dirichlet side; fluxes go on Neumann sides "
                f"(grids.neumann = {grids.neumann}); Dirichlet values go in `dirichlet`"
            )


def side_tags(grids: NestedGrids) -> dolfinx.mesh.MeshTags:
    """Boundary facets of T_h tagged with their side's index in :data:`SIDES` (+ 1)."""
    mesh, d = grids.fine_mesh, grids.dim
    lo, hi = grids.origin, grids.origin + grids.extent
    tol = 1e-10 * float(grids.extent.max())
    facets, values = [], []
    for index in range(2 * d):
        axis, at = index // 2, (lo, hi)[index % 2][index // 2]
        found = dolfinx.mesh.locate_entities_boundary(
            mesh, d - 1, lambda x, k=axis, c=at: np.isclose(x[k], c, rtol=0.0, atol=tol)
        )
        facets.append(found)
        values.append(np.full(found.size, index + 1, dtype=np.int32))
    facets_all, order = np.unique(np.concatenate(facets), return_index=True)
    return dolfinx.mesh.meshtags(mesh, d - 1, facets_all, np.concatenate(values)[order])


@dataclass
class BoundaryData:
    """Normalised boundary data: ``g`` (Q1 Function on T_h, or None for g = 0) and the flux
    load ``flux_form`` (int_side q v ds summed over the flux sides, or None). Build it with
    :meth:`create`."""

    grids: NestedGrids
    g: dolfinx.fem.Function | None = None
    flux_form: ufl.Form | None = None

    @classmethod
    def create(cls, grids: NestedGrids, dirichlet: Any = None, flux: Any = None) -> BoundaryData:
        """Validate and normalise ``dirichlet`` (g: any form of :func:`vertex_function`) and
        ``flux`` ({side: q}). Collective."""
        g = None if dirichlet is None else vertex_function(grids, dirichlet, "dirichlet g")
        form = None
        if flux:
            validate(grids.comm, lambda: check_flux_sides(grids, flux))
            ds = ufl.Measure("ds", domain=grids.fine_mesh, subdomain_data=side_tags(grids))
            v = ufl.TestFunction(grids.V_h)
            for side, q in flux.items():
                q_h = vertex_function(grids, q, f"flux on {side}")
                term = q_h * v * ds(SIDES.index(side) + 1)
                form = term if form is None else form + term
        return cls(grids, g, form)

    @property
    def active(self) -> bool:
        """True unless g = 0 and there is no flux."""
        return self.g is not None or self.flux_form is not None

    def lifted_load(
        self,
        F: PETSc.Vec,
        a: dolfinx.fem.Function,
        bc: dolfinx.fem.DirichletBC,
        L: PETSc.Vec | None,
    ) -> PETSc.Vec:
        """F - S L for a lifting L (S unconstrained, Dirichlet rows 0; F for L = None): a new
        vector."""
        out = F.copy()
        if L is not None:
            SL = action(self.grids, a, L, bc)
            out.axpy(-1.0, SL)
            SL.destroy()
        return out

    def dirichlet_vector(self) -> PETSc.Vec:
        """g_D: g at the fine Dirichlet vertices, 0 elsewhere (a fine PETSc vector)."""
        mask = owned_mask(self.grids)
        out = dolfinx.fem.petsc.create_vector(self.grids.V_h)
        values = self.g.x.array[: mask.size] if self.g is not None else 0.0
        out.array[:] = np.where(mask, values, 0.0)
        return out

    def coarse_values(self, P: PETSc.Mat) -> PETSc.Vec:
        """G: g at the coarse Dirichlet vertices, 0 elsewhere (a coarse vector like P's
        columns)."""
        g = self.grids
        d = g.dim
        J = lattice_coordinates(g.coarse_dof_keys, g.coarse_sizes + 1, d)
        fine_keys = lattice_keys(J * g.refinement, g.fine_sizes + 1)
        nowned = g.fine_dof_keys.size
        owned = self.g.x.array[:nowned] if self.g is not None else np.zeros(nowned)
        values = fetch(g.comm, g.num_fine_vertices, g.fine_dof_keys, owned, fine_keys)
        mask = g.coarse_dirichlet_mask()[g.coarse_dof_keys]
        G = P.createVecRight()
        G.array[:] = np.where(mask, values, 0.0)
        return G

    def lifting(
        self,
        P: PETSc.Mat,
        basis: Any = None,
        a: dolfinx.fem.Function | None = None,
        bc: dolfinx.fem.DirichletBC | None = None,
    ) -> PETSc.Vec:
        """The lifting L of the boundary data. With a ``basis`` (the LOD):
        L = (1 - Q) P G + r_h + Q R, R = F_q - S r_h (the flux load and the remainder's
        functional, Dirichlet rows 0) corrected by :func:`boundary_correctors`; without
        (the plain coarse FEM): L = P G + r_h. r_h = g_D - P G on the fine Dirichlet vertices.
        Collective."""
        G, gD = self.coarse_values(P), self.dirichlet_vector()
        PG = P.createVecLeft()
        P.mult(G, PG)
        r = gD.copy()
        r.array[:] = np.where(owned_mask(self.grids), gD.array - PG.array, 0.0)
        if basis is None:
            L = PG.copy()
        else:
            L = basis.boundary_lifting(G)
            R = action(self.grids, a, r, bc)
            R.scale(-1.0)
            if self.flux_form is not None:
                Fq = dolfinx.fem.petsc.assemble_vector(dolfinx.fem.form(self.flux_form))
                Fq.ghostUpdate(PETSc.InsertMode.ADD, PETSc.ScatterMode.REVERSE)
                dolfinx.fem.petsc.set_bc(Fq, [bc])
                R.axpy(1.0, Fq)
                Fq.destroy()
            QR = boundary_correctors(basis, a, R)
            L.axpy(1.0, QR)
            for obj in (R, QR):
                obj.destroy()
        L.axpy(1.0, r)
        for obj in (G, gD, PG, r):
            obj.destroy()
        return L


def element_weights(grids: NestedGrids, keys: npt.NDArray[np.int64], cell: int) -> npt.NDArray:
    """w_T at fine vertices (keys): 1 / (number of coarse cells containing the vertex) for
    vertices in the closure of coarse cell T = ``cell``, 0 elsewhere (sum_T w_T = 1)."""
    d, r, n = grids.dim, grids.refinement, grids.fine_sizes
    j = lattice_coordinates(keys, n + 1, d)
    T = lattice_coordinates(np.array([cell]), grids.coarse_sizes, d)[0]
    inside = np.all((j >= T * r) & (j <= (T + 1) * r), axis=1)
    shared = (j % r == 0) & (j > 0) & (j < n)
    return np.where(inside, 1.0 / np.prod(1 + shared, axis=1), 0.0)


def boundary_correctors(basis: Any, a: dolfinx.fem.Function, R: PETSc.Vec) -> PETSc.Vec:
    """Q R = sum_T Q_T(w_T R): the fine-scale correctors of a load vector R supported next to
    the boundary (fluxes, the Dirichlet remainder), one patch solve per coarse cell T where
    w_T R != 0 (:meth:`~dolfinx_lod.patch_problem.PatchProblem.solve_load`), with the classical
    patch problems of ``basis`` (a :class:`~dolfinx_lod.basis.MultiscaleBasis`). Collective."""
    g = basis.grids
    a_patches = basis.patch_coefficients(a)
    keys = [patch.fine_vertex_keys(g) for patch in basis.patches]
    flat = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    values = fetch(g.comm, g.num_fine_vertices, g.fine_dof_keys, R.getArray(readonly=True), flat)
    Q = R.duplicate()
    Q.zeroEntries()
    offsets = np.cumsum([0] + [k.size for k in keys])
    with collective(g.comm, NumericalError):
        for i, patch in enumerate(basis.patches):
            load = values[offsets[i] : offsets[i + 1]] * element_weights(g, keys[i], patch.cell)
            if np.any(load != 0.0):
                problem = basis.patch_problems.problem(patch.configuration)
                q = problem.solve_load(a_patches[i], load)
                Q.setValues(basis.fine_rows[i], q, PETSc.InsertMode.ADD)
    Q.assemble()
    return Q


def action(
    grids: NestedGrids, a: dolfinx.fem.Function, w: PETSc.Vec, bc: dolfinx.fem.DirichletBC
) -> PETSc.Vec:
    """S w with the unconstrained stiffness (int a grad w . grad v), Dirichlet rows zero."""
    w_fun = dolfinx.fem.Function(grids.V_h)
    w_fun.x.petsc_vec.array[:] = w.array
    w_fun.x.scatter_forward()
    v = ufl.TestFunction(grids.V_h)
    form = dolfinx.fem.form(a * ufl.inner(ufl.grad(w_fun), ufl.grad(v)) * ufl.dx)
    out = dolfinx.fem.petsc.assemble_vector(form)
    out.ghostUpdate(PETSc.InsertMode.ADD, PETSc.ScatterMode.REVERSE)
    dolfinx.fem.petsc.set_bc(out, [bc])
    return out


def owned_mask(grids: NestedGrids) -> npt.NDArray[np.bool_]:
    """True for the owned fine dofs on a Dirichlet side."""
    return grids.dirichlet_vertex_mask(grids.fine_sizes)[grids.fine_dof_keys]


class LiftedLoad:
    """Boundary data in the time loop: u^m = w^m + L_m, the stepper advances w with the load
    F_m - S_m L_m - Mc (L_m - L_{m-1}) / tau (backward Euler for u), L_m the LOD lifting of
    :meth:`BoundaryData.lifting` for the step's coefficient (recomputed when the basis
    changed). ``L`` and ``F`` are the current lifting and load. Collective methods."""

    def __init__(self, data: BoundaryData, bc: dolfinx.fem.DirichletBC, tau: float):
        self.data, self.bc, self.tau = data, bc, tau
        self.L: PETSc.Vec | None = None
        self.F: PETSc.Vec | None = None
        self._SL: PETSc.Vec | None = None

    def update(
        self, basis: Any, a: dolfinx.fem.Function, F: PETSc.Vec, Mc: PETSc.Mat, changed: bool
    ) -> PETSc.Vec:
        """The load of this step for the source load F; ``changed``: the basis or a changed."""
        if self.F is None:
            self.F = F.duplicate()
        F.copy(self.F)
        if changed or self.L is None:
            L = self.data.lifting(basis.P, basis, a, self.bc)
            if self.L is not None:
                self.L.aypx(-1.0, L)  # L_m - L_{m-1}
                work = Mc.createVecLeft()
                Mc.mult(self.L, work)
                self.F.axpy(-1.0 / self.tau, work)
                work.destroy()
                self.L.destroy()
            self.L = L
            if self._SL is not None:
                self._SL.destroy()
            self._SL = action(self.data.grids, a, L, self.bc)
        self.F.axpy(-1.0, self._SL)
        return self.F

    def destroy(self) -> None:
        """Free the vectors."""
        for obj in (self.L, self.F, self._SL):
            if obj is not None:
                obj.destroy()
