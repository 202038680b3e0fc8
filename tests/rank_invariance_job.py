"""Helper run by test_rank_invariance.py under ``mpirun -n N``: writes the coarse matrix,
the coarse solution and the fine reconstruction (gathered, global numbering by keys), and the
final LOD-only solution of a parabolic run with a coefficient changing every step.

Arguments: NH n layers method out [neumann X1,Y1]: NH and n one count or NX,NY; neumann the
comma-separated Neumann sides ("-": none) on the domain [0, X1] x [0, Y1]."""

import sys

import numpy as np
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.io import gather_vertex_array
from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic

comm = MPI.COMM_WORLD
counts = [tuple(int(v) for v in arg.split(",")) for arg in sys.argv[1:3]]
counts = [c[0] if len(c) == 1 else c for c in counts]
layers, method, out = int(sys.argv[3]), sys.argv[4], sys.argv[5]
neumann = () if len(sys.argv) < 7 or sys.argv[6] == "-" else tuple(sys.argv[6].split(","))
extent = (1.0, 1.0) if len(sys.argv) < 8 else tuple(float(v) for v in sys.argv[7].split(","))
g = dl.create_nested_grids(comm, *counts, ((0.0, 0.0), extent), neumann=neumann)
num_coarse = int(np.prod(g.coarse_sizes + 1))
A = np.random.default_rng(7).uniform(0.01, 1.0, size=g.cell_array_shape)
sol = dl.solve_elliptic(g, A, layers, method=method, reference=True)
# Coarse matrix in the structured (key) numbering, independent of the partition.
K = sol.K
r0, r1 = K.getOwnershipRange()
key_of_dof = np.empty(num_coarse, dtype=np.int64)
key_of_dof[g.coarse_dof_global] = np.arange(num_coarse)
local = K.getValues(range(r0, r1), range(K.getSize()[1])) if r1 > r0 else np.zeros((0, num_coarse))
parts = comm.gather((np.arange(r0, r1), local), root=0)
U = np.concatenate(comm.gather(sol.U.x.array[: g.V_H.dofmap.index_map.size_local], root=0) or [[]])
keys = np.concatenate(comm.gather(g.coarse_dof_keys, root=0) or [[]])
u_ms = gather_vertex_array(g, sol.u_ms)
stack = np.stack([A * (1 + 0.5 * m) ** np.sign(A - 0.5) for m in range(3)])
par = run_parabolic(g, CoefficientSchedule.from_stack(stack), 0.3, 3, layers, method=method)
u_par = gather_vertex_array(g, par.u_ms)
par.basis.destroy()
if comm.rank == 0:
    Kd = np.zeros((num_coarse,) * 2)
    for rows, vals in parts:
        Kd[np.ix_(key_of_dof[rows], key_of_dof[np.arange(Kd.shape[0])])] = vals
    Us = np.empty_like(U)
    Us[keys.astype(np.int64)] = U
    np.savez(
        out, K=Kd, U=Us, u_ms=u_ms, u_par=u_par, errors=[sol.errors["l2"], sol.errors["energy"]]
    )
