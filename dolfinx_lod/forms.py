"""UFL forms of the method, compiled once per mesh and reused when coefficient values change.

- stiffness  a(u, v) = int a grad u . grad v dx      (S)
- mass       m(u, v) = int c u v dx                  (M)
- load       l(v)    = int f v dx                    (F)
"""

from __future__ import annotations

import dolfinx.fem
import dolfinx.mesh
import ufl


def stiffness_form(V: dolfinx.fem.FunctionSpace, a: dolfinx.fem.Function) -> dolfinx.fem.Form:
    """Compiled form of S: int a grad u . grad v dx."""
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    return dolfinx.fem.form(a * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx)


def mass_form(
    V: dolfinx.fem.FunctionSpace, c: dolfinx.fem.Function | float = 1.0
) -> dolfinx.fem.Form:
    """Compiled form of M: int c u v dx."""
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    return dolfinx.fem.form(c * u * v * ufl.dx)


def load_form(
    V: dolfinx.fem.FunctionSpace, f: dolfinx.fem.Function | dolfinx.fem.Constant
) -> dolfinx.fem.Form:
    """Compiled form of F: int f v dx."""
    return dolfinx.fem.form(f * ufl.TestFunction(V) * ufl.dx)


def element_load_form(
    V: dolfinx.fem.FunctionSpace,
    a: dolfinx.fem.Function,
    phi: dolfinx.fem.Function,
    cells: dolfinx.mesh.MeshTags,
) -> dolfinx.fem.Form:
    """Compiled right-hand side of the element corrector problem (7):
    v -> int_T a grad(Lambda_j) . grad v dx, T = the cells tagged 1 in ``cells``."""
    v = ufl.TestFunction(V)
    dx_T = ufl.Measure("dx", domain=V.mesh, subdomain_data=cells)(1)
    return dolfinx.fem.form(a * ufl.inner(ufl.grad(phi), ufl.grad(v)) * dx_T)
