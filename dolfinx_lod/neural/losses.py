"""Deep Ritz loss terms of the corrector networks (paper (14)–(18)).

For every owned patch (network) and training parameter p_k, with alpha = network output at the
patch vertices (2^d columns, one per corner j of T),

    energy  E = sum_{T, j} 1/N_s sum_k [ 1/2 alpha^T S(p_k) alpha - F_j(p_k)^T alpha ]          (14)
    penalty P = sum_{T, j} 1/N_s 1/(N_s N_H^l) ||mu_{T,j} (.) I_H^l alpha_{T,j}||_2^2        (16)

(N_s = K samples, N_H^l = coarse vertices of the patch: rows of its I_H^l = B) and the networks
solve the min-max problem min_theta max_mu E + P (18) (:mod:`dolfinx_lod.neural.trainer`).
Per network (T, j) this is the paper's loss (17) = (14) + (16) divided by N_s, which leaves
Adam's steps unchanged (Adam is invariant to a constant factor of the loss, up to its epsilon)
and keeps the learning rate independent of N_s. E is the element version of the paper's energy:
for element correctors C_T Lambda_j the linear term is the element load F_j of (7). The loss is
a sum of one term per network (T, j) (:func:`energy_terms`, :func:`penalty_terms`).

The coefficient-aware networks (:class:`~dolfinx_lod.neural.cnn.CoefficientNetworks`) see a on
the patch instead of p. Their outputs can be projected exactly onto ker B (B does not depend on
a): then P = 0, no multiplier is needed and E's minimizer is the classical corrector, so the
training needs the coefficients alone. Their energy is weighted per patch and sample by
1 / sum_j F_j^T Lambda_j = 1 / sum_j ||Lambda_j||_{a,T}^2 (:func:`energy_weights`, computed
from a, not from correctors), which leaves the minimizer unchanged and makes every sample count
alike; or (``energy_scale="field"``) by 1 / the mean of that energy over the field's patches
(:func:`field_energy_weights`): every field counts alike and within it every patch by its
absolute energy, as in the solution's energy error.
"""

from __future__ import annotations

import numpy as np
import torch
from mpi4py import MPI

from dolfinx_lod.neural.export import PatchBatch


