"""Corrector networks, one per patch, batched: G independent networks of identical shape are
stored as stacked weight tensors and evaluated (and trained) together.

Two architectures produce the correctors alpha (G, K, N, 2^d) at the patch vertices (paper (13)):

- :class:`PatchNetworks` (paper Definitions 3.1 and 3.3): an MLP (x, p) -> R^{2^d} with tanh
  activations and Xavier/Glorot normal initialization, localized by
  g(x) = prod_k 4 x_k (1 - x_k) in patch coordinates scaled to [0, 1]^d, so that every
  output vanishes on the patch boundary.
- :class:`ReducedPatchNetworks`: an MLP p -> R^{q x 2^d} giving coordinates of the correctors in a
  fixed patch basis V_T (N x q, columns in ker B, zero on the patch boundary), alpha = V_T c(p).
  One forward pass costs O(q) network work plus one N x q product per patch, instead of an MLP
  evaluation at every vertex.

Parameters p enter scaled to [-1, 1] by the family's range.
"""

from __future__ import annotations

import math

import torch


def localization(coords: torch.Tensor) -> torch.Tensor:
    """g(x) = prod_k 4 x_k (1 - x_k) on [0, 1]^d (max 1), shape (..., N, 1)."""
    return torch.prod(4 * coords * (1 - coords), dim=-1, keepdim=True)


class _BatchedMLP(torch.nn.Module):
    """G MLPs R^{d_in} -> R^{d_out} of width ``width`` and depth ``depth`` (affine layers)."""

    def __init__(self, count: int, d_in: int, d_out: int, width: int, depth: int):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"network width and depth must be >= 1, got {width} x {depth}")
        self.count, self.width, self.depth = count, width, depth
        dims = [d_in] + [width] * (depth - 1) + [d_out]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            std = math.sqrt(2.0 / (a + b))  # Xavier/Glorot normal
            self.weights.append(torch.nn.Parameter(torch.randn(count, b, a) * std))
            self.biases.append(torch.nn.Parameter(torch.zeros(count, 1, 1, b)))

    def hidden(self, h: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """Layers 2..D applied to first-layer pre-activations h (G, K, M, width)."""
        for W, b in zip(self.weights[1:], self.biases[1:], strict=True):
            W, b = (W, b) if index is None else (W[index], b[index])
            h = torch.tanh(h) @ W.transpose(1, 2)[:, None] + b
        return h


class PatchNetworks(_BatchedMLP):
    """The paper's corrector networks: G MLPs (x, p) -> R^{2^d}, localized (Def. 3.3)."""

    architecture = "mlp"

    def __init__(self, count: int, num_params: int, width: int = 128, depth: int = 8, dim: int = 2):
        super().__init__(count, dim + num_params, 2**dim, width, depth)
        self.dim = dim

    def forward(
        self, coords: torch.Tensor, p: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Localized outputs at the vertices ``coords`` ((N, d) shared, or (G, N, d) per
        network) for parameters ``p`` (K, N_p): shape (G, K, N, 2^d); only the networks
        ``index`` if given."""
        W1, b1 = self.weights[0], self.biases[0]
        if index is not None:
            W1, b1 = W1[index], b1[index]
        # First layer split into its x and p parts: [x; p] -> W_x x + W_p p + b.
        spec = "gon,Nn->gNo" if coords.dim() == 2 else "gon,gNn->gNo"
        hx = torch.einsum(spec, W1[:, :, : self.dim], coords)  # (G, N, width)
        hp = torch.einsum("gon,kn->gko", W1[:, :, self.dim :], p)  # (G, K, width)
        h = self.hidden(hx[:, None, :, :] + hp[:, :, None, :] + b1, index)
        g = localization(coords)  # padding vertices sit at (0, 0): g = 0 there
        return (g if coords.dim() == 2 else g[:, None]) * h


class ReducedPatchNetworks(_BatchedMLP):
    """G MLPs p -> R^{q x 2^d}, alpha = V_T c(p) with fixed patch bases V_T (G, N, q) and
    c(p) = offset + scale * MLP(p) (output normalization, offset and scale (G, q, 2^d) fixed)."""

    architecture = "reduced"

    def __init__(
        self,
        basis: torch.Tensor,
        num_params: int,
        width: int = 32,
        depth: int = 3,
        offset: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        dim: int = 2,
    ):
        count, _, q = basis.shape
        self.corners = 2**dim
        super().__init__(count, num_params, self.corners * q, width, depth)
        shape = (count, q, self.corners)
        self.register_buffer("basis", basis)
        self.register_buffer("offset", torch.zeros(shape) if offset is None else offset)
        self.register_buffer("scale", torch.ones(shape) if scale is None else scale)

    def subset(self, index: torch.Tensor) -> ReducedPatchNetworks:
        """The networks ``index`` as their own (smaller) batch: evaluating them then needs no
        gathering of weights per call."""
        sub = ReducedPatchNetworks(
            self.basis[index],
            self.weights[0].shape[2],
            self.width,
            self.depth,
            self.offset[index],
            self.scale[index],
            self.corners.bit_length() - 1,
        )
        with torch.no_grad():
            for mine, theirs in zip(self.parameters(), sub.parameters(), strict=True):
                theirs.copy_(mine[index])
        return sub.eval()

    def coordinates(self, p: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """c(p): shape (G, K, q, 2^d)."""
        W1, b1 = self.weights[0], self.biases[0]
        if index is not None:
            W1, b1 = W1[index], b1[index]
        h = torch.einsum("gon,kn->gko", W1, p)[:, :, None, :] + b1  # (G, K, 1, width)
        c = self.hidden(h, index)[:, :, 0, :]
        c = c.reshape(c.shape[0], c.shape[1], -1, self.corners)
        offset, scale = (
            (self.offset, self.scale) if index is None else (self.offset[index], self.scale[index])
        )
        return offset[:, None] + scale[:, None] * c

    def forward(
        self, coords: torch.Tensor, p: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """alpha = V_T c(p) at the patch vertices (the first N = len(coords) rows of V_T):
        shape (G, K, N, 2^d)."""
        V = self.basis if index is None else self.basis[index]
        V = V[:, : coords.shape[-2]]
        return torch.einsum("gnq,gkqj->gknj", V, self.coordinates(p, index))
