# # The LOD for an elliptic problem with a rough coefficient
#
# We solve
#
# $$ -\nabla \cdot (a \nabla u) = f \quad \text{in } \Omega = [0, 2] \times [0, 1], \qquad
# u = 0 \text{ at the bottom and top}, \qquad a \nabla u \cdot n = 0 \text{ left and right}, $$
#
# (insulated left and right sides) where $a$ varies on the fine mesh $\mathcal{T}_h$
# ($2n \times n$ square cells), with the localized orthogonal decomposition on a coarse mesh
# $\mathcal{T}_H$ ($2N_H \times N_H$ cells): the multiscale basis
# $\tilde\Lambda_j = \Lambda_j - \sum_T C_T^l \Lambda_j$ is computed from local saddle-point
# problems on the patches $N^l(T)$, and the coarse system has only about $2 N_H^2$ unknowns.
# For comparison, the fine FEM solution $u_h$ is computed too.
#
# Run it serially or in parallel:
#
# ```bash
# python demos/demo_elliptic.py --out results/demo_elliptic
# mpirun -n 2 python demos/demo_elliptic.py --out results/demo_elliptic
# ```
#
# The results, `summary.json`, `solution.bp` (VTX: $u_{ms}$ and $u_h$) and `coefficient.bp`
# (VTX: $a$; open them in ParaView), land in the `--out` folder.

# +
import argparse
import json
from pathlib import Path

import dolfinx_solver  # noqa: F401  (first: loads the PETSc libraries of the wheel)

# isort: split
import dolfinx.fem
import dolfinx.mesh
import numpy as np
from mpi4py import MPI

import dolfinx_lod as dl

# -

# ## Problem size
#
# The fine mesh must refine the coarse one: $r = n / N_H$ fine cells per coarse cell in each
# direction, an integer $\geq 2$. The patches have $l$ layers of coarse cells around $T$.

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--coarse", type=int, default=8, help="N_H, coarse cells in y (2 N_H in x)")
parser.add_argument("--fine", type=int, default=64, help="n, fine cells in y (2 n in x)")
parser.add_argument("--layers", type=int, default=2, help="l, patch layers")
parser.add_argument("--out", type=Path, required=True, help="output folder")
args = parser.parse_args()
comm = MPI.COMM_WORLD

# ## The fine mesh and the nested coarse mesh
#
# Any uniform, axis-aligned quadrilateral DOLFINx mesh of a rectangle works, with
# $n_x \times n_y$ cells; {py:func}`dolfinx_lod.nested_grids_from_mesh` builds the coarse mesh
# ($N_x \times N_y$ cells: one number per direction, or one for both), the $Q_1$ spaces
# $V_H$, $V_h$ and the prolongation $P: V_H \to V_h$ around it. `neumann` names the insulated
# sides (out of "left", "right", "bottom", "top"); the others carry $u = 0$.

nx, ny = 2 * args.fine, args.fine
mesh = dolfinx.mesh.create_rectangle(
    comm, [[0.0, 0.0], [2.0, 1.0]], [nx, ny], dolfinx.mesh.CellType.quadrilateral
)
grids = dl.nested_grids_from_mesh(
    mesh, coarse=(2 * args.coarse, args.coarse), neumann=("left", "right")
)

# ## The coefficient as a DOLFINx Function
#
# A piecewise constant (DG0) Function on the fine mesh: here values drawn independently in
# $[0.01, 1]$ on every fine cell (the same seed on every rank, so the field does not depend on
# the partition). Interpolation into DG0 evaluates at the cell midpoints.

values = np.random.default_rng(0).uniform(0.01, 1.0, (ny, nx))  # values[iy, ix]


def rough(x):
    """The value of the cell that contains the midpoints x (shape (3, N), cell size 1 / n)."""
    ix = np.minimum((x[0] * ny).astype(int), nx - 1)
    iy = np.minimum((x[1] * ny).astype(int), ny - 1)
    return values[iy, ix]


a = dolfinx.fem.Function(grids.Q_h, name="a")
a.interpolate(rough)

# ## Solve
#
# {py:func}`dolfinx_lod.solve_elliptic` computes the correctors of every patch (each rank
# solves the patches of the coarse cells it owns), assembles the multiscale basis $B$, solves
# $B^T S B\, U = B^T F$ and reconstructs $u_{ms} = B U$ on the fine mesh. With
# `reference=True` it also solves the fine FEM and reports the relative errors. The solution
# owns PETSc objects: the `with` block frees them on every rank at its end.

with dl.solve_elliptic(grids, a, layers=args.layers, f=1.0, reference=True) as sol:
    errors, timings = sol.errors, sol.timings

    # ## Output
    #
    # $u_{ms}$ and $u_h$ (named "u_ms", "u_h") live in the same space $V_h$: one VTX folder
    # holds both. The coefficient goes into a folder of its own (a DG0 space).
    # {py:func}`dolfinx_lod.write_vtx` is collective and replaces a folder as a whole.

    dl.write_vtx(args.out / "solution.bp", [sol.u_ms, sol.u_h])
    dl.write_vtx(args.out / "coefficient.bp", [a])

# The LOD error against the fine FEM, and plain $Q_1$ FEM on the coarse mesh for comparison:

summary = {
    "n": [nx, ny],
    "NH": list(grids.coarse_cells),
    "neumann": list(grids.neumann),
    "l": args.layers,
    "ranks": comm.size,
    "rel_l2_error": errors["l2"],
    "rel_energy_error": errors["energy"],
    "coarse_fem_rel_l2_error": errors["coarse_fem_l2"],
    "timings": timings,
    "files": ["solution.bp", "coefficient.bp"],
}
if comm.rank == 0:
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"LOD: relative L2 error {errors['l2']:.2e} (energy {errors['energy']:.2e}); "
        f"coarse Q1 FEM: {errors['coarse_fem_l2']:.2e}; results in {args.out}/"
    )