class _EnergyTerms(torch.autograd.Function):
    """Per network (T, j): the sum over samples and vertices of 1/2 a.Sa - F.a, shape (G, c),
    for a, F in the layout (K G N, c) (``shape`` = (K, G, N)); the gradient S a - F from the
    one product S a (S symmetric)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, S: torch.Tensor, F: torch.Tensor, shape: tuple):
        Sa = S @ a
        ctx.save_for_backward(Sa - F)
        ctx.shape = shape
        return (0.5 * a * Sa - F * a).reshape(*shape, -1).sum(dim=(0, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (gradient,) = ctx.saved_tensors
        terms = grad[None, :, None, :] * gradient.reshape(*ctx.shape, -1)
        return terms.reshape(gradient.shape), None, None, None


class _PenaltyTerms(torch.autograd.Function):
    """Per network (T, j): sum_{k, c} w_c (mu (B a))_{c, k j}^2, shape (G, 2^d), for a in the
    layout (G N, K 2^d) and mu, w (rows of B) in the layout (G m, K 2^d) (``shape`` =
    (G, m, K, 2^d)); gradients 2 B^T (w mu^2 B a) in a and 2 w mu (B a)^2 in mu."""

    @staticmethod
    def forward(ctx, a, mu, w, B, Bt, shape: tuple) -> torch.Tensor:
        Ba = B @ a
        ctx.save_for_backward(Ba, mu, w)
        ctx.Bt, ctx.shape = Bt, shape
        return (w * (mu * Ba) ** 2).reshape(shape).sum(dim=(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        Ba, mu, w = ctx.saved_tensors
        G, m, K, c = ctx.shape
        g = grad[:, None, None, :].expand(G, m, K, c).reshape(Ba.shape)
        return 2 * (ctx.Bt @ (g * w * mu**2 * Ba)), 2 * g * w * mu * Ba**2, None, None, None, None


def network_outputs(
    nets: torch.nn.Module, batch: PatchBatch, params: torch.Tensor, project: bool = False
) -> torch.Tensor:
    """alpha (G, K, N, 4) of any corrector network for the patches and samples of ``batch``:
    coefficient-aware networks read a on the patches (``batch.a``), the others the scaled
    parameters ``params`` (K, N_p)."""
    if nets.needs_coefficient:
        return nets(batch.configs, batch.a, project)
    return nets(batch.coords, params)


def energy_weights(batch: PatchBatch) -> torch.Tensor:
    """w_{T,k} = 1 / sum_j ||Lambda_j||_{a_k,T}^2 > 0, shape (G, K): from the coefficient
    alone (no corrector)."""
    return 1.0 / batch.energy


def field_energy_weights(batch: PatchBatch, comm: MPI.Comm) -> torch.Tensor:
    """w_{T,k} = 1 / mean_{T'} sum_j ||Lambda_j||_{a_k,T'}^2, the mean over all patches of
    field k (all ranks), shape (G, K): every field counts alike, its patches by their absolute
    energy (as in the solution's energy error). Collective."""
    G, K = batch.energy.shape
    local = np.concatenate([batch.energy.double().sum(0).cpu().numpy(), [G]])
    total = comm.allreduce(local, op=MPI.SUM)
    mean = torch.as_tensor(total[:K] / max(total[K], 1), dtype=batch.energy.dtype)
    return (1.0 / mean).to(batch.energy.device)[None, :].expand(G, K)


def energy_terms(
    batch: PatchBatch, alpha: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """E_{T,j} = mean_k w_{T,k} (1/2 alpha^T S alpha - F_j^T alpha) (14) per network (T, j),
    shape (G, 2^d), for alpha (G, K, N, 2^d) (w = 1 unless ``weights`` (G, K) are given)."""
    G, K, N, _ = alpha.shape
    F = batch.F
    if weights is not None:  # w (1/2 a.Sa - F.a) = 1/2 b.Sb - G.b, b = sqrt(w) a, G = sqrt(w) F
        root = weights.sqrt()[:, :, None, None]
        alpha, F = alpha * root, F * root
    a, F = batch.stiffness_layout(alpha), batch.stiffness_layout(F)
    return _EnergyTerms.apply(a, batch.block_stiffness, F, (K, G, N)) / K


def deep_ritz_energy(
    batch: PatchBatch, alpha: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """E = sum_{T, j} E_{T,j} of :func:`energy_terms`."""
    return energy_terms(batch, alpha, weights).sum()


def constraint_weights(batch: PatchBatch, samples: int) -> torch.Tensor:
    """The normalization 1 / (N_s^2 N_H^l) of (16) (times 1/N_s, see the module) for every row
    of B: N_H^l the rows of the row's patch (its coarse vertices; padding rows count not),
    in the layout (G m, 1)."""
    G = len(batch.cells)
    m = batch.B.shape[0] // max(G, 1)
    rows = torch.unique(batch.B.indices()[0])
    counts = torch.bincount(rows // m, minlength=G).clamp_min(1).to(batch.F.dtype)
    return (1.0 / (samples**2 * counts)).repeat_interleave(m)[:, None].to(batch.F.device)


def penalty_terms(
    batch: PatchBatch, alpha: torch.Tensor, mu: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """P_{T,j} = ||mu (.) I_H^l alpha||^2 / (N_s^2 N_H^l) (16) per network (T, j), shape
    (G, 2^d), for alpha (G, K, N, 2^d) and mu in the layout (G m, K 2^d); ``weights``: the
    :func:`constraint_weights` of ``batch`` (computed if not given)."""
    G, K, _, c = alpha.shape
    B, Bt = batch.constraint_csr
    w = constraint_weights(batch, K) if weights is None else weights
    shape = (G, B.shape[0] // max(G, 1), K, c)
    return _PenaltyTerms.apply(batch.constraint_layout(alpha), mu, w, B, Bt, shape)


def adaptive_penalty(batch: PatchBatch, alpha: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """P = sum_{T, j} P_{T,j} of :func:`penalty_terms`."""
    return penalty_terms(batch, alpha, mu).sum()
