"""Nested coarse/fine quadrilateral meshes T_H, T_h with Q1 spaces V_H, V_h.

Both meshes are distributed DOLFINx meshes of a rectangle [x0, x1] x [y0, y1]; every coarse
cell is split into r x r fine cells. Entities are identified across meshes and ranks by
*structured keys* (lexicographic, x fastest, counted from the lower-left corner):

- fine cell (ix, iy) -> iy * n + ix,       fine vertex (jx, jy) -> jy * (n + 1) + jx,
- coarse cell (Ix, Iy) -> Iy * NH + Ix,    coarse vertex (Jx, Jy) -> Jy * (NH + 1) + Jx.

Keys are computed from coordinates, so any partitioning and dof ordering works, including a
user's own structured quadrilateral mesh (:func:`nested_grids_from_mesh`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dolfinx
import dolfinx.fem
import dolfinx.mesh
import dolfinx_solver  # noqa: F401  (must precede dolfinx/petsc4py)
import numpy as np
import numpy.typing as npt
from mpi4py import MPI
from petsc4py import PETSc

from dolfinx_lod.parallel import fetch, validate

Domain = tuple[tuple[float, float], tuple[float, float]]
UNIT_SQUARE: Domain = ((0.0, 0.0), (1.0, 1.0))


def lattice_index(
    x: npt.NDArray[np.floating], origin: npt.ArrayLike, spacing: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """Integer lattice coordinates (shape (N, 2)) of points ``x`` (shape (N, >=2))."""
    s = (x[:, :2] - np.asarray(origin)) / np.asarray(spacing)
    return np.rint(s).astype(np.int64)


def bilinear_weights(s: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    """Q1 reference basis values at local coordinates ``s`` in [0, 1]^2, shape (N, 4).

    Columns follow the vertex order (0,0), (1,0), (0,1), (1,1).
    """
    sx, sy = s[:, 0], s[:, 1]
    return np.stack([(1 - sx) * (1 - sy), sx * (1 - sy), (1 - sx) * sy, sx * sy], axis=1)


def cell_vertex_offsets(nvx: int) -> npt.NDArray[np.int64]:
    """Vertex-key offsets of the corners (0,0), (1,0), (0,1), (1,1) of a cell in a lattice with
    ``nvx`` vertices per row."""
    return np.array([0, 1, nvx, nvx + 1], dtype=np.int64)


@dataclass
class NestedGrids:
    """Coarse mesh T_H and fine mesh T_h (r x r fine cells per coarse cell), distributed.

    Attributes local to a rank describe *owned* entities only; ``coarse_dof_global`` is the
    only array replicated on every rank (coarse size (NH + 1)^2).
    """

    comm: MPI.Comm
    domain: Domain
    coarse: int  # N_H, coarse cells per direction
    fine: int  # n, fine cells per direction
    coarse_mesh: dolfinx.mesh.Mesh
    fine_mesh: dolfinx.mesh.Mesh
    V_H: dolfinx.fem.FunctionSpace = field(init=False)
    V_h: dolfinx.fem.FunctionSpace = field(init=False)
    Q_h: dolfinx.fem.FunctionSpace = field(init=False)  # DG0 on T_h (coefficients)
    fine_cell_keys: npt.NDArray[np.int64] = field(init=False)
    fine_dof_keys: npt.NDArray[np.int64] = field(init=False)
    coarse_dof_keys: npt.NDArray[np.int64] = field(init=False)
    coarse_dof_global: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.V_H = dolfinx.fem.functionspace(self.coarse_mesh, ("Lagrange", 1))
        self.V_h = dolfinx.fem.functionspace(self.fine_mesh, ("Lagrange", 1))
        self.Q_h = dolfinx.fem.functionspace(self.fine_mesh, ("DG", 0))
        n, NH = self.fine, self.coarse
        tdim = self.fine_mesh.topology.dim
        ncells = self.fine_mesh.topology.index_map(tdim).size_local
        mid = dolfinx.mesh.compute_midpoints(
            self.fine_mesh, tdim, np.arange(ncells, dtype=np.int32)
        )
        ij = np.floor((mid[:, :2] - self.origin) / self.h).astype(np.int64)
        self.fine_cell_keys = ij[:, 1] * n + ij[:, 0]
        self.fine_dof_keys = self._dof_keys(self.V_h, self.h, n + 1)
        self.coarse_dof_keys = self._dof_keys(self.V_H, self.H, NH + 1)
        imap = self.V_H.dofmap.index_map
        owned_global = imap.local_range[0] + np.arange(imap.size_local, dtype=np.int64)
        table = np.zeros((NH + 1) ** 2, dtype=np.int64)
        for keys, dofs in self.comm.allgather((self.coarse_dof_keys, owned_global)):
            table[keys] = dofs
        self.coarse_dof_global = table

    def _dof_keys(self, V: dolfinx.fem.FunctionSpace, spacing, nv: int) -> npt.NDArray[np.int64]:
        nowned = V.dofmap.index_map.size_local
        ij = lattice_index(V.tabulate_dof_coordinates()[:nowned], self.origin, spacing)
        return ij[:, 1] * nv + ij[:, 0]

    @property
    def origin(self) -> npt.NDArray[np.float64]:
        """Lower-left corner (x0, y0)."""
        return np.asarray(self.domain[0], dtype=np.float64)

    @property
    def extent(self) -> npt.NDArray[np.float64]:
        """Side lengths (x1 - x0, y1 - y0)."""
        return np.asarray(self.domain[1], dtype=np.float64) - self.origin

    @property
    def r(self) -> int:
        """Fine cells per coarse cell and direction, r = H / h."""
        return self.fine // self.coarse

    @property
    def H(self) -> npt.NDArray[np.float64]:
        """Coarse mesh sizes (H_x, H_y)."""
        return self.extent / self.coarse

    @property
    def h(self) -> npt.NDArray[np.float64]:
        """Fine mesh sizes (h_x, h_y)."""
        return self.extent / self.fine

    def fine_dof_global(self, vertex_keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Global (PETSc) V_h dof numbers of fine vertices given by key. Collective."""
        imap = self.V_h.dofmap.index_map
        owned_global = imap.local_range[0] + np.arange(imap.size_local, dtype=np.int64)
        return fetch(self.comm, (self.fine + 1) ** 2, self.fine_dof_keys, owned_global, vertex_keys)

    def prolongation(self) -> PETSc.Mat:
        """Prolongation P: V_H -> V_h (nodal interpolation of Q1 into the nested Q1 space).

        Distributed PETSc matrix, rows distributed like V_h, columns like V_H. Collective.
        """
        r, NH = self.r, self.coarse
        jx, jy = self.fine_dof_keys % (self.fine + 1), self.fine_dof_keys // (self.fine + 1)
        Ix, Iy = np.minimum(jx // r, NH - 1), np.minimum(jy // r, NH - 1)
        w = bilinear_weights(np.stack([jx / r - Ix, jy / r - Iy], axis=1))
        corners = (Iy * (NH + 1) + Ix)[:, None] + cell_vertex_offsets(NH + 1)[None, :]
        imap = self.V_h.dofmap.index_map
        rows = np.repeat(imap.local_range[0] + np.arange(imap.size_local), 4)
        keep = w.ravel() != 0.0
        return coo_matrix(
            self.comm,
            (self.V_h, self.V_H),
            rows[keep],
            self.coarse_dof_global[corners.ravel()[keep]],
            w.ravel()[keep],
        )


def coo_matrix(comm, spaces, rows, cols, values) -> PETSc.Mat:
    """Distributed AIJ matrix with row/column layout of ``spaces`` from COO triplets
    (duplicates are summed, rows may live on other ranks). Collective."""
    sizes = [(V.dofmap.index_map.size_local, V.dofmap.index_map.size_global) for V in spaces]
    A = PETSc.Mat().create(comm=comm)
    A.setSizes(sizes)
    A.setType(PETSc.Mat.Type.AIJ)
    A.setPreallocationCOO(rows.astype(PETSc.IntType), cols.astype(PETSc.IntType))
    A.setValuesCOO(values.astype(PETSc.ScalarType), addv=PETSc.InsertMode.ADD_VALUES)
    A.assemble()
    return A


def _check_sizes(coarse: int, fine: int) -> None:
    if not (isinstance(coarse, int | np.integer) and coarse >= 1):
        raise ValueError(f"coarse cells per direction NH must be an integer >= 1, got {coarse!r}")
    if not (isinstance(fine, int | np.integer) and fine >= 1):
        raise ValueError(f"fine cells per direction n must be an integer >= 1, got {fine!r}")
    if fine % coarse != 0:
        raise ValueError(
            f"coarse cells per direction NH ({coarse}) must divide fine cells per direction "
            f"n ({fine}); allowed: NH in {[d for d in range(1, fine + 1) if fine % d == 0]}"
        )


def _check_domain(domain: Domain) -> None:
    (x0, y0), (x1, y1) = domain
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
        raise ValueError(f"domain must be ((x0, y0), (x1, y1)) with x1 > x0, y1 > y0; got {domain}")


def create_nested_grids(
    comm: MPI.Comm, coarse: int, fine: int, domain: Domain = UNIT_SQUARE
) -> NestedGrids:
    """Create T_H (NH x NH cells) and T_h (n x n cells) on ``domain``. Collective.

    Args:
        comm: Communicator both meshes are distributed over.
        coarse: N_H, coarse cells per direction (H = side / N_H).
        fine: n, fine cells per direction; must be a multiple of ``coarse``.
        domain: ((x0, y0), (x1, y1)).
    """
    validate(comm, lambda: (_check_sizes(coarse, fine), _check_domain(domain)))
    quad = dolfinx.mesh.CellType.quadrilateral
    none = dolfinx.mesh.GhostMode.none
    coarse_mesh = dolfinx.mesh.create_rectangle(
        comm, domain, (coarse, coarse), quad, ghost_mode=none
    )
    fine_mesh = dolfinx.mesh.create_rectangle(comm, domain, (fine, fine), quad, ghost_mode=none)
    return NestedGrids(comm, domain, coarse, fine, coarse_mesh, fine_mesh)


def nested_grids_from_mesh(fine_mesh: dolfinx.mesh.Mesh, coarse: int) -> NestedGrids:
    """Wrap a user's fine mesh T_h (a uniform n x n quadrilateral grid of a rectangle) and
    create the coarse mesh T_H with ``coarse`` cells per direction on top of it. Collective.
    """
    comm = fine_mesh.comm

    def check_type() -> None:
        if fine_mesh.topology.cell_type != dolfinx.mesh.CellType.quadrilateral:
            raise ValueError(
                f"fine mesh must be quadrilateral, got cell type "
                f"{fine_mesh.topology.cell_type.name}; create it with "
                "dolfinx.mesh.create_rectangle(..., cell_type=CellType.quadrilateral)"
            )

    validate(comm, check_type)
    x = fine_mesh.geometry.x[:, :2]
    lo = x.min(axis=0, initial=np.inf)
    hi = x.max(axis=0, initial=-np.inf)
    comm.Allreduce(MPI.IN_PLACE, lo, op=MPI.MIN)
    comm.Allreduce(MPI.IN_PLACE, hi, op=MPI.MAX)
    ncells = fine_mesh.topology.index_map(2).size_global
    n = int(round(np.sqrt(ncells)))
    domain: Domain = ((float(lo[0]), float(lo[1])), (float(hi[0]), float(hi[1])))

    def check_lattice() -> None:
        if n * n != ncells:
            raise ValueError(f"fine mesh must be an n x n grid; it has {ncells} cells")
        s = (x - lo) / ((hi - lo) / n)
        if np.abs(s - np.rint(s)).max(initial=0.0) > 1e-8:
            raise ValueError("fine mesh must be a uniform axis-aligned n x n quadrilateral grid")
        _check_sizes(coarse, n)

    validate(comm, check_lattice)
    coarse_mesh = dolfinx.mesh.create_rectangle(
        comm,
        domain,
        (coarse, coarse),
        dolfinx.mesh.CellType.quadrilateral,
        ghost_mode=dolfinx.mesh.GhostMode.none,
    )
    return NestedGrids(comm, domain, coarse, n, coarse_mesh, fine_mesh)
