"""The Ritz output of the coefficient-aware network: the network proposes m vectors per patch,
the patch energy picks the correctors in their span.

For a patch with fine cells t (coefficient a_t, Q1 element stiffness K_e of the fine cell sizes
h) and m vectors W = [w_1 .. w_m] (patch vertex values in ker B, zero on the patch's Dirichlet
boundary), the corrector of corner j of T is alpha_j = W c_j with

    (W^T S W) c_j = W^T F_j,   W^T S W = sum_t a_t W_t^T K_e W_t,
                               F_j^T w = sum_{t in T} a_t Lambda_{j,t}^T K_e w_t,

the minimiser of the Deep Ritz energy 1/2 alpha^T S alpha - F_j^T alpha over span W (W_t: the
values at the 2^d corners of cell t). The sums are cell-local: no assembled matrix, no fine
solve; the m x m systems are solved in float64. The correctors do not change when a is scaled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from dolfinx_lod.grids import box_points, corner_bits, lattice_keys, multilinear_weights

#: Tikhonov shift of W^T S W scaled to a unit diagonal, in units of the vectors' dtype's
#: epsilon: vectors that are (nearly) dependent.
RIDGE = 10.0


def element_stiffness(h: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """K_e = int_t grad phi_c . grad phi_c' of the Q1 cell [0, h_1] x .. x [0, h_d], shape
    (2^d, 2^d), corners in :func:`~dolfinx_lod.grids.corner_bits` order (x fastest)."""
    h = np.asarray(h, dtype=np.float64)
    stiff = [np.array([[1.0, -1.0], [-1.0, 1.0]]) / hk for hk in h]
    mass = [np.array([[2.0, 1.0], [1.0, 2.0]]) * hk / 6 for hk in h]
    K = np.zeros((2**h.size,) * 2)
    for k in range(h.size):
        factors = [stiff[i] if i == k else mass[i] for i in range(h.size)]
        term = np.ones((1, 1))
        for f in factors:  # axis 0 (x) is the fastest: the last Kronecker factor
            term = np.kron(f, term)
        K += term
    return K


@dataclass
class RitzMaps:
    """The cell-local data of one patch configuration: per patch cell the local indices of its
    2^d corner vertices (``corners``, (n_t, 2^d)), the patch cells of T (``on_T``) and the hats
    Lambda_j at their corners (``hats``, (n_T, 2^d corners, 2^d j)), K_e, and the patch's fine
    cells per direction (``cells``, x first: the vertices are that box's lattice)."""

    corners: torch.Tensor
    on_T: torch.Tensor
    hats: torch.Tensor
    K: torch.Tensor
    cells: tuple[int, ...]

    @classmethod
    def build(cls, shape, element, r: int, h: npt.ArrayLike) -> RitzMaps:
        """The maps of the patch of ``shape`` coarse cells (T at coarse offset ``element``) with
        ``r`` fine cells per coarse cell of sizes ``h``."""
        cells = np.asarray(shape) * r
        d = cells.size
        lower = box_points(cells)  # lower corner of every patch cell, local cell order
        bits = corner_bits(d)
        corners = lattice_keys((lower[:, None, :] + bits[None]).reshape(-1, d), cells + 1)
        inside = (lower // r == np.asarray(element)).all(axis=1)
        local = (lower[inside][:, None, :] + bits[None] - np.asarray(element) * r) / r
        hats = multilinear_weights(local.reshape(-1, d)).reshape(-1, 2**d, 2**d)
        return cls(
            torch.from_numpy(corners.reshape(-1, 2**d)),
            torch.from_numpy(np.nonzero(inside)[0]),
            torch.from_numpy(hats),
            torch.from_numpy(element_stiffness(h)),
            tuple(int(c) for c in cells),
        )

    def _add(self, local: torch.Tensor, cells: torch.Tensor | None = None) -> torch.Tensor:
        """Sum cell values ``local`` (..., n, 2^d) of the patch cells ``cells`` (default: all)
        into their corner vertices: (..., N)."""
        corners = self.corners if cells is None else self.corners[cells]
        N = int(np.prod([c + 1 for c in self.cells]))  # the vertex box
        out = torch.zeros(*local.shape[:-2], N, dtype=local.dtype, device=local.device)
        return out.index_add_(-1, corners.to(local.device).flatten(), local.flatten(-2))

    def apply(self, V: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """S V (..., c, N) for V (..., c, N) and a (..., n_t): sum_t a_t K_e V_t, cell by cell,
        on the patch's box: the values at corner c' of every cell are a strided view of V,
        one product with K_e maps them to the cells' corner terms, which are added back."""
        d, cells = len(self.cells), tuple(reversed(self.cells))  # (z,) y, x: x fastest
        X = V.reshape(V.shape[:-1] + tuple(n + 1 for n in cells))
        windows = self._windows()
        views = [X[(...,) + window] for window in windows]
        K = self.K.to(V.device, V.dtype)
        local = (K @ torch.stack(views).reshape(2**d, -1)).reshape((2**d,) + X.shape[:-d] + cells)
        local = local * a.reshape(a.shape[:-1] + (1,) + cells)
        out = torch.zeros_like(X)
        for c, window in enumerate(windows):
            out[(...,) + window] += local[c]
        return out.reshape(V.shape)

    def _windows(self) -> list[tuple[slice, ...]]:
        """Per corner c of a cell (:func:`corner_bits` order) the slices (z, y, x order) of the
        vertex box that hold corner c of every cell."""
        bits = corner_bits(len(self.cells))
        cells = tuple(reversed(self.cells))
        return [
            tuple(slice(b, b + n) for b, n in zip(bit[::-1], cells, strict=True)) for bit in bits
        ]

    def loads(self, a: torch.Tensor) -> torch.Tensor:
        """F (..., 2^d, N): F_j = sum_{t in T} a_t K_e Lambda_{j,t} at the patch vertices."""
        K, hats = self.K.to(a.device, a.dtype), self.hats.to(a.device, a.dtype)
        on_T = self.on_T.to(a.device)
        local = (K @ hats).permute(2, 0, 1) * a[..., None, on_T, None]  # (..., j, n_T, 2^d)
        return self._add(local, self.on_T)

    def diagonal(self, a: torch.Tensor) -> torch.Tensor:
        """diag S (..., N): sum_{t at v} a_t (K_e)_{cc}."""
        K = self.K.to(a.device, a.dtype)
        return self._add(a[..., :, None] * K.diagonal())

    def span(self, W: torch.Tensor, a: torch.Tensor, F: torch.Tensor) -> RitzSpan:
        """The :class:`RitzSpan` of the vectors W (..., m, N) for a (..., n_t) on the patch
        cells (local order) and the loads F (:meth:`loads`)."""
        empty = W[..., :0, :]
        return self.grow(RitzSpan(empty, empty, None, None), W, a, F)

    def grow(
        self,
        span: RitzSpan,
        Z: torch.Tensor,
        a: torch.Tensor,
        F: torch.Tensor,
        project: Callable[[torch.Tensor], torch.Tensor] = lambda v: v,
    ) -> RitzSpan:
        """``span`` with the vectors Z (..., k, N) appended after their S-orthogonal projection
        out of span W (one block Gram-Schmidt pass: a long span stays well conditioned)
        followed by ``project`` (onto ker B: what is left of a nearly dependent vector is
        rounding noise, which must not leave ker B, or the energy would exploit it); only the
        new rows and columns of W^T S W are computed, as (S W) Z^T: one cell-local product
        S Z per new vector, none per old one."""
        if span.gram is not None:
            cross = span.SW @ Z.transpose(-1, -2)  # W^T S Z (..., m, k)
            X = _unit_solve(span.gram, cross.double(), torch.finfo(Z.dtype).eps).to(Z.dtype)
            Z = project(Z - X.transpose(-1, -2) @ span.W)
        SZ = self.apply(Z, a)
        own = (Z @ SZ.transpose(-1, -2)).double()  # (..., k, k)
        loads = (Z @ F.transpose(-1, -2)).double()  # (..., k, 2^d)
        if span.gram is None:
            gram, all_loads = own, loads
        else:  # W^T S Z again: ~0 after the Gram-Schmidt pass, not after the projection
            cross = (span.SW @ Z.transpose(-1, -2)).double()
            top = torch.cat([span.gram, cross], dim=-1)
            gram = torch.cat([top, torch.cat([cross.transpose(-1, -2), own], dim=-1)], dim=-2)
            all_loads = torch.cat([span.loads, loads], dim=-2)
        return RitzSpan(torch.cat([span.W, Z], -2), torch.cat([span.SW, SZ], -2), gram, all_loads)

    @staticmethod
    def solve(span: RitzSpan) -> torch.Tensor:
        """alpha (..., 2^d, N) = W c, c = (W^T S W)^{-1} W^T F (:func:`_unit_solve`)."""
        return RitzMaps.coefficients(span).transpose(-1, -2) @ span.W

    @staticmethod
    def coefficients(span: RitzSpan) -> torch.Tensor:
        """c (..., m, 2^d) = (W^T S W)^{-1} W^T F (:func:`_unit_solve`) in the vectors' dtype:
        alpha = c^T W, and S alpha = c^T (S W) without a product with S."""
        return _unit_solve(span.gram, span.loads, torch.finfo(span.W.dtype).eps).to(span.W.dtype)

    def combine(self, W: torch.Tensor, a: torch.Tensor, F: torch.Tensor | None = None):
        """alpha (..., 2^d, N): the Deep Ritz minimisers in span W (..., m, N) for a (..., n_t)
        on the patch cells (F: :meth:`loads`, computed if not given)."""
        return self.solve(self.span(W, a, self.loads(a) if F is None else F))


@dataclass
class RitzSpan:
    """Vectors W (..., m, N) with S W (:meth:`RitzMaps.apply`), W^T S W and W^T F (float64;
    None while empty)."""

    W: torch.Tensor
    SW: torch.Tensor
    gram: torch.Tensor | None
    loads: torch.Tensor | None


def _unit_solve(gram: torch.Tensor, rhs: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """gram^{-1} rhs in float64 after scaling the vectors to unit energy, with a shift of
    :data:`RIDGE` ``eps`` (the vectors' dtype's epsilon) for (nearly) dependent ones."""
    s = gram.diagonal(dim1=-2, dim2=-1).clamp_min(1e-300).rsqrt()
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    scaled = gram * s[..., :, None] * s[..., None, :] + RIDGE * eps * eye
    return s[..., :, None] * torch.linalg.solve(scaled, rhs * s[..., :, None])
