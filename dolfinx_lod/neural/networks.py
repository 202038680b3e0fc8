"""Corrector networks, one per patch, batched: G independent networks of identical shape are
stored as stacked weight tensors and evaluated (and trained) together.

Three architectures produce the correctors alpha (G, K, N, 2^d) at the patch vertices (paper (13)).
All share one interface: ``architecture`` (name), ``needs_coefficient`` (input: the coefficient
on the patch, or the parameter p) and a forward pass to alpha (G, K, N, 2^d);
:func:`dolfinx_lod.neural.training.network_outputs` calls any of them on a
:class:`~dolfinx_lod.neural.export.PatchBatch`.

- :class:`PatchNetworks` (paper Definitions 3.1 and 3.3): an MLP (x, p) -> R^{2^d} with tanh
  activations and Xavier/Glorot normal initialization, localized by
  g(x) = prod_k 4 x_k (1 - x_k) in patch coordinates scaled to [0, 1]^d, so that every
  output vanishes on the patch boundary.
- :class:`ReducedPatchNetworks`: an MLP p -> R^{q x 2^d} giving coordinates of the correctors in a
  fixed patch basis V_T (N x q, columns in ker B, zero on the patch boundary), alpha = V_T c(p).
  One forward pass costs O(q) network work plus one N x q product per patch, instead of an MLP
  evaluation at every vertex.

- :class:`CoefficientNetworks`: one CNN shared by all patches from log a on the patch's fine
  cells to the correctors, projected exactly onto ker B (needs no p: any coefficient).

Parameters p enter scaled to [-1, 1] by the family's range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dolfinx_lod.interpolation import patch_constraints


def localization(coords: torch.Tensor) -> torch.Tensor:
    """g(x) = prod_k 4 x_k (1 - x_k) on [0, 1]^d (max 1), shape (..., N, 1)."""
    return torch.prod(4 * coords * (1 - coords), dim=-1, keepdim=True)


class _BatchedMLP(torch.nn.Module):
    """G MLPs R^{d_in} -> R^{d_out} of width ``width`` and depth ``depth`` (affine layers).

    With ``seeds`` (one per network) each network's initial weights are drawn from its own
    generator, so a network does not depend on which others share the batch (e.g. on a rank)."""

    def __init__(
        self,
        count: int,
        d_in: int,
        d_out: int,
        width: int,
        depth: int,
        seeds: Sequence[int] | None = None,
    ):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"network width and depth must be >= 1, got {width} x {depth}")
        self.count, self.width, self.depth = count, width, depth
        dims = [d_in] + [width] * (depth - 1) + [d_out]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        generators = None
        if seeds is not None:
            generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            std = math.sqrt(2.0 / (a + b))  # Xavier/Glorot normal
            if generators is None:
                W = torch.randn(count, b, a)
            elif generators:
                W = torch.stack([torch.randn(b, a, generator=g) for g in generators])
            else:  # no network on this rank
                W = torch.empty(0, b, a)
            self.weights.append(torch.nn.Parameter(W * std))
            self.biases.append(torch.nn.Parameter(torch.zeros(count, 1, 1, b)))

    def hidden(self, h: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """Layers 2..D applied to first-layer pre-activations h (G, K, M, width).

        One batched matrix product per layer over (G, K M, width): an order of magnitude
        faster on the CPU, forward and backward, than broadcasting over K."""
        G, K, M, _ = h.shape
        h = h.reshape(G, K * M, -1)
        for W, b in zip(self.weights[1:], self.biases[1:], strict=True):
            W, b = (W, b) if index is None else (W[index], b[index])
            h = torch.baddbmm(b[:, 0], torch.tanh(h), W.transpose(1, 2))
        return h.reshape(G, K, M, -1)


class PatchNetworks(_BatchedMLP):
    """The paper's corrector networks: G MLPs (x, p) -> R^{2^d}, localized (Def. 3.3)."""

    architecture = "mlp"
    needs_coefficient = False

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
    needs_coefficient = False

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


#: Input channels of :class:`CoefficientNetworks`.
CHANNELS = 12


