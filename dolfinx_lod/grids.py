"""Nested coarse/fine meshes T_H, T_h with Q1 spaces V_H, V_h in d = 2 or 3 dimensions.

Both meshes are distributed DOLFINx meshes of a box [x0, x1] x [y0, y1] (x [z0, z1]):
quadrilaterals in 2D, hexahedra in 3D, with n_x x n_y (x n_z) fine and N_x x N_y (x N_z) coarse
cells; every coarse cell is split into r_x x r_y (x r_z) fine cells, r_k = n_k / N_k.
Entities are identified across meshes and ranks by *structured keys* (lexicographic, x
fastest, counted from the lower-left (-front) corner):

- fine cell (ix, iy[, iz]) -> ix + n_x iy (+ n_x n_y iz), fine vertex likewise with n_k + 1,
- coarse cell (Ix, Iy[, Iz]) -> Ix + N_x Iy (+ N_x N_y Iz), coarse vertex likewise with N_k + 1.

Each side of the box carries a homogeneous Dirichlet (u = 0, the default) or a homogeneous
Neumann (insulated, a grad u . n = 0) condition, named ``left``/``right`` (x = x0 / x1),
``bottom``/``top`` (y) and in 3D ``front``/``back`` (z); see :data:`SIDES`.

Keys are computed from coordinates, so any partitioning and dof ordering works, including a
user's own structured quadrilateral mesh (:func:`dolfinx_lod.user_mesh.nested_grids_from_mesh`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dolfinx
import dolfinx.fem
import dolfinx.mesh
import numpy as np
import numpy.typing as npt
from mpi4py import MPI
from petsc4py import PETSc

from dolfinx_lod.parallel import check_same, fetch, validate

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


def lattice_coordinates(
    keys: npt.NDArray[np.int64], size: int | npt.ArrayLike, dim: int
) -> npt.NDArray:
    """Inverse of :func:`lattice_keys` (``size`` points per direction, one number or one per
    direction): integer coordinates (N, d) of ``keys``."""
    keys = np.asarray(keys, dtype=np.int64)
    sizes = np.broadcast_to(np.asarray(size, dtype=np.int64), (dim,))
    strides = np.concatenate([[1], np.cumprod(sizes[:-1])]).astype(np.int64)
    return np.stack([(keys // strides[k]) % sizes[k] for k in range(dim)], axis=1)


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


#: Side names in the order (lo, hi) per axis: x = x0, x = x1, y = y0, y = y1, z = z0, z = z1.
SIDES = ("left", "right", "bottom", "top", "front", "back")

Cells = int | tuple[int, ...]


@dataclass
class NestedGrids:
    """Coarse mesh T_H and fine mesh T_h (r_k fine cells per coarse cell in direction k),
    distributed, with the boundary condition of each side.

    Attributes local to a rank describe *owned* entities only; ``coarse_dof_global`` is the
    only array replicated on every rank (coarse size prod(N_k + 1)).
    """

    comm: MPI.Comm
    domain: Domain
    coarse_cells: tuple[int, ...]  # (N_x, N_y[, N_z]) coarse cells per direction
    fine_cells: tuple[int, ...]  # (n_x, n_y[, n_z]) fine cells per direction
    coarse_mesh: dolfinx.mesh.Mesh
    fine_mesh: dolfinx.mesh.Mesh
    #: Sides with a homogeneous Neumann condition (names of :data:`SIDES`); the others Dirichlet.
    neumann: tuple[str, ...] = ()
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
        n, NH = self.fine_sizes, self.coarse_sizes
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
        table = np.zeros(int(np.prod(NH + 1)), dtype=np.int64)
        for keys, dofs in self.comm.allgather((self.coarse_dof_keys, owned_global)):
            table[keys] = dofs
        self.coarse_dof_global = table

    def _dof_keys(self, V: dolfinx.fem.FunctionSpace, spacing, nv) -> npt.NDArray[np.int64]:
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
    def coarse_sizes(self) -> npt.NDArray[np.int64]:
        """N_k, coarse cells per direction, as an array (N_x, N_y[, N_z])."""
        return np.asarray(self.coarse_cells, dtype=np.int64)

    @property
    def fine_sizes(self) -> npt.NDArray[np.int64]:
        """n_k, fine cells per direction, as an array (n_x, n_y[, n_z])."""
        return np.asarray(self.fine_cells, dtype=np.int64)

    @property
    def H(self) -> npt.NDArray[np.float64]:
        """Coarse mesh sizes (H_x, H_y[, H_z])."""
        return self.extent / self.coarse_sizes

    @property
    def h(self) -> npt.NDArray[np.float64]:
        """Fine mesh sizes (h_x, h_y[, h_z])."""
        return self.extent / self.fine_sizes

    @property
    def refinement(self) -> npt.NDArray[np.int64]:
        """r_k = n_k / N_k, fine cells per coarse cell in each direction."""
        return self.fine_sizes // self.coarse_sizes

    @property
    def coarse(self) -> int:
        """N_H, coarse cells per direction of a grid with equal counts in every direction."""
        return _uniform(self.coarse_cells, "coarse cells per direction")

    @property
    def fine(self) -> int:
        """n, fine cells per direction of a grid with equal counts in every direction."""
        return _uniform(self.fine_cells, "fine cells per direction")

    @property
    def r(self) -> int:
        """r = H / h, fine cells per coarse cell, equal in every direction."""
        return _uniform(tuple(map(int, self.refinement)), "fine cells per coarse cell r")

    @property
    def num_fine_cells(self) -> int:
        """prod(n_k), the number of fine cells (cell keys are 0 .. num_fine_cells - 1)."""
        return int(np.prod(self.fine_sizes))

    @property
    def num_fine_vertices(self) -> int:
        """prod(n_k + 1), the number of fine vertices."""
        return int(np.prod(self.fine_sizes + 1))

    @property
    def cell_array_shape(self) -> tuple[int, ...]:
        """Shape of fine-cell arrays: (n_y, n_x) in 2D (A[iy, ix]), (n_z, n_y, n_x) in 3D."""
        return self.fine_cells[::-1]

    @property
    def vertex_array_shape(self) -> tuple[int, ...]:
        """Shape of fine-vertex arrays: (n_y + 1, n_x + 1) in 2D, likewise in 3D."""
        return tuple(int(v) + 1 for v in self.fine_cells[::-1])

    @property
    def dirichlet_sides(self) -> npt.NDArray[np.bool_]:
        """Which sides carry u = 0: shape (d, 2), [axis, (lo, hi)] in :data:`SIDES` order."""
        names = np.asarray(SIDES[: 2 * self.dim]).reshape(self.dim, 2)
        return ~np.isin(names, self.neumann)

    def dirichlet_vertex_mask(self, counts: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """True for the vertices of a lattice with ``counts`` cells per direction (keys,
        x fastest) that lie on a Dirichlet side."""
        counts = np.broadcast_to(np.asarray(counts, dtype=np.int64), (self.dim,))
        index = box_points(counts + 1)
        sides = self.dirichlet_sides
        return ((sides[:, 0] & (index == 0)) | (sides[:, 1] & (index == counts))).any(axis=1)

    def coarse_dirichlet_mask(self) -> npt.NDArray[np.bool_]:
        """True for coarse vertex keys on a Dirichlet side (their V_H dofs are 0)."""
        return self.dirichlet_vertex_mask(self.coarse_sizes)

    def dirichlet_dofs(self, V: dolfinx.fem.FunctionSpace) -> npt.NDArray[np.int32]:
        """Local dofs of a Q1 space on T_h or T_H that lie on a Dirichlet side. Collective."""
        mesh = V.mesh
        tdim = mesh.topology.dim
        lo, hi, sides = self.origin, self.origin + self.extent, self.dirichlet_sides
        tol = 1e-10 * float(self.extent.max())

        def on_dirichlet(x: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
            hit = np.zeros(x.shape[1], dtype=bool)
            for k in range(self.dim):
                hit |= sides[k, 0] & np.isclose(x[k], lo[k], rtol=0.0, atol=tol)
                hit |= sides[k, 1] & np.isclose(x[k], hi[k], rtol=0.0, atol=tol)
            return hit

        facets = dolfinx.mesh.locate_entities_boundary(mesh, tdim - 1, on_dirichlet)
        return dolfinx.fem.locate_dofs_topological(V, tdim - 1, facets)

    def fine_dof_global(self, vertex_keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Global (PETSc) V_h dof numbers of fine vertices given by key. Collective."""
        imap = self.V_h.dofmap.index_map
        owned_global = imap.local_range[0] + np.arange(imap.size_local, dtype=np.int64)
        return fetch(
            self.comm, self.num_fine_vertices, self.fine_dof_keys, owned_global, vertex_keys
        )

    def prolongation(self) -> PETSc.Mat:
        """Prolongation P: V_H -> V_h (nodal interpolation of Q1 into the nested Q1 space).

        Distributed PETSc matrix, rows distributed like V_h, columns like V_H. Collective.
        """
        r, NH, d = self.refinement, self.coarse_sizes, self.dim
        j = lattice_coordinates(self.fine_dof_keys, self.fine_sizes + 1, d)
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


