# # Heat conduction on a rectangle: the LOD next to a plain DOLFINx loop
#
# We solve, on $\Omega = [0, 2] \times [0, 1]$ with the user's own mesh,
#
# $$ \partial_t u - \nabla \cdot (a(t, x) \nabla u) = f, \qquad u = g \text{ on the left and
# bottom sides}, \qquad a \nabla u \cdot n = q \text{ on top}, \qquad a \nabla u \cdot n = 0
# \text{ on the right}, $$
#
# with $g = 1 - x/2$, $q = 1/2$, $f = 1$, $u(0) = 0$ inside ($g$ on the Dirichlet sides) and
# an oscillating coefficient (period $\varepsilon = 1/8$) whose amplitude changes in time.
# It is written the DOLFINx way: a UFL
# expression that reads a `fem.Constant` t, boundary data as callables. The LOD steps on the
# coarse mesh (`dolfinx_lod.timestepping.LODStepper`: the multiscale basis, boundary data the
# multiscale way, [docs/boundary.md](../docs/boundary.md)); the reference is a plain DOLFINx
# backward Euler loop written out below (`fem.petsc.LinearProblem`) with the same DG0
# coefficient.
#
# ```bash
# python demos/demo_heat_rectangle.py --out results/demo_heat_rectangle
# mpirun -n 2 python demos/demo_heat_rectangle.py --quick --out results/demo_heat_rectangle
# ```
#
# Output in `--out`: `summary.json` (errors per step, timings) and `heat_rectangle.png`.

# +
import argparse
import time
from pathlib import Path

import dolfinx_lod as dl  # (with scripts/venv.sh's start-up hook, dolfinx may come first)

# isort: split
import dolfinx.fem.petsc
import dolfinx.mesh
import numpy as np
import ufl
from mpi4py import MPI

from dolfinx_lod.boundary import side_tags
from dolfinx_lod.io import gather_vertex_array, write_json
from dolfinx_lod.plotting import plot_fields
from dolfinx_lod.timestepping import CoefficientSchedule, LODStepper, advance

# -

parser = argparse.ArgumentParser(description="heat conduction on a rectangle: LOD vs DOLFINx")
parser.add_argument("--coarse", type=int, default=8, help="N_H: coarse cells in y (2 N_H in x)")
parser.add_argument("--fine", type=int, default=64, help="n: fine cells in y (2 n in x)")
parser.add_argument("--layers", type=int, default=2, help="l, patch layers")
parser.add_argument("--steps", type=int, default=10, help="M, time steps up to T = 0.5")
parser.add_argument("--quick", action="store_true", help="N_H = 4, n = 32, 5 steps")
parser.add_argument("--out", type=Path, required=True, help="output folder")
args = parser.parse_args()
if args.quick:
    args.coarse, args.fine, args.steps = 4, 32, 5
comm = MPI.COMM_WORLD
T, tau = 0.5, 0.5 / args.steps

# ## The user's mesh and data
#
# Any uniform quadrilateral mesh of a box works: {py:func}`dolfinx_lod.nested_grids_from_mesh`
# builds the nested coarse mesh on it. The right and top sides are Neumann sides; the others
# carry the Dirichlet values g.

mesh = dolfinx.mesh.create_rectangle(
    comm, [[0.0, 0.0], [2.0, 1.0]], [2 * args.fine, args.fine], dolfinx.mesh.CellType.quadrilateral
)
grids = dl.nested_grids_from_mesh(mesh, (2 * args.coarse, args.coarse), neumann=("right", "top"))
t = dolfinx.fem.Constant(mesh, 0.0)
x = ufl.SpatialCoordinate(mesh)
eps = 1 / 8
a = 1.1 + (0.5 + 0.4 * ufl.cos(2 * np.pi * t)) * ufl.sin(2 * np.pi * x[0] / eps) * ufl.sin(
    2 * np.pi * x[1] / eps
)


def g(x):
    return 1.0 - x[0] / 2


q, f = 0.5, 1.0

