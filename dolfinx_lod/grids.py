"""Nested coarse/fine meshes T_H, T_h with Q1 spaces V_H, V_h in d = 2 or 3 dimensions.

Both meshes are distributed DOLFINx meshes of a box [x0, x1] x [y0, y1] (x [z0, z1]):
quadrilaterals in 2D, hexahedra in 3D; every coarse cell is split into r^d fine cells.
Entities are identified across meshes and ranks by *structured keys* (lexicographic, x
fastest, counted from the lower-left (-front) corner):

- fine cell (ix, iy[, iz]) -> ix + n iy (+ n^2 iz),  fine vertex -> jx + (n+1) jy (+ (n+1)^2 jz),
- coarse cell (Ix, Iy[, Iz]) -> Ix + NH Iy (+ NH^2 Iz),  coarse vertex likewise with NH + 1.

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

Domain = tuple[tuple[float, ...], tuple[float, ...]]
UNIT_SQUARE: Domain = ((0.0, 0.0), (1.0, 1.0))
UNIT_CUBE: Domain = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def unit_box(dim: int) -> Domain:
    """The unit square (``dim`` = 2) or unit cube (``dim`` = 3)."""
    return {2: UNIT_SQUARE, 3: UNIT_CUBE}[dim]


def lattice_index(
    x: npt.NDArray[np.floating], origin: npt.ArrayLike, spacing: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """Integer lattice coordinates (shape (N, d), d = len(origin)) of points ``x`` (N, >=d)."""
    origin = np.asarray(origin, dtype=np.float64)
    s = (x[:, : origin.size] - origin) / np.asarray(spacing)
    return np.rint(s).astype(np.int64)


def lattice_keys(index: npt.NDArray[np.int64], size: int | npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Keys of lattice points ``index`` (N, d), x fastest, in a lattice of ``size`` points per
    direction (one number, or one per direction): index_x + size_x (index_y + size_y index_z)."""
    d = index.shape[1]
    sizes = np.broadcast_to(np.asarray(size, dtype=np.int64), (d,))
    strides = np.concatenate([[1], np.cumprod(sizes[:-1])]).astype(np.int64)
    return index @ strides


