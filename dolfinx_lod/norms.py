"""Error measures: relative L2 and energy errors, and the stiffness without boundary
conditions that the energy norm of functions with Dirichlet values g != 0 needs."""

from __future__ import annotations

import dolfinx.fem
import dolfinx.fem.petsc
import numpy as np
import ufl
from petsc4py import PETSc

from dolfinx_lod.grids import NestedGrids


def relative_errors(u: PETSc.Vec, u_ref: PETSc.Vec, M: PETSc.Mat, S: PETSc.Mat) -> dict[str, float]:
    """Relative L2 (via M) and energy (via S) errors of u against u_ref. Collective.

    With a zero reference (e.g. a zero source) the relative error is defined as the absolute
    error ||u - u_ref|| (0 when both vanish), so it is always a finite number."""
    e = u - u_ref
    out = {}
    for name, A in (("l2", M), ("energy", S)):
        error, ref = _norm2(A, e), _norm2(A, u_ref)
        out[name] = float(np.sqrt(max(error, 0.0) / ref if ref > 0 else max(error, 0.0)))
    e.destroy()
    return out


def _norm2(A: PETSc.Mat, x: PETSc.Vec) -> float:
    """x^T A x. Collective."""
    y = A.createVecLeft()
    A.mult(x, y)
    value = y.dot(x)
    y.destroy()
    return value


def free_stiffness(grids: NestedGrids, a: dolfinx.fem.Function) -> PETSc.Mat:
    """The stiffness without boundary conditions (energy norms of functions with g != 0)."""
    u, v = ufl.TrialFunction(grids.V_h), ufl.TestFunction(grids.V_h)
    S = dolfinx.fem.petsc.assemble_matrix(
        dolfinx.fem.form(a * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx)
    )
    S.assemble()
    return S
