"""Patch bases of the reduced networks: alpha = V_T c, V_T the POD of the classical training
correctors in ker B, and the Deep Ritz system in the coordinates c."""

from __future__ import annotations

import torch

from dolfinx_lod.neural.export import PatchBatch


def patch_bases(batch: PatchBatch, modes: int) -> torch.Tensor:
    """Bases V_T (G, N, q) of the span of the classical training correctors of each patch
    (POD: leading left singular vectors above 1e-6 of the largest; zero columns beyond),
    projected onto ker B so that B V_T = 0 holds to rounding, and orthonormal in the energy of
    the mean training stiffness (V^T mean_k S(p_k) V = I), so that the Deep Ritz energy is well
    conditioned in the coordinates even for high-contrast coefficients. Like the correctors,
    the columns vanish on the patch boundary."""
    C = batch.C.double()
    G, K, N, corners = C.shape
    V = torch.zeros(G, N, modes, dtype=torch.float64)
    m = batch.B.shape[0] // G
    (rows, cols), values = batch.B.indices(), batch.B.values().double()  # coalesced: row-sorted
    bounds = torch.searchsorted(rows, torch.arange(G + 1) * m)
    for g in range(G):
        U, s, _ = torch.linalg.svd(
            C[g].permute(1, 0, 2).reshape(N, K * corners), full_matrices=False
        )
        keep = min(modes, int((s > 1e-6 * s[0]).sum()))
        Vg = U[:, :keep]
        lo, hi = bounds[g], bounds[g + 1]
        Bg = torch.zeros(m, N, dtype=torch.float64)
        Bg[rows[lo:hi] - g * m, cols[lo:hi] - g * N] = values[lo:hi]
        Bg = Bg[Bg.abs().sum(1) > 0]  # drop padding rows
        Vg = Vg - Bg.T @ torch.linalg.solve(Bg @ Bg.T, Bg @ Vg)
        V[g, :, :keep] = torch.linalg.qr(Vg)[0]
    # Energy-orthonormalize with the mean stiffness (zero columns stay zero).
    SV = batch.apply_stiffness(V.to(batch.S.dtype)[:, None].expand(-1, K, -1, -1)).double().mean(1)
    M = V.transpose(1, 2) @ SV
    M = 0.5 * (M + M.transpose(1, 2))
    used = (V.abs().sum(1) > 0).double()  # (G, q)
    M = M + torch.diag_embed(1 - used)  # identity on unused columns
    L = torch.linalg.cholesky(M)
    V = torch.linalg.solve_triangular(L, V.transpose(1, 2), upper=False).transpose(1, 2)
    return V.to(batch.C.dtype)


def reduced_system(batch: PatchBatch, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Deep Ritz data in the coordinates of the patch bases V (G, N, q): A_k = V^T S_k V
    (G, K, q, q) and b_k = V^T F_k (G, K, q, 4), so that for alpha = V c the energy
    1/2 alpha^T S_k alpha - F_k^T alpha equals 1/2 c^T A_k c - b_k^T c exactly."""
    K = batch.shape[1]
    Vk = V.to(batch.S.dtype)[:, None].expand(-1, K, -1, -1)
    A = Vk.transpose(2, 3) @ batch.apply_stiffness(Vk)
    return 0.5 * (A + A.transpose(2, 3)), Vk.transpose(2, 3) @ batch.F


def reduced_energy(A: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """mean_k (1/2 c^T A_k c - b_k^T c) per network (T, j), shape (G, 4), for coordinates
    c (G, K, q, 4): the terms of :func:`energy_terms` for alpha = V c."""
    return (0.5 * c * (A @ c) - b * c).sum(dim=(1, 2)) / c.shape[1]


def ritz_coordinate_statistics(
    A: torch.Tensor, b: torch.Tensor, V: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over the training samples of the Ritz coordinates
    c_k = argmin 1/2 c^T A_k c - b_k^T c (the minimizers of the Deep Ritz energy in span V, for
    the :func:`reduced_system` A, b of V), shape (G, q, 4) each: the output normalization of
    the reduced networks."""
    unused = (V.abs().sum(1) == 0).double()  # (G, q)
    c = torch.linalg.solve(A.double() + torch.diag_embed(unused)[:, None], b.double())
    K = c.shape[1]
    offset, std = c.mean(1), c.std(1, correction=0) if K > 1 else torch.zeros_like(c[:, 0])
    scale = torch.maximum(std, 1e-3 * offset.abs().amax(dim=(1, 2), keepdim=True) + 1e-12)
    return offset.to(A.dtype), scale.to(A.dtype)
