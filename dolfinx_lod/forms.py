"""UFL forms of the method, compiled once per mesh and reused when coefficient values change.

- stiffness  a(u, v) = int a grad u . grad v dx      (S)
- mass       m(u, v) = int c u v dx                  (M)
- load       l(v)    = int f v dx                    (F)
- element mass loads of the patch problems: int_T c Lambda_j v (their stiffness loads are
  assembled element by element, :mod:`dolfinx_lod.patch_space`)
"""

from __future__ import annotations

import dolfinx.fem
import dolfinx.mesh
import ufl


def _dx(mesh: dolfinx.mesh.Mesh, cells: dolfinx.mesh.MeshTags | None, tag: int | None):
    """dx over the whole mesh, or over the cells of ``cells`` tagged ``tag``."""
    if cells is None:
        return ufl.dx(domain=mesh)
    return ufl.Measure("dx", domain=mesh, subdomain_data=cells)(tag)


def stiffness_form(
    V: dolfinx.fem.FunctionSpace,
    a: dolfinx.fem.Function,
    cells: dolfinx.mesh.MeshTags | None = None,
    tag: int | None = None,
) -> dolfinx.fem.Form:
    """Compiled form of S: int a grad u . grad v dx (over the cells tagged ``tag`` if given)."""
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    return dolfinx.fem.form(a * ufl.inner(ufl.grad(u), ufl.grad(v)) * _dx(V.mesh, cells, tag))


def mass_form(
    V: dolfinx.fem.FunctionSpace, c: dolfinx.fem.Function | float = 1.0
) -> dolfinx.fem.Form:
    """Compiled form of M: int c u v dx."""
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    return dolfinx.fem.form(c * u * v * ufl.dx)


def load_form(
    V: dolfinx.fem.FunctionSpace,
    f: dolfinx.fem.Function | dolfinx.fem.Constant,
    flux: ufl.Form | None = None,
) -> dolfinx.fem.Form:
    """Compiled form of F: int f v dx (+ the boundary flux term int q v ds if given)."""
    load = f * ufl.TestFunction(V) * ufl.dx
    return dolfinx.fem.form(load if flux is None else load + flux)


def element_mass_load_form(
    V: dolfinx.fem.FunctionSpace,
    c: dolfinx.fem.Function,
    phi: dolfinx.fem.Function,
    cells: dolfinx.mesh.MeshTags,
    tag: int,
) -> dolfinx.fem.Form:
    """Compiled v -> int_T c Lambda_j v dx, T = the cells tagged ``tag`` in ``cells`` (the
    element mass term of the Petrov–Galerkin local operators)."""
    v = ufl.TestFunction(V)
    return dolfinx.fem.form(c * phi * v * _dx(V.mesh, cells, tag))
