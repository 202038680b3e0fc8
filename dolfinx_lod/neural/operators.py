"""Learned Petrov–Galerkin local operators (operator compression): networks p -> (K_T, M_T).

For a coefficient family a(x, p), each patch's local operators (K_T(p), M_T(p)) (see
:meth:`dolfinx_lod.correctors.PatchProblem.local_operators`) are a small, smooth map of p:
prod_k (w_k + 1) x 2^d numbers each. :class:`LearnedOperators` fits one MLP per owned patch to
them by least squares at training parameters (Kröpfl, Maier, Peterseim, *Operator compression
with deep neural networks*, 2022: learn the local coarse contributions instead of
reassembling them), with the outputs normalized per entry. :class:`OperatorProvider` pairs the
networks with a corrector provider: a :class:`~dolfinx_lod.basis.MultiscaleBasis` built with a
capacity then takes the operators from the networks, so a Petrov–Galerkin step of the
:class:`~dolfinx_lod.timestepping.LODStepper` reads no coefficient and touches no fine-scale or
patch data; the correctors are evaluated only when B is asked for (output steps).

Rank-local: each rank fits and evaluates the networks of the patches it owns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.coefficients import Family
from dolfinx_lod.correctors import ClassicalCorrectors, CorrectorProvider
from dolfinx_lod.neural.networks import _BatchedMLP
from dolfinx_lod.neural.provider import scale_parameters
from dolfinx_lod.patches import Patch


def operator_samples(
    basis: MultiscaleBasis, family: Family, params: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Local operators of every owned patch at each parameter: shape (G, K, 2 N_max 2^d), rows
    [K_T; M_T] flattened and zero-padded to the largest patch. ``basis`` must have a capacity
    (its provider produces the correctors). Collective."""
    if not basis.with_operators:
        raise ValueError("operator samples need a MultiscaleBasis built with a capacity")
    size = max((len(p.coarse_vertex_keys(basis.grids.coarse)) for p in basis.patches), default=1)
    corners = 2**basis.grids.dim
    out = np.zeros((len(basis.patches), len(params), 2 * size * corners))
    for k, p in enumerate(params):
        basis.update(family.a, p, assemble=False)
        for g, (K, M) in enumerate(basis.operators):
            out[g, k, : K.size] = K.ravel()
            out[g, k, size * corners : size * corners + M.size] = M.ravel()
    return out


class LearnedOperators(_BatchedMLP):
    """G MLPs p -> (K_T, M_T) (tanh, ``width`` x ``depth``), outputs normalized per entry by
    the training data's mean and spread. Rank-local."""

    def __init__(
        self,
        cells: Sequence[int],
        sizes: Sequence[int],
        family: Family,
        width: int = 32,
        depth: int = 3,
        dim: int = 2,
    ):
        self.size, self.corners = max(sizes, default=1), 2**dim
        outputs = 2 * self.size * self.corners
        super().__init__(len(cells), family.num_params, outputs, width, depth)
        self.family = family
        self.cells = np.asarray(cells, dtype=np.int64)
        self.sizes = list(sizes)
        self.register_buffer("offset", torch.zeros(len(cells), 1, outputs))
        self.register_buffer("scale", torch.ones(len(cells), 1, outputs))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        """Normalized outputs for scaled parameters p (K, N_p): shape (G, K, 2 N_max 2^d)."""
        h = torch.einsum("gon,kn->gko", self.weights[0], p)[:, :, None, :] + self.biases[0]
        return self.hidden(h, None)[:, :, 0, :]

    def fit(
        self,
        params: npt.NDArray[np.float64],
        samples: npt.NDArray[np.float64],
        epochs: int = 2000,
        lr: float = 1e-2,
        seed: int = 0,
    ) -> float:
        """Least-squares fit of the normalized samples (G, K, 2 N_max 2^d) at ``params`` with Adam
        (learning rate decayed 100x over the epochs). Returns the final mean squared error of
        the normalized outputs."""
        torch.manual_seed(seed)
        y = torch.tensor(samples, dtype=torch.float32)
        with torch.no_grad():
            self.offset.copy_(y.mean(1, keepdim=True))
            self.scale.copy_(y.std(1, keepdim=True).clamp_min(1e-12 + 1e-6 * y.abs().max()))
        target = (y - self.offset) / self.scale
        p = scale_parameters(self.family, params)
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.01 ** (1 / epochs))
        loss = torch.zeros(())
        for _ in range(epochs):
            optimizer.zero_grad()
            loss = ((self(p) - target) ** 2).mean()
            loss.backward()
            optimizer.step()
            schedule.step()
        return float(loss.detach())

    def evaluate(self, p: Any) -> npt.NDArray[np.float64]:
        """(K_T, M_T) flattened for one parameter p: shape (G, 2 N_max 2^d)."""
        with torch.no_grad():
            y = self(scale_parameters(self.family, self.family.check(p)))
            return (self.offset + self.scale * y)[:, 0].double().numpy()