# ## The LOD
#
# The stepper takes the UFL coefficient through a schedule that sets t before each step; the
# boundary data enters as `dirichlet` and `flux`.

started = time.perf_counter()
lod = LODStepper(grids, args.layers, tau, source=f, dirichlet=g, flux={"top": q})
schedule = CoefficientSchedule.from_data(a, time=t)

# ## The plain DOLFINx loop
#
# Backward Euler for $(u^m - u^{m-1})/\tau - \nabla \cdot (a_h \nabla u^m) = f$ with $a_h$ the
# DG0 interpolant of a (the data the LOD sees), Dirichlet values on located dofs and the flux
# on the tagged top facets.

V, Q = grids.V_h, grids.Q_h
a_h = dolfinx.fem.Function(Q)
a_expr = dolfinx.fem.Expression(a, Q.element.interpolation_points)
u_h, u_old = dolfinx.fem.Function(V), dolfinx.fem.Function(V)
g_h = dolfinx.fem.Function(V)
g_h.interpolate(g)
dirichlet_dofs = grids.dirichlet_dofs(V)
bc = dolfinx.fem.dirichletbc(g_h, dirichlet_dofs)
u_h.x.array[dirichlet_dofs] = g_h.x.array[dirichlet_dofs]  # u(0) = 0 inside, g on the sides
ds = ufl.Measure("ds", domain=mesh, subdomain_data=side_tags(grids))
u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
lhs = u * v * ufl.dx + tau * a_h * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx
rhs = (u_old + tau * f) * v * ufl.dx + tau * q * v * ds(4)  # 4: "top" (SIDES index + 1)
problem = dolfinx.fem.petsc.LinearProblem(
    lhs,
    rhs,
    bcs=[bc],
    u=u_h,
    petsc_options_prefix="heat_",
    petsc_options={"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-12},
)


def energy(w: dolfinx.fem.Function) -> float:
    """||w||_a = (int a_h grad w . grad w dx)^(1/2), summed over the ranks."""
    local = dolfinx.fem.assemble_scalar(
        dolfinx.fem.form(a_h * ufl.inner(ufl.grad(w), ufl.grad(w)) * ufl.dx)
    )
    return float(np.sqrt(comm.allreduce(local, op=MPI.SUM)))


records = []


def record(m: int, t_m: float, state) -> None:
    """One DOLFINx step at t_m (a_h from the same t), then the errors of the LOD step."""
    a_h.interpolate(a_expr)  # t was set to t_m by the schedule
    u_old.x.array[:] = u_h.x.array
    problem.solve()
    diff = dolfinx.fem.Function(V)
    diff.x.array[:] = lod.solution().x.array - u_h.x.array
    records.append({"step": m, "t": t_m, "rel_energy_error": energy(diff) / energy(u_h)})


advance(grids, schedule, T, args.steps, [lod], record)
wall = time.perf_counter() - started

# ## Output
#
# The errors per step go to `summary.json`, the final fields to a figure.

u_lod_array = gather_vertex_array(grids, lod.solution())
u_ref_array = gather_vertex_array(grids, u_h)
if comm.rank == 0:
    args.out.mkdir(parents=True, exist_ok=True)
    plot_fields(
        args.out / "heat_rectangle.png",
        [("LOD u_ms(T)", u_lod_array, False), ("DOLFINx u_h(T)", u_ref_array, False)],
        grids.domain,
    )
    summary = {
        "coarse": [2 * args.coarse, args.coarse],
        "fine": [2 * args.fine, args.fine],
        "layers": args.layers,
        "steps": args.steps,
        "ranks": comm.size,
        "records": records,
        "rel_energy_error_final": records[-1]["rel_energy_error"],
        "max_abs_difference_final": float(np.abs(u_lod_array - u_ref_array).max()),
        "wall_seconds": wall,
        "figure": "heat_rectangle.png",
        "files": {},  # (no VTX output)
    }
    write_json(args.out / "summary.json", summary)
    print(f"relative energy error at T: {summary['rel_energy_error_final']:.3e}")
lod.destroy()
