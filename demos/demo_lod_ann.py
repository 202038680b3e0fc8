# # LOD-ANN: learned correctors for a parametrized coefficient
#
# For a family of coefficients $a(x, p)$, the classical LOD solves one saddle-point problem per
# patch whenever $p$ changes. LOD-ANN trains, once, one small network per coarse cell $T$ that
# maps $p$ to the element correctors $C_T \Lambda_j$, with the Deep Ritz loss on exactly the
# patch matrices of the classical solver (paper §3):
#
# $$ \min_\theta \max_\mu \sum_{T, j} \frac{1}{K} \sum_k \Big( \tfrac12 \alpha^T S(p_k)
# \alpha - F_j(p_k)^T \alpha + \mu\, |B \alpha|^2 \Big), \qquad \alpha = \alpha_\theta(p_k). $$
#
# Online, for a new $p$, the multiscale basis then costs forward passes instead of patch
# solves. Here: train on a few parameters of a smooth family, then solve the elliptic problem
# for a held-out $p$ with the classical and the learned basis and compare both with the fine
# FEM.
#
# ```bash
# python demos/demo_lod_ann.py --out results/demo_lod_ann
# mpirun -n 2 python demos/demo_lod_ann.py --out results/demo_lod_ann
# ```
#
# Output in `--out`: `summary.json` and `solution.bp` (VTX: $u_{ms}$ classical, LOD-ANN and the
# fine FEM $u_h$, for ParaView).

# +
import argparse
import json
from pathlib import Path

import dolfinx_solver  # noqa: F401  (first: loads the PETSc libraries of the wheel)

# isort: split
import dolfinx.io
import numpy as np
import torch
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.coefficients import Family
from dolfinx_lod.lod import galerkin_solution, relative_errors, to_function
from dolfinx_lod.neural import LearnedCorrectors, TrainingSettings
from dolfinx_lod.neural.workflow import gather_model, prepare_training

# -

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--coarse", type=int, default=6, help="N_H, coarse cells per direction")
parser.add_argument("--fine", type=int, default=36, help="n, fine cells per direction")
parser.add_argument("--samples", type=int, default=8, help="K, training parameters")
parser.add_argument("--epochs", type=int, default=300, help="Deep Ritz epochs")
parser.add_argument("--out", type=Path, required=True, help="output folder")
args = parser.parse_args()
comm = MPI.COMM_WORLD
torch.set_num_threads(1)  # one torch thread per MPI rank: ranks x threads <= cores
if comm.rank == 0:
    args.out.mkdir(parents=True, exist_ok=True)
comm.Barrier()
layers = 1
grids = dl.create_nested_grids(comm, coarse=args.coarse, fine=args.fine)

# ## A coefficient family
#
# A {py:class}`~dolfinx_lod.coefficients.Family` is a callable $a(x, p)$ of the fine-cell
# midpoints x (shape (3, N), as every callable gets) with a box for $p$; here one parameter
# in $[0, 1]$ shifts an oscillating pattern. (The paper's families: `cont_family`,
# `battery_family`.)

family = Family(
    "demo",
    (0.0,),
    (1.0,),
    lambda x, p: 1.0 + 0.9 * np.sin(9 * x[0] + 3 * p[0]) * np.cos(7 * x[1] - 2 * p[0]),
)

# ## Offline: export the patch problems and train
#
# {py:func}`~dolfinx_lod.neural.workflow.prepare_training` exports, for the K training
# parameters, the patch matrices $S(p_k)$, right-hand sides $F_j(p_k)$ and constraints $B$ of
# the rank's patches (from `PatchProblem.system`, the classical solver's own assembly) and
# creates the trainer. The `reduced` network predicts coordinates in a small basis of patch
# modes.

settings = TrainingSettings(
    architecture="reduced", modes=4, width=16, depth=2, epochs=args.epochs, lr=1e-2
)
run = prepare_training(grids, layers, family, args.samples, settings)
run.trainer.train()
model = gather_model(run, grids, layers, family)
run.basis.destroy()

# ## Online: the multiscale basis for a new parameter
#
# The trained model is a corrector provider: {py:class}`dolfinx_lod.MultiscaleBasis` assembles
# $B(p)$ from it exactly as from the classical correctors.

p = np.array([0.37])  # not a training parameter
a = dl.coefficient_function(grids, family.a, p)
fine = dl.FineSystem(grids, a, f=1.0)  # S, F, M on the fine mesh (the reference only)
u_h = to_function(grids.V_h, fine.solve(fine.S, fine.F), name="u_h")
solutions, errors = {}, {}
for name, provider in (("lod", None), ("lod_ann", LearnedCorrectors(model, family, grids.r))):
    with dl.MultiscaleBasis(grids, layers, provider=provider) as basis:
        B = basis.update(family.a, p)
        U, u, K = galerkin_solution(grids, fine, B)  # B^T S B U = B^T F, u_ms = B U
        solutions[name] = to_function(grids.V_h, u, name=f"u_ms_{name}")
        errors[name] = relative_errors(u, u_h.x.petsc_vec, fine.M, fine.S)
        for obj in (U, u, K):
            obj.destroy()
fine.destroy()

# ## Output

with dolfinx.io.VTXWriter(comm, args.out / "solution.bp", [*solutions.values(), u_h]) as vtx:
    vtx.write(0.0)
summary = {
    "n": args.fine,
    "NH": args.coarse,
    "l": layers,
    "samples": args.samples,
    "epochs": args.epochs,
    "ranks": comm.size,
    "p": p.tolist(),
    "lod_rel_l2_error": errors["lod"]["l2"],
    "lod_ann_rel_l2_error": errors["lod_ann"]["l2"],
    "lod_rel_energy_error": errors["lod"]["energy"],
    "lod_ann_rel_energy_error": errors["lod_ann"]["energy"],
    "files": ["solution.bp"],
}
if comm.rank == 0:
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"p = {p[0]}: relative L2 error against the fine FEM, classical LOD "
        f"{summary['lod_rel_l2_error']:.2e}, LOD-ANN {summary['lod_ann_rel_l2_error']:.2e}; "
        f"results in {args.out}/"
    )