class FamilyCorrectors:
    """Classical correctors of a coefficient family from p alone (``needs_coefficient``
    False): evaluates a(x, p) at the patch's fine-cell midpoints and solves the patch problems.
    The reference corrector provider beside learned operators (output reconstruction)."""

    needs_coefficient = False

    def __init__(self, classical: ClassicalCorrectors, family: Family):
        self.classical, self.family = classical, family

    def correctors(self, patches, a_patches=None, p=None, progress=False):
        g = self.classical.grids
        a = []
        for patch in patches:
            keys = patch.fine_cell_keys(g)
            ij = np.stack([keys % g.fine, keys // g.fine]).astype(np.float64)
            x = g.origin[:, None] + (ij + 0.5) * g.h[:, None]
            a.append(self.family.a(x, self.family.check(p)))
        return self.classical.correctors(patches, a, progress=progress)


class OperatorProvider:
    """A corrector provider whose Petrov–Galerkin local operators come from
    :class:`LearnedOperators`: p alone decides both (``needs_coefficient`` False).

    Args:
        correctors: The provider of the correctors (used when B is assembled: output steps),
            e.g. :class:`~dolfinx_lod.neural.provider.LearnedCorrectors`.
        operators: Networks fitted for the patches of the basis this provider is used in.
    """

    needs_coefficient = False

    def __init__(self, correctors: CorrectorProvider, operators: LearnedOperators):
        self._correctors, self.operators = correctors, operators
        self._position = {int(c): g for g, c in enumerate(operators.cells)}

    def correctors(self, patches, a_patches, p=None, progress=False):
        return self._correctors.correctors(patches, a_patches, p, progress)

    def local_operators(
        self, patches: Sequence[Patch], p: Any
    ) -> list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
        """(K_T, M_T) of each patch for parameter p, by one batched forward pass."""
        values = self.operators.evaluate(p)
        size, c = self.operators.size, self.operators.corners
        out = []
        for patch in patches:
            g = self._position[patch.cell]
            n = self.operators.sizes[g]
            out.append(
                (
                    values[g, : n * c].reshape(n, c),
                    values[g, size * c : size * c + n * c].reshape(n, c),
                )
            )
        return out


def fit_operators(
    basis: MultiscaleBasis,
    family: Family,
    params: npt.NDArray[np.float64],
    width: int = 32,
    depth: int = 3,
    epochs: int = 2000,
) -> tuple[LearnedOperators, float]:
    """Operator networks for the owned patches of ``basis`` (built with a capacity), fitted to
    the local operators its provider gives at ``params``. Returns (networks, final normalized
    mean squared error). Collective (the basis updates)."""
    samples = operator_samples(basis, family, params)
    NH = basis.grids.coarse
    sizes = [len(p.coarse_vertex_keys(NH)) for p in basis.patches]
    cells = [p.cell for p in basis.patches]
    nets = LearnedOperators(cells, sizes, family, width, depth, basis.grids.dim)
    return nets, nets.fit(params, samples, epochs=epochs)