class CoefficientNetworks(torch.nn.Module):
    """One convolutional network a|_{N^l(T)} -> C_T Lambda_j shared by all patches (translation
    invariance), for every configuration, batched over patches and samples.

    Every patch is placed into the window of the (2l+1) x (2l+1) coarse cells centred at T
    (W = (2l+1) r fine cells a side); cells of the window outside the patch (truncation at the
    domain boundary) carry a mask channel 0. Input channels: mask * (log a - m_T) / s (m_T the
    mean of log a over the patch, s a fixed scale), mask and the cell centre coordinates (so the
    network knows where T is). The inputs, hence the outputs, depend on a only through
    a / exp(m_T): like the correctors, they do not change when a is scaled. Dilated 3 x 3
    convolutions (residual, GELU) act on the W x W cells; a final 2 x 2 convolution gives four
    values (one per corner j of T) at the (W+1)^2 vertices. The values at the patch's
    vertices are set to zero on the patch boundary and, with ``project``, mapped by the exact
    projection onto ker B (B = I_H on the patch, independent of a):

        alpha = D y - B^T (B B^T)^+ B D y,   D the interior-vertex mask,

    so that B alpha = 0 to rounding and the Deep Ritz energy's minimizer over such outputs is
    the classical corrector.
    """

    architecture = "cnn"
    needs_coefficient = True

    def __init__(
        self,
        layers: int,
        Pi: torch.Tensor,
        width: int = 32,
        depth: int = 6,
        log_scale: float = 1.0,
    ):
        super().__init__()
        if depth < 2 or width < 1:
            raise ValueError(f"cnn width must be >= 1 and depth >= 2, got {width} x {depth}")
        self.layers, self.width, self.depth = layers, width, depth
        self.r = math.isqrt(Pi.shape[1]) - 1
        self.cells = (2 * layers + 1) * self.r  # W
        self.register_buffer("Pi", Pi.clone())
        self.register_buffer("log_scale", torch.tensor(log_scale))
        self.first = torch.nn.Conv2d(CHANNELS, width, 3, padding=1)
        dilations = [d for d in (1, 2, 4, 8, 16) if 2 * d < self.cells] or [1]
        self.hidden = torch.nn.ModuleList(
            torch.nn.Conv2d(width, width, 3, padding=d, dilation=d)
            for d in (dilations[i % len(dilations)] for i in range(depth - 2))
        )
        self.last = torch.nn.Conv2d(width, 4, 2, padding=1)
        self._geometry: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def _window(self, config) -> tuple[torch.Tensor, torch.Tensor]:
        """Window cell index of each patch cell and window vertex index of each patch vertex
        (local patch order) of ``config``."""
        (wx, wy), (ex, ey), _ = config
        r, W = self.r, self.cells
        ox, oy = (self.layers - ex) * r, (self.layers - ey) * r
        cy, cx = torch.meshgrid(torch.arange(wy * r), torch.arange(wx * r), indexing="ij")
        vy, vx = torch.meshgrid(torch.arange(wy * r + 1), torch.arange(wx * r + 1), indexing="ij")
        return ((cy + oy) * W + cx + ox).ravel(), ((vy + oy) * (W + 1) + vx + ox).ravel()

    def operators(self, config) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense (N, N) maps of ``config`` from the network's vertex values y to alpha: L y
        and (with the projection) (D - B^T (B B^T)^+ B) L y, float64."""
        (wx, wy), _, _ = config
        L = torch.zeros(
            (wy * self.r + 1) * (wx * self.r + 1),
            (wy * self.r + 1) * (wx * self.r + 1),
            dtype=torch.float64,
        )
        interior = torch.zeros(wy * self.r + 1, wx * self.r + 1, dtype=torch.bool)
        interior[1:-1, 1:-1] = True
        inner = interior.ravel().nonzero()[:, 0]
        L[inner[:, None], inner[None, :]] = inverse_sqrt_laplacian(wx * self.r, wy * self.r)
        B = torch.from_numpy(patch_constraints(config, self.r, self.Pi.double().numpy()))
        gram = torch.linalg.pinv(B @ B.T, hermitian=True)
        return L, L - B.T @ (gram @ (B @ L))  # B's boundary columns are zero: B D = B

    def geometry(self, configs: list) -> tuple[torch.Tensor, list[tuple]]:
        """Window cells of every patch (G, M) (padding: -1) and per configuration the patches
        (indices into ``configs``), their window vertices (N_c,) and :meth:`operators`.
        Cached per configuration."""
        G = len(configs)
        windows = {c: self._window(c) for c in dict.fromkeys(configs)}
        M = max((w[0].numel() for w in windows.values()), default=1)
        cells = torch.full((G, M), -1, dtype=torch.int64)
        groups = []
        for config, (c, v) in windows.items():
            index = torch.tensor([g for g, other in enumerate(configs) if other == config])
            cells[index, : c.numel()] = c
            if config not in self._geometry:
                self._geometry[config] = self.operators(config)
            groups.append((index, v, *self._geometry[config]))
        return cells, groups

    def source_gradients(self) -> torch.Tensor:
        """H grad Lambda_j at the window's cell centres inside T, zero elsewhere: (8, W, W)
        (channels d/dx, d/dy of corner j = 0..3 in the order (0,0), (1,0), (0,1), (1,1))."""
        r, W, lo = self.r, self.cells, self.layers * self.r
        t = (torch.arange(r, dtype=torch.float64) + 0.5) / r  # local cell centres in T
        eta, xi = torch.meshgrid(t, t, indexing="ij")
        grads = torch.zeros(8, W, W, dtype=torch.float64)
        for j, (dx, dy) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
            fx = xi if dx else 1 - xi
            fy = eta if dy else 1 - eta
            grads[2 * j, lo : lo + r, lo : lo + r] = (1 if dx else -1) * fy
            grads[2 * j + 1, lo : lo + r, lo : lo + r] = (1 if dy else -1) * fx
        return grads

    def inputs(self, configs: list, a: torch.Tensor) -> torch.Tensor:
        """Network input (G K, CHANNELS, W, W) from a on the patch cells (G, K, M) (local
        order): log a centred on the patch, the patch mask, the cell centres and the element
        loads a grad Lambda_j / exp(m_T) on T (the right-hand sides of the correctors), m_T the
        mean of log a over the patch."""
        cells = self.geometry(configs)[0].to(a.device)
        G, K, _ = a.shape
        W = self.cells
        M = cells.shape[1]
        real = cells >= 0
        loga = torch.log(a[:, :, :M].clamp_min(1e-30))
        mask = real[:, None].to(a.dtype)  # (G, 1, M)
        m_T = (loga * mask).sum(2, keepdim=True) / mask.sum(2, keepdim=True).clamp_min(1)
        loga = (loga - m_T) / self.log_scale
        x = torch.zeros(G, K, 2, W * W, dtype=a.dtype, device=a.device)
        index = cells.clamp_min(0)[:, None].expand(G, K, M)
        x[:, :, 0].scatter_(2, index, torch.where(real[:, None], loga, 0.0))
        x[:, :, 1].scatter_(2, index, real[:, None].expand(G, K, M).to(a.dtype))
        centre = (torch.arange(W, dtype=a.dtype, device=a.device) + 0.5) * 2 / W - 1
        cy, cx = torch.meshgrid(centre, centre, indexing="ij")
        xy = torch.stack([cx, cy]).reshape(1, 1, 2, W * W).expand(G, K, 2, W * W)
        scaled = torch.exp(x[:, :, :1] * self.log_scale) * x[:, :, 1:2]  # a / exp(m_T)
        loads = scaled * self.source_gradients().to(a.device, a.dtype).reshape(1, 1, 8, W * W)
        return torch.cat([x, xy, loads], dim=2).reshape(G * K, CHANNELS, W, W)

    def forward(self, configs: list, a: torch.Tensor, project: bool = True) -> torch.Tensor:
        """Correctors alpha (G, K, N, 4) at the patch vertices for a (G, K, M) on the patch
        cells of the patches ``configs``; zero on the patch boundary (and padding), in ker B
        with ``project``."""
        _, groups = self.geometry(configs)
        G, K, _ = a.shape
        h = torch.nn.functional.gelu(self.first(self.inputs(configs, a)))
        for conv in self.hidden:
            h = h + torch.nn.functional.gelu(conv(h))
        y = self.last(h).reshape(G, K, 4, -1)  # (G, K, 4, (W+1)^2)
        N = max((v.numel() for _, v, _, _ in groups), default=1)
        alpha = torch.zeros(G, K, N, 4, dtype=a.dtype, device=a.device)
        for index, verts, L, Q in groups:
            Q = (Q if project else L).to(a.device, a.dtype)
            index = index.to(a.device)
            alpha[index, :, : verts.numel()] = (y[index][..., verts.to(a.device)] @ Q.T).transpose(
                2, 3
            )
        return alpha


def inverse_sqrt_laplacian(nx: int, ny: int) -> torch.Tensor:
    """S_1^{-1/2} for the Q1 stiffness S_1 of the Laplacian on an nx x ny grid of square cells
    with zero boundary values, on the interior vertices (x fastest), float64. Exact from the
    sine eigenvectors: S_1 = K (x) M + M (x) K with the 1D stiffness K (eigenvalues
    2 - 2 cos t) and mass M ((4 + 2 cos t) / 6), t = k pi / n. It preconditions the Deep Ritz
    energy: alpha = S_1^{-1/2} y makes 1/2 alpha^T S alpha nearly isotropic in y."""

    def sine(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = torch.arange(1, n, dtype=torch.float64)
        t = k * math.pi / n
        V = math.sqrt(2.0 / n) * torch.sin(torch.outer(k, k) * math.pi / n)
        return V, 2 - 2 * torch.cos(t), (4 + 2 * torch.cos(t)) / 6

    Vx, kx, mx = sine(nx)
    Vy, ky, my = sine(ny)
    lam = ky[:, None] * mx[None, :] + my[:, None] * kx[None, :]
    V = torch.kron(Vy, Vx)
    return (V * lam.ravel().rsqrt()) @ V.T