def lattice_coordinates(keys: npt.NDArray[np.int64], size: int, dim: int) -> npt.NDArray:
    """Inverse of :func:`lattice_keys` (``size`` points per direction): integer coordinates
    (N, d) of ``keys``."""
    keys = np.asarray(keys, dtype=np.int64)
    return np.stack([(keys // size**k) % size for k in range(dim)], axis=1)


def box_points(counts: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Integer points of the box [0, counts) (N, d), lexicographic with x fastest."""
    counts = tuple(int(c) for c in np.asarray(counts).ravel())
    return np.indices(counts[::-1]).reshape(len(counts), -1)[::-1].T.astype(np.int64)


def box_keys(
    lo: npt.ArrayLike, counts: npt.ArrayLike, size: int | npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """Keys of the lattice points lo + [0, counts) in a lattice of ``size`` points per
    direction, in local lexicographic order (x fastest)."""
    return lattice_keys(box_points(counts) + np.asarray(lo, dtype=np.int64), size)


def corner_bits(dim: int) -> npt.NDArray[np.int64]:
    """Corners of the reference cell [0, 1]^d, shape (2^d, d), in the order (0,0), (1,0),
    (0,1), (1,1) (x fastest; then the same with z = 1 in 3D)."""
    return lattice_coordinates(np.arange(2**dim), 2, dim)


def multilinear_weights(s: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    """Q1 reference basis values at local coordinates ``s`` in [0, 1]^d, shape (N, 2^d),
    columns in the :func:`corner_bits` order."""
    bits = corner_bits(s.shape[1])
    factors = np.where(bits[None, :, :] == 1, s[:, None, :], 1.0 - s[:, None, :])
    return factors.prod(axis=2)


def cell_vertex_offsets(nv: int, dim: int = 2) -> npt.NDArray[np.int64]:
    """Vertex-key offsets of a cell's corners (:func:`corner_bits` order) in a lattice with
    ``nv`` vertices per direction."""
    return lattice_keys(corner_bits(dim), nv)


@dataclass
class NestedGrids:
    """Coarse mesh T_H and fine mesh T_h (r^d fine cells per coarse cell), distributed.

    Attributes local to a rank describe *owned* entities only; ``coarse_dof_global`` is the
    only array replicated on every rank (coarse size (NH + 1)^d).
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
        ij = np.floor((mid[:, : self.dim] - self.origin) / self.h).astype(np.int64)
        self.fine_cell_keys = lattice_keys(ij, n)
        self.fine_dof_keys = self._dof_keys(self.V_h, self.h, n + 1)
        self.coarse_dof_keys = self._dof_keys(self.V_H, self.H, NH + 1)
        imap = self.V_H.dofmap.index_map
        owned_global = imap.local_range[0] + np.arange(imap.size_local, dtype=np.int64)
        table = np.zeros((NH + 1) ** self.dim, dtype=np.int64)
        for keys, dofs in self.comm.allgather((self.coarse_dof_keys, owned_global)):
            table[keys] = dofs
        self.coarse_dof_global = table

    def _dof_keys(self, V: dolfinx.fem.FunctionSpace, spacing, nv: int) -> npt.NDArray[np.int64]:
        nowned = V.dofmap.index_map.size_local
        ij = lattice_index(V.tabulate_dof_coordinates()[:nowned], self.origin, spacing)
        return lattice_keys(ij, nv)

    @property
    def dim(self) -> int:
        """Space dimension d (2 or 3)."""
        return len(self.domain[0])

    @property
    def origin(self) -> npt.NDArray[np.float64]:
        """Lower-left (-front) corner (x0, y0[, z0])."""
        return np.asarray(self.domain[0], dtype=np.float64)

    @property
    def extent(self) -> npt.NDArray[np.float64]:
        """Side lengths (x1 - x0, y1 - y0[, z1 - z0])."""
        return np.asarray(self.domain[1], dtype=np.float64) - self.origin

    @property
    def r(self) -> int:
        """Fine cells per coarse cell and direction, r = H / h."""
        return self.fine // self.coarse

    @property
    def H(self) -> npt.NDArray[np.float64]:
        """Coarse mesh sizes (H_x, H_y[, H_z])."""
        return self.extent / self.coarse

    @property
    def h(self) -> npt.NDArray[np.float64]:
        """Fine mesh sizes (h_x, h_y[, h_z])."""
        return self.extent / self.fine

    def fine_dof_global(self, vertex_keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Global (PETSc) V_h dof numbers of fine vertices given by key. Collective."""
        imap = self.V_h.dofmap.index_map
        owned_global = imap.local_range[0] + np.arange(imap.size_local, dtype=np.int64)
        nkeys = (self.fine + 1) ** self.dim
        return fetch(self.comm, nkeys, self.fine_dof_keys, owned_global, vertex_keys)

    def prolongation(self) -> PETSc.Mat:
        """Prolongation P: V_H -> V_h (nodal interpolation of Q1 into the nested Q1 space).

        Distributed PETSc matrix, rows distributed like V_h, columns like V_H. Collective.
        """
        r, NH, d = self.r, self.coarse, self.dim
        j = lattice_coordinates(self.fine_dof_keys, self.fine + 1, d)
        cell = np.minimum(j // r, NH - 1)  # the coarse cell (index) containing the vertex
        w = multilinear_weights(j / r - cell)
        corners = lattice_keys(cell, NH + 1)[:, None] + cell_vertex_offsets(NH + 1, d)[None, :]
        imap = self.V_h.dofmap.index_map
        rows = np.repeat(imap.local_range[0] + np.arange(imap.size_local), 2**d)
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
    try:
        lo, hi = (np.asarray(c, dtype=np.float64) for c in domain)
        ok = lo.shape == hi.shape and lo.ndim == 1 and lo.size in (2, 3)
    except (TypeError, ValueError):
        ok = False
    if not (ok and np.isfinite([lo, hi]).all() and (hi > lo).all()):
        raise ValueError(
            "domain must be ((x0, y0), (x1, y1)) or ((x0, y0, z0), (x1, y1, z1)) with "
            f"x1 > x0, y1 > y0 (z1 > z0); got {domain}"
        )


def box_mesh(
    comm: MPI.Comm,
    domain: Domain,
    cells: int | tuple[int, ...],
    ghost_mode: dolfinx.mesh.GhostMode | None = dolfinx.mesh.GhostMode.none,
) -> dolfinx.mesh.Mesh:
    """Structured Q1 mesh of ``domain``: quadrilaterals in 2D, hexahedra in 3D, ``cells`` per
    direction (one number for all directions, or one per direction); ``ghost_mode`` None:
    DOLFINx's default. Collective."""
    dim = len(domain[0])
    counts = (cells,) * dim if isinstance(cells, int | np.integer) else tuple(cells)
    kwargs = {} if ghost_mode is None else {"ghost_mode": ghost_mode}
    if dim == 2:
        quad = dolfinx.mesh.CellType.quadrilateral
        return dolfinx.mesh.create_rectangle(comm, domain, counts, quad, **kwargs)
    hexa = dolfinx.mesh.CellType.hexahedron
    return dolfinx.mesh.create_box(comm, domain, counts, hexa, **kwargs)


def create_nested_grids(
    comm: MPI.Comm, coarse: int, fine: int, domain: Domain = UNIT_SQUARE
) -> NestedGrids:
    """Create T_H (NH^d cells) and T_h (n^d cells) on ``domain``. Collective.

    Args:
        comm: Communicator both meshes are distributed over.
        coarse: N_H, coarse cells per direction (H = side / N_H).
        fine: n, fine cells per direction; must be a multiple of ``coarse``.
        domain: ((x0, y0), (x1, y1)) for quadrilaterals (d = 2) or ((x0, y0, z0), (x1, y1, z1))
            for hexahedra (d = 3), e.g. :func:`unit_box` (3).
    """
    validate(comm, lambda: (_check_sizes(coarse, fine), _check_domain(domain)))
    coarse_mesh = box_mesh(comm, domain, coarse)
    fine_mesh = box_mesh(comm, domain, fine)
    return NestedGrids(comm, domain, coarse, fine, coarse_mesh, fine_mesh)


def nested_grids_from_mesh(fine_mesh: dolfinx.mesh.Mesh, coarse: int) -> NestedGrids:
    """Wrap a user's fine mesh T_h (a uniform n^d grid of quadrilaterals or hexahedra of a
    box) and create the coarse mesh T_H with ``coarse`` cells per direction on top of it.
    Collective.
    """
    comm = fine_mesh.comm
    types = {dolfinx.mesh.CellType.quadrilateral: 2, dolfinx.mesh.CellType.hexahedron: 3}

    def check_type() -> None:
        if fine_mesh.topology.cell_type not in types:
            raise ValueError(
                f"fine mesh must be quadrilateral or hexahedral, got cell type "
                f"{fine_mesh.topology.cell_type.name}; create it with "
                "dolfinx.mesh.create_rectangle / create_box(..., cell_type=CellType."
                "quadrilateral / hexahedron)"
            )

    validate(comm, check_type)
    dim = types[fine_mesh.topology.cell_type]
    x = fine_mesh.geometry.x[:, :dim]
    lo = x.min(axis=0, initial=np.inf)
    hi = x.max(axis=0, initial=-np.inf)
    comm.Allreduce(MPI.IN_PLACE, lo, op=MPI.MIN)
    comm.Allreduce(MPI.IN_PLACE, hi, op=MPI.MAX)
    ncells = fine_mesh.topology.index_map(dim).size_global
    n = int(round(ncells ** (1 / dim)))
    domain: Domain = (tuple(map(float, lo)), tuple(map(float, hi)))

    def check_lattice() -> None:
        if n**dim != ncells:
            raise ValueError(f"fine mesh must be an n^{dim} grid; it has {ncells} cells")
        s = (x - lo) / ((hi - lo) / n)
        if np.abs(s - np.rint(s)).max(initial=0.0) > 1e-8:
            raise ValueError(f"fine mesh must be a uniform axis-aligned n^{dim} grid")
        _check_sizes(coarse, n)

    validate(comm, check_lattice)
    return NestedGrids(comm, domain, coarse, n, box_mesh(comm, domain, coarse), fine_mesh)
