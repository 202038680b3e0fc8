"""The coefficient-aware corrector network: one CNN shared by all patches from log a on the
patch's fine cells to the correctors, projected exactly onto ker B (needs no p: any
coefficient), and the statistics of log a that scale its input."""

from __future__ import annotations

import math

import numpy as np
import torch
from mpi4py import MPI

from dolfinx_lod.interpolation import patch_constraints
from dolfinx_lod.neural.export import PatchBatch

#: Input channels of :class:`CoefficientNetworks` (without the contrast channels).
CHANNELS = 12
#: Scalings of the element-load channels: by exp(m_T) ("mean") or by their patch maximum.
LOADS = ("max", "mean")
#: Output maps y -> alpha: S_1^{-1/2} y ("laplacian") or s^{-1/2} S_1^{-1/2} y ("scaled", s the
#: vertex mean of a over a's mean on T) before the projection onto ker B.
OUTPUTS = ("laplacian", "scaled")


class CoefficientNetworks(torch.nn.Module):
    """One convolutional network a|_{N^l(T)} -> C_T Lambda_j shared by all patches (translation
    invariance), for every configuration, batched over patches and samples.

    Every patch is placed into the window of the (2l+1) x (2l+1) coarse cells centred at T
    (W = (2l+1) r fine cells a side); cells of the window outside the patch (truncation at the
    domain boundary) carry a mask channel 0, or -1 beyond a Neumann side of the domain (where
    the correctors are free, not zero). Input channels: mask * (log a - m_T) / s (m_T the
    mean of log a over the patch, s a fixed scale), mask and the cell centre coordinates (so the
    network knows where T is), and the element loads a grad Lambda_j on T divided by exp(m_T)
    (``loads="mean"``) or by their largest magnitude over the patch (``loads="max"``: bounded
    by 1 whatever the contrast). The inputs, hence the outputs, depend on a only through
    a / exp(m_T): like the correctors, they do not change when a is scaled. Dilated 3 x 3
    convolutions (residual, GELU) act on the W x W cells; a final 2 x 2 convolution gives four
    values (one per corner j of T) at the (W+1)^2 vertices. The values at the patch's
    vertices are set to zero on the patch boundary and, with ``project``, mapped by the exact
    projection onto ker B (B = I_H on the patch, independent of a):

        alpha = D y - B^T (B B^T)^+ B D y,   D the mask of the free vertices (the interior
                                              and those on a Neumann side),

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
        loads: str = "max",
        contrast: bool = False,
        pool: bool = False,
        output: str = "laplacian",
    ):
        super().__init__()
        if depth < 2 or width < 1:
            raise ValueError(f"cnn width must be >= 1 and depth >= 2, got {width} x {depth}")
        if loads not in LOADS:
            raise ValueError(f"cnn loads must be one of {LOADS}, got {loads!r}")
        if output not in OUTPUTS:
            raise ValueError(f"cnn output must be one of {OUTPUTS}, got {output!r}")
        self.layers, self.width, self.depth, self.loads = layers, width, depth, loads
        self.contrast, self.pool, self.output = contrast, pool, output
        self.r = math.isqrt(Pi.shape[1]) - 1
        self.cells = (2 * layers + 1) * self.r  # W
        self.register_buffer("Pi", Pi.clone())
        self.register_buffer("log_scale", torch.tensor(log_scale))
        self.first = torch.nn.Conv2d(CHANNELS + 2 * contrast, width, 3, padding=1)
        dilations = [d for d in (1, 2, 4, 8, 16) if 2 * d < self.cells] or [1]
        self.hidden = torch.nn.ModuleList(
            torch.nn.Conv2d(width, width, 3, padding=d, dilation=d)
            for d in (dilations[i % len(dilations)] for i in range(depth - 2))
        )
        self.pooled = torch.nn.ModuleList(
            torch.nn.Linear(width, width) for _ in (self.hidden if pool else ())
        )
        self.last = torch.nn.Conv2d(width, 4, 2, padding=1)
        self._geometry: dict[tuple, tuple[torch.Tensor, ...]] = {}
        self._projections: dict[tuple, torch.Tensor] = {}

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
        free = config.neumann_sides()
        inner = free_vertices(wx * self.r, wy * self.r, free).ravel().nonzero()[:, 0]
        L[inner[:, None], inner[None, :]] = inverse_sqrt_laplacian(wx * self.r, wy * self.r, free)
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

    def beyond_neumann(self, configs: list) -> torch.Tensor:
        """(G, W W): 1 on the window cells beyond a Neumann side of each patch, else 0."""
        out = torch.zeros(len(configs), self.cells**2, dtype=torch.float64)
        W, r = self.cells, self.r
        for g, ((wx, wy), (ex, ey), _) in enumerate(configs):
            free = configs[g].neumann_sides()
            if not free.any():
                continue
            lo = ((self.layers - ex) * r, (self.layers - ey) * r)
            hi = (lo[0] + wx * r, lo[1] + wy * r)
            c = torch.arange(W)
            beyond = [
                ((c < lo[k]) & bool(free[k, 0])) | ((c >= hi[k]) & bool(free[k, 1]))
                for k in range(2)
            ]
            out[g] = (beyond[1][:, None] | beyond[0][None, :]).ravel().double()
        return out

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
        loads a grad Lambda_j on T (the right-hand sides of the correctors) over exp(m_T), m_T
        the mean of log a over the patch, or over their patch maximum (``loads``)."""
        cells = self.geometry(configs)[0].to(a.device)
        G, K, _ = a.shape
        W = self.cells
        M = cells.shape[1]
        real = cells >= 0
        loga = torch.log(a[:, :, :M].clamp_min(1e-30))
        mask = real[:, None].to(a.dtype)  # (G, 1, M)
        m_T = (loga * mask).sum(2, keepdim=True) / mask.sum(2, keepdim=True).clamp_min(1)
        loga = (loga - m_T) / self.log_scale
        # padding entries go to a spare slot W W (dropped), not onto a window cell
        x = torch.zeros(G, K, 2, W * W + 1, dtype=a.dtype, device=a.device)
        index = torch.where(real, cells, W * W)[:, None].expand(G, K, M)
        x[:, :, 0].scatter_(2, index, torch.where(real[:, None], loga, 0.0))
        x[:, :, 1].scatter_(2, index, real[:, None].expand(G, K, M).to(a.dtype))
        x = x[..., : W * W]
        x[:, :, 1] -= self.beyond_neumann(configs).to(a.device, a.dtype)[:, None]
        centre = (torch.arange(W, dtype=a.dtype, device=a.device) + 0.5) * 2 / W - 1
        cy, cx = torch.meshgrid(centre, centre, indexing="ij")
        xy = torch.stack([cx, cy]).reshape(1, 1, 2, W * W).expand(G, K, 2, W * W)
        scaled = torch.exp(x[:, :, :1] * self.log_scale) * x[:, :, 1:2].clamp_min(0)  # a/e^m_T
        loads = scaled * self.source_gradients().to(a.device, a.dtype).reshape(1, 1, 8, W * W)
        if self.loads == "max":
            loads = loads / loads.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-30)
        parts = [x, xy, loads]
        if self.contrast:  # a / max_patch a and min_patch a / a, in (0, 1] on the patch
            inside = scaled > 0
            low = torch.where(inside, scaled, torch.inf).amin(dim=3, keepdim=True)
            high = scaled.amax(dim=3, keepdim=True)
            parts.append(scaled / high)
            parts.append(torch.where(inside, low / scaled.clamp_min(1e-30), 0.0))
        return torch.cat(parts, dim=2).reshape(G * K, -1, W, W)

    def vertex_scales(self, x: torch.Tensor) -> torch.Tensor:
        """s^{-1/2} at the window vertices (G K, (W+1)^2) from the inputs ``x``: s the mean of
        a over the patch cells at a vertex divided by the mean of a over T."""
        scaled = torch.exp(x[:, :1] * self.log_scale) * x[:, 1:2].clamp_min(0)
        ones = torch.ones(1, 1, 2, 2, dtype=x.dtype, device=x.device)
        total = torch.nn.functional.conv2d(scaled, ones, padding=1)
        count = torch.nn.functional.conv2d(x[:, 1:2].clamp_min(0), ones, padding=1)
        lo, r = self.layers * self.r, self.r
        on_T = scaled[:, :, lo : lo + r, lo : lo + r].mean(dim=(1, 2, 3))
        s = total / count.clamp_min(1) / on_T[:, None, None, None]
        return torch.where(count > 0, s, 1.0).rsqrt().flatten(1)

    def forward(self, configs: list, a: torch.Tensor, project: bool = True) -> torch.Tensor:
        """Correctors alpha (G, K, N, 4) at the patch vertices for a (G, K, M) on the patch
        cells of the patches ``configs``; zero on the patch boundary (and padding), in ker B
        with ``project``."""
        _, groups = self.geometry(configs)
        G, K, _ = a.shape
        x = self.inputs(configs, a)
        h = torch.nn.functional.gelu(self.first(x))
        for i, conv in enumerate(self.hidden):
            z = conv(h)
            if self.pool:  # the whole window's mean: a global receptive field
                z = z + self.pooled[i](h.mean(dim=(2, 3)))[:, :, None, None]
            h = h + torch.nn.functional.gelu(z)
        y = self.last(h).reshape(G, K, 4, -1)  # (G, K, 4, (W+1)^2)
        scales = self.vertex_scales(x).reshape(G, K, 1, -1) if self.output == "scaled" else None
        N = max((v.numel() for _, v, _, _ in groups), default=1)
        alpha = torch.zeros(G, K, N, 4, dtype=a.dtype, device=a.device)
        for (index, verts, L, Q), config in zip(groups, dict.fromkeys(configs), strict=True):
            index, verts = index.to(a.device), verts.to(a.device)
            if scales is None:
                Q = (Q if project else L).to(a.device, a.dtype)
                out = y[index][..., verts] @ Q.T
            else:  # alpha = P (s^{-1/2} (.) L y)
                out = (y[index][..., verts] @ L.T.to(a.device, a.dtype)) * scales[index][..., verts]
                if project:
                    out = out @ self.projection(config).T.to(a.device, a.dtype)
            alpha[index, :, : verts.numel()] = out.transpose(2, 3)
        return alpha

    def projection(self, config) -> torch.Tensor:
        """P = I - B^T (B B^T)^+ B, the orthogonal projection onto ker B of ``config``, float64
        (cached)."""
        if config not in self._projections:
            B = torch.from_numpy(patch_constraints(config, self.r, self.Pi.double().numpy()))
            gram = torch.linalg.pinv(B @ B.T, hermitian=True)
            self._projections[config] = torch.eye(B.shape[1], dtype=B.dtype) - B.T @ gram @ B
        return self._projections[config]