def _uniform(counts: tuple[int, ...], what: str) -> int:
    if len(set(counts)) != 1:
        raise ValueError(
            f"{what} differ between directions {counts}: this needs the same number in every "
            "direction (use the per-direction attributes coarse_cells / fine_cells / refinement)"
        )
    return int(counts[0])


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


def _is_count(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1


def cell_counts(cells: Cells, dim: int, name: str) -> tuple[int, ...]:
    """``cells`` (one count for every direction or one per direction) as a tuple of ``dim``
    counts; ``ValueError`` naming ``name`` unless each is an integer >= 1."""
    counts = (cells,) * dim if _is_count(cells) else cells
    try:
        counts = tuple(counts)  # type: ignore[arg-type]
    except TypeError:
        counts = (cells,)
    if len(counts) != dim or not all(_is_count(c) for c in counts):
        raise ValueError(
            f"{name} must be an integer >= 1 or a tuple of {dim} integers >= 1 (one per "
            f"direction x, y{', z' if dim == 3 else ''}), got {cells!r}"
        )
    return tuple(int(c) for c in counts)


def check_nested(coarse: tuple[int, ...], fine: tuple[int, ...], min_ratio: int = 1) -> None:
    """Raise ``ValueError`` unless N_k divides n_k with r_k = n_k / N_k >= ``min_ratio`` in
    every direction k; the message lists the allowed N_k."""
    several = len(set(coarse)) > 1 or len(set(fine)) > 1
    for axis, NH, n in zip("xyz", coarse, fine, strict=False):
        where = f" in direction {axis}" if several else " per direction"
        allowed = [d for d in range(1, n // min_ratio + 1) if n % d == 0]
        need = f" with r = n / NH >= {min_ratio}" if min_ratio > 1 else ""
        if n % NH:
            raise ValueError(
                f"coarse cells{where} NH ({NH}) must divide fine cells{where} n ({n}){need}; "
                f"allowed: NH in {allowed}"
            )
        if n < min_ratio * NH:
            raise ValueError(
                f"coarse cells{where} NH ({NH}) must be at most n / {min_ratio} = "
                f"{n // min_ratio}: the patch problems need r = n / NH >= {min_ratio} fine "
                f"cells per coarse cell; allowed: NH in {allowed}"
            )


def check_neumann(neumann: object, dim: int) -> tuple[str, ...]:
    """``neumann`` side names as a tuple; ``ValueError`` unless each is one of the ``dim``-D
    :data:`SIDES` (no repeats) and at least one side stays Dirichlet."""
    allowed = SIDES[: 2 * dim]
    names = (neumann,) if isinstance(neumann, str) else tuple(neumann)  # type: ignore[arg-type]
    bad = [s for s in names if s not in allowed]
    if bad or len(set(names)) != len(names):
        raise ValueError(
            f"neumann sides must be distinct names out of {allowed}; got {list(names)}"
        )
    if len(names) == len(allowed):
        raise ValueError(
            "neumann: at least one side must stay Dirichlet (with Neumann conditions on all "
            f"sides u is determined only up to a constant); got all of {list(allowed)}"
        )
    return tuple(s for s in allowed if s in names)


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
    cells: Cells,
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
    comm: MPI.Comm,
    coarse: Cells,
    fine: Cells,
    domain: Domain = UNIT_SQUARE,
    neumann: str | tuple[str, ...] = (),
) -> NestedGrids:
    """Create T_H (N_x x N_y [x N_z] cells) and T_h (n_x x n_y [x n_z] cells) on ``domain``.
    Collective.

    Args:
        comm: Communicator both meshes are distributed over.
        coarse: N_H, coarse cells per direction: one number, or (N_x, N_y[, N_z]).
        fine: n, fine cells per direction: one number, or (n_x, n_y[, n_z]); n_k must be a
            multiple of N_k.
        domain: ((x0, y0), (x1, y1)) for quadrilaterals (d = 2) or ((x0, y0, z0), (x1, y1, z1))
            for hexahedra (d = 3), e.g. :func:`unit_box` (3).
        neumann: Sides with a homogeneous Neumann condition, out of :data:`SIDES` ("left",
            "right", "bottom", "top"[, "front", "back"]); the other sides carry u = 0.

    Raises:
        ValueError: On every rank, for bad counts, domain or side names.
    """

    def check() -> tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...]]:
        _check_domain(domain)
        dim = len(domain[0])
        counts = (
            cell_counts(coarse, dim, "coarse cells per direction NH"),
            cell_counts(fine, dim, "fine cells per direction n"),
        )
        check_nested(*counts)
        return (*counts, check_neumann(neumann, dim))

    validate(comm, check)
    NH, n, sides = check()
    counts = [list(map(int, c)) for c in (NH, n)]  # the same on every rank, or InputError:
    domains = [list(map(float, c)) for c in domain]
    check_same(comm, {"cell counts": counts, "domains": domains, "Neumann sides": sorted(sides)})
    coarse_mesh = box_mesh(comm, domain, NH)
    fine_mesh = box_mesh(comm, domain, n)
    return NestedGrids(comm, domain, NH, n, coarse_mesh, fine_mesh, sides)
