"""Export of the patch problems to torch: exactly the matrices the classical solver uses.

For the G owned patches and K parameter samples p_k, :class:`PatchBatch` holds, per patch in its
local vertex order and padded to the largest patch (N vertices, m constraints),

- S_h^l(p_k): patch stiffness (Dirichlet rows = identity) as values (G, K, nnz) on per-patch CSR
  patterns, available as a batched torch sparse CSR tensor (:meth:`PatchBatch.stiffness`),
- F_j(p_k) = (v -> int_T a grad Lambda_j . grad v): element right-hand sides (G, K, N, 2^d),
- B: the patch quasi-interpolation (constraint) matrices, one block-diagonal torch sparse COO
  tensor (G m, G N) (sparse: no dense block-diagonal matrix is ever formed),
- Lambda_j: T's 2^d coarse basis functions at the patch vertices (G, N, 2^d),
- a(p_k) on each patch's fine cells (G, K, M), local cell order (padding: 1), the input of the
  coefficient-aware networks,
- optionally the classical correctors C(p_k) (G, K, N, 2^d) as reference (d = 2, 3).

All of it comes from :meth:`dolfinx_lod.patch_problem.PatchProblem.system` (DOLFINx); nothing is
assembled in torch. Padding vertices carry zero data and sit at (0, 0), where the localization
(and, for the reduced networks, the zero rows of V_T) make the outputs vanish.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.grids import box_points
from dolfinx_lod.interpolation import patch_constraints
from dolfinx_lod.patches import Configuration

# torch marks its sparse CSR support as beta; the products used here are covered by tests.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


def patch_coordinates(config: Configuration, r: int) -> torch.Tensor:
    """Patch vertices in local vertex order, scaled to [0, 1]^d: shape (N, d), float64."""
    cells = np.asarray(config.shape) * r
    return torch.as_tensor(box_points(cells + 1) / cells, dtype=torch.float64)


@dataclass
class PatchBatch:
    """Deep Ritz data of the rank's owned patches, padded to common sizes (rank-local)."""

    cells: npt.NDArray[np.int64]  # (G,) coarse cell keys T
    configs: list[Configuration]  # (G,)
    coords: torch.Tensor  # (G, N, d) vertices scaled to [0, 1]^d (padding: 0)
    hats: torch.Tensor  # (G, N, 2^d)
    num_vertices: npt.NDArray[np.int64]  # (G,) real vertices per patch
    num_entries: npt.NDArray[np.int64]  # (G,) real entries of S per patch
    rows: torch.Tensor  # (G, nnz) CSR rows of S (padding entries: row 0, value 0)
    cols: torch.Tensor  # (G, nnz)
    S: torch.Tensor  # (G, K, nnz)
    F: torch.Tensor  # (G, K, N, 2^d)
    B: torch.Tensor  # (G m, G N) sparse COO, block diagonal
    C: torch.Tensor | None  # (G, K, N, 2^d) classical correctors
    a: torch.Tensor  # (G, K, M) coefficient on the patch cells
    energy: torch.Tensor  # (G, K) sum_j ||Lambda_j||^2_{a_k,T}
    layers: int  # l
    Pi: torch.Tensor  # (2^d, (r+1)^d) local L2 projection Pi_K of I_H
    cell: tuple[float, ...]  # fine cell sizes h (x first)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(G, K, N)."""
        G, K, N, _ = self.F.shape
        return G, K, N

    @functools.cached_property
    def block_stiffness(self) -> torch.Tensor:
        """All S_h^l(p_k) as one block-diagonal sparse CSR matrix over (k, T, vertex), size
        (K G N)^2, for alpha in the layout of :meth:`stiffness_layout`."""
        G, K, N = self.shape
        offset = (torch.arange(K * G, device=self.rows.device) * N).reshape(K, G, 1)
        rows = (self.rows[None] + offset).ravel()
        cols = (self.cols[None] + offset).ravel()
        values = self.S.transpose(0, 1).ravel()
        A = torch.sparse_coo_tensor(
            torch.stack([rows, cols]), values, (K * G * N,) * 2, check_invariants=True
        )
        return A.coalesce().to_sparse_csr()

    @functools.cached_property
    def constraint_csr(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, B^T) as sparse CSR matrices, for alpha in the layout of
        :meth:`constraint_layout`."""
        return self.B.to_sparse_csr(), self.B.t().coalesce().to_sparse_csr()

    @staticmethod
    def stiffness_layout(alpha: torch.Tensor) -> torch.Tensor:
        """alpha (G, K, N, c) -> (K G N, c)."""
        G, K, N, c = alpha.shape
        return alpha.transpose(0, 1).reshape(K * G * N, c)

    @staticmethod
    def constraint_layout(alpha: torch.Tensor) -> torch.Tensor:
        """alpha (G, K, N, c) -> (G N, K c)."""
        G, K, N, c = alpha.shape
        return alpha.permute(0, 2, 1, 3).reshape(G * N, K * c)

    def stiffness(self, g: int) -> torch.Tensor:
        """S_h^l(p_k) of patch g as a torch sparse CSR tensor batched over the samples,
        shape (K, n_g, n_g) (n_g the patch's vertices)."""
        _, K, _ = self.shape
        n, nnz = int(self.num_vertices[g]), int(self.num_entries[g])
        rows = self.rows[g, :nnz]
        crow = torch.zeros(n + 1, dtype=torch.int64)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
        return torch.sparse_csr_tensor(
            crow.expand(K, n + 1).contiguous(),
            self.cols[g, :nnz].expand(K, nnz).contiguous(),
            self.S[g, :, :nnz].contiguous(),
            size=(K, n, n),
            check_invariants=True,
        )

    def apply_stiffness(self, alpha: torch.Tensor) -> torch.Tensor:
        """S alpha for alpha (G, K, N, c)."""
        G, K, N, c = alpha.shape
        out = self.block_stiffness @ self.stiffness_layout(alpha)
        return out.reshape(K, G, N, c).transpose(0, 1)

    def select(self, samples) -> PatchBatch:
        """The same patches restricted to some parameter samples."""
        C = None if self.C is None else self.C[:, samples]
        return PatchBatch(
            **{
                **{k: getattr(self, k) for k in self.__dataclass_fields__},
                "S": self.S[:, samples],
                "F": self.F[:, samples],
                "a": self.a[:, samples],
                "energy": self.energy[:, samples],
                "C": C,
            }
        )

    def to(self, device: torch.device) -> PatchBatch:
        """A copy on ``device``."""
        moved = {
            k: getattr(self, k).to(device)
            for k in ("coords", "hats", "rows", "cols", "S", "F", "B", "a", "energy")
        }
        C = None if self.C is None else self.C.to(device)
        return PatchBatch(
            **{**{k: getattr(self, k) for k in self.__dataclass_fields__}, **moved, "C": C}
        )


def _constraint_matrix(basis: MultiscaleBasis, m: int, N: int, dtype: torch.dtype) -> torch.Tensor:
    """The block-diagonal I_H^l = B of the owned patches, (G m, G N) sparse (coalesced), patch g
    in rows g m.. and columns g N.."""
    G = len(basis.patches)
    b_rows, b_cols, b_vals = [], [], []
    for g, patch in enumerate(basis.patches):
        Bg = patch_constraints(patch.configuration, basis.grids.r, basis.Pi)
        i, j = np.nonzero(Bg)
        b_rows.append(g * m + i)
        b_cols.append(g * N + j)
        b_vals.append(Bg[i, j])
    return torch.sparse_coo_tensor(
        torch.tensor(
            np.array([np.concatenate(b_rows or [[]]), np.concatenate(b_cols or [[]])]),
            dtype=torch.int64,
        ),
        torch.tensor(np.concatenate(b_vals or [[]]), dtype=dtype),
        size=(G * m, G * N),
        check_invariants=True,
    ).coalesce()


def export_patches(
    basis: MultiscaleBasis,
    a,
    params: npt.NDArray[np.float64],
    with_correctors: bool = True,
    dtype: torch.dtype = torch.float32,
) -> PatchBatch:
    """Patch data of the rank's owned patches for the coefficients a(x, p_k). Collective (the
    coefficient values of each p_k are fetched from their owners).

    Args:
        basis: Multiscale basis whose owned patches and patch problems are used.
        a: Coefficient family a(x, p).
        params: Parameters p_k, shape (K, N_p).
        with_correctors: Also solve the classical patch problems (reference correctors).
        dtype: torch dtype of the exported tensors.
    """
    r, G, K, d = basis.grids.r, len(basis.patches), len(params), basis.grids.dim
    problems = [basis.patch_problem(g) for g in range(G)]
    N = max((pr.num_dofs for pr in problems), default=1)
    nnz = max((pr.num_entries for pr in problems), default=1)
    m = max((pr.num_constraints for pr in problems), default=1)
    S = np.zeros((G, K, nnz))
    F = np.zeros((G, K, N, 2**d))
    C = np.zeros((G, K, N, 2**d)) if with_correctors else None
    M = max((len(patch.fine_cell_keys(basis.grids)) for patch in basis.patches), default=1)
    A = np.ones((G, K, M))
    E = np.ones((G, K))
    for k, p in enumerate(params):
        for g, a_patch in enumerate(basis.patch_coefficients(a, p)):
            problem = problems[g]
            system = problem.system(a_patch)
            A[g, k, : a_patch.size] = a_patch
            if with_correctors:
                C[g, k, : problem.num_dofs] = problem.solve(a_patch)
            S[g, k, : problem.num_entries] = system.S
            F[g, k, : problem.num_dofs] = system.F
            E[g, k] = system.energy
    coords = torch.zeros(G, N, d, dtype=torch.float64)
    hats = np.zeros((G, N, 2**d))
    rows = np.zeros((G, nnz), dtype=np.int64)
    cols = np.zeros((G, nnz), dtype=np.int64)
    for g, (patch, problem) in enumerate(zip(basis.patches, problems, strict=True)):
        n_g = problem.num_dofs
        coords[g, :n_g] = patch_coordinates(patch.configuration, r)
        hats[g, :n_g] = problem.vertex_hats
        crow, col = problem.vertex_pattern
        rows[g, : col.size] = np.repeat(np.arange(crow.size - 1), np.diff(crow))
        cols[g, : col.size] = col
    return PatchBatch(
        cells=np.array([patch.cell for patch in basis.patches], dtype=np.int64),
        configs=[patch.configuration for patch in basis.patches],
        coords=coords.to(dtype),
        num_vertices=np.array([pr.num_dofs for pr in problems], dtype=np.int64),
        num_entries=np.array([pr.num_entries for pr in problems], dtype=np.int64),
        hats=torch.tensor(hats, dtype=dtype),
        rows=torch.tensor(rows),
        cols=torch.tensor(cols),
        S=torch.tensor(S, dtype=dtype),
        F=torch.tensor(F, dtype=dtype),
        B=_constraint_matrix(basis, m, N, dtype),
        C=None if C is None else torch.tensor(C, dtype=dtype),
        a=torch.tensor(A, dtype=dtype),
        energy=torch.tensor(E, dtype=dtype),
        layers=basis.layers,
        Pi=torch.tensor(basis.Pi, dtype=torch.float64),
        cell=tuple(float(h) for h in basis.grids.h),
    )