def _q1_matrices_1d(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1D Q1 stiffness K = tridiag(-1, 2, -1) and mass M = tridiag(1, 4, 1) / 6 on n unit
    cells, all n + 1 vertices (end rows halved: no boundary condition), float64."""
    ends = torch.ones(n + 1, dtype=torch.float64)
    ends[0] = ends[-1] = 0.5
    off = torch.ones(n, dtype=torch.float64)
    K = torch.diag(2 * ends) - torch.diag(off, 1) - torch.diag(off, -1)
    M = (torch.diag(4 * ends) + torch.diag(off, 1) + torch.diag(off, -1)) / 6
    return K, M


def free_vertices(nx: int, ny: int, free=None) -> torch.Tensor:
    """(ny + 1, nx + 1) mask of the vertices of an nx x ny grid whose values are unknowns: all
    but those on a side with zero values; ``free``: (2, 2) mask [axis, (lo, hi)] of the sides
    without (Neumann sides; default none)."""
    free = np.zeros((2, 2), dtype=bool) if free is None else np.asarray(free, dtype=bool)
    return _free_1d(ny, *free[1])[:, None] & _free_1d(nx, *free[0])[None, :]


def _free_1d(n: int, lo: bool, hi: bool) -> torch.Tensor:
    """(n + 1,) mask of the unknown vertices of n cells: the ends only where ``lo``/``hi``."""
    m = torch.ones(n + 1, dtype=torch.bool)
    m[0], m[-1] = bool(lo), bool(hi)
    return m


def inverse_sqrt_laplacian(nx: int, ny: int, free=None) -> torch.Tensor:
    """S_1^{-1/2} for the Q1 stiffness S_1 of the Laplacian on an nx x ny grid of square cells
    with zero values on the sides but the ``free`` ones (:func:`free_vertices`), on the free
    vertices (x fastest), float64. Without free sides exact from the sine eigenvectors:
    S_1 = K (x) M + M (x) K with the 1D stiffness K (eigenvalues 2 - 2 cos t) and mass M
    ((4 + 2 cos t) / 6), t = k pi / n; with free sides from the eigendecomposition of S_1. It
    preconditions the Deep Ritz energy: alpha = S_1^{-1/2} y makes 1/2 alpha^T S alpha nearly
    isotropic in y."""
    if free is not None and np.any(free):
        parts = []
        for n, (lo, hi) in ((nx, free[0]), (ny, free[1])):
            keep = _free_1d(n, lo, hi)
            K, M = _q1_matrices_1d(n)
            parts.append((K[keep][:, keep], M[keep][:, keep]))
        (Kx, Mx), (Ky, My) = parts
        lam, V = torch.linalg.eigh(torch.kron(Ky, Mx) + torch.kron(My, Kx))
        return (V * lam.rsqrt()) @ V.T

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


def log_statistics(batch: PatchBatch, comm: MPI.Comm) -> tuple[float, float]:
    """Mean and standard deviation of log a over all patch cells and samples (global).
    Collective."""
    r = math.isqrt(batch.Pi.shape[1]) - 1
    local = np.zeros(3)
    for g, config in enumerate(batch.configs):
        size = config.shape[0] * config.shape[1] * r * r
        loga = torch.log(batch.a[g, :, :size].double())
        local += [loga.numel(), float(loga.sum()), float((loga**2).sum())]
    count, total, squares = comm.allreduce(local, op=MPI.SUM)
    mean = total / max(count, 1)
    return mean, math.sqrt(max(squares / max(count, 1) - mean**2, 0.0)) or 1.0
