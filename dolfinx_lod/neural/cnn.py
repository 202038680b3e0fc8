"""The coefficient-aware corrector network: one CNN shared by all patches from log a on the
patch's fine cells to the correctors, projected exactly onto ker B (needs no p: any
coefficient), and the statistics of log a that scale its input. One code path for d = 2
(quadrilateral patches, Conv2d) and d = 3 (hexahedral patches, Conv3d)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.utils.checkpoint
from mpi4py import MPI

from dolfinx_lod.grids import box_points, corner_bits, lattice_keys
from dolfinx_lod.interpolation import patch_constraints
from dolfinx_lod.neural.export import PatchBatch
from dolfinx_lod.neural.ritz import RitzMaps, RitzSpan

#: Scalings of the element-load channels: by exp(m_T) ("mean") or by their patch maximum.
LOADS = ("max", "mean")
#: Output maps y -> alpha: P y ("laplacian") or s^{-1/2} P y ("scaled", s the vertex mean of a
#: over a's mean on T) before the projection onto ker B.
OUTPUTS = ("laplacian", "scaled")
_CONV = {2: torch.nn.Conv2d, 3: torch.nn.Conv3d}
_CONV_FN = {2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}


def channels(dim: int) -> int:
    """Input channels of :class:`CoefficientNetworks` in d = ``dim``: log a, the mask, the d
    cell-centre coordinates and the d 2^d element-load components (12 in 2D, 29 in 3D)."""
    return 2 + dim + dim * 2**dim


#: Input channels in 2D (without the contrast channels).
CHANNELS = channels(2)


def patch_dims(Pi: torch.Tensor) -> tuple[int, int]:
    """(d, r) of the local projection Pi_K of shape (2^d, (r+1)^d)."""
    d = int(round(math.log2(Pi.shape[0])))
    return d, int(round(Pi.shape[1] ** (1.0 / d))) - 1


@dataclass
class PatchMaps:
    """The linear maps of one patch configuration from the network's vertex values y to alpha:
    the free vertices (``free``, local order), per axis k the 1D factors (``W[k]``, ``U[k]``)
    of the preconditioner P = (W_d (x) .. (x) W_1) D^{-1/2} (U_d (x) .. (x) U_1)^T on them,
    ``scale`` = D^{-1/2} (axes z, y, x), and the constraints B (m, N) with (B B^T)^+."""

    counts: tuple[int, ...]  # free vertices per axis (x first)
    free: torch.Tensor  # (n_free,) local indices of the free vertices
    W: list[torch.Tensor]
    U: list[torch.Tensor]
    scale: torch.Tensor
    B: torch.Tensor
    gram: torch.Tensor
    ritz: RitzMaps | None = None

    def to(self, device: torch.device, dtype: torch.dtype) -> PatchMaps:
        """A copy on ``device`` in ``dtype`` (indices unchanged)."""
        move = lambda x: x.to(device, dtype)  # noqa: E731
        return PatchMaps(
            self.counts,
            self.free.to(device),
            [move(w) for w in self.W],
            [move(u) for u in self.U],
            move(self.scale),
            move(self.B),
            move(self.gram),
            self.ritz,
        )

    def precondition(self, y: torch.Tensor, N: int) -> torch.Tensor:
        """P y for y (..., N) at all patch vertices: zero on the patch boundary but its free
        sides."""
        return self._separable(y, N, [U.T for U in self.U], self.scale)

    def inverse_laplacian(self, r: torch.Tensor) -> torch.Tensor:
        """S_1^{-1} r = P P^T r for r (..., N) at all patch vertices (:func:`laplacian_whitening`:
        ((x)_k W_k) D^{-1} ((x)_k W_k)^T on the free vertices, zero elsewhere)."""
        return self._separable(r, r.shape[-1], [W.T for W in self.W], self.scale**2)

    def _separable(self, y: torch.Tensor, N: int, left: list, scale: torch.Tensor):
        """((x)_k W_k) scale ((x)_k left_k) y on the free vertices of y (..., N), zero
        elsewhere."""
        lead = y.shape[:-1]
        z = y[..., self.free].reshape(*lead, *self.counts[::-1])
        for k, A in enumerate(left):
            z = _along(z, A, -1 - k)
        z = z * scale
        for k, W in enumerate(self.W):
            z = _along(z, W, -1 - k)
        out = torch.zeros(*lead, N, dtype=y.dtype, device=y.device)
        out[..., self.free] = z.reshape(*lead, -1)
        return out

    def project(self, alpha: torch.Tensor) -> torch.Tensor:
        """alpha - B^T (B B^T)^+ B alpha: the orthogonal projection onto ker B."""
        return alpha - ((alpha @ self.B.T) @ self.gram) @ self.B

    def __call__(self, y: torch.Tensor, project: bool) -> torch.Tensor:
        """alpha = P y, and with ``project`` P y - B^T (B B^T)^+ B P y (in ker B)."""
        alpha = self.precondition(y, self.B.shape[1])
        return self.project(alpha) if project else alpha


def _along(x: torch.Tensor, A: torch.Tensor, axis: int) -> torch.Tensor:
    """A applied to the vectors of x along ``axis``."""
    return torch.movedim(torch.movedim(x, axis, -1) @ A.T, -1, axis)


def _q1_matrices_1d(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The 1D Q1 stiffness K = tridiag(-1, 2, -1) and mass M = tridiag(1, 4, 1) / 6 on n unit
    cells, all n + 1 vertices (end rows halved: no boundary condition)."""
    ends = np.ones(n + 1)
    ends[0] = ends[-1] = 0.5
    off = np.ones(n)
    K = np.diag(2 * ends) - np.diag(off, 1) - np.diag(off, -1)
    M = (np.diag(4 * ends) + np.diag(off, 1) + np.diag(off, -1)) / 6
    return K, M


def _free_1d(n: int, lo: bool, hi: bool) -> np.ndarray:
    """(n + 1,) mask of the unknown vertices of n cells: the ends only where ``lo``/``hi``."""
    m = np.ones(n + 1, dtype=bool)
    m[0], m[-1] = bool(lo), bool(hi)
    return m


def free_vertices(cells, free=None) -> np.ndarray:
    """Mask of the vertices (local order, x fastest) of a grid of ``cells`` (n_x, n_y[, n_z])
    unit cells whose values are unknowns: all but those on a side with zero values; ``free``:
    (d, 2) mask [axis, (lo, hi)] of the sides without (Neumann sides; default none)."""
    d = len(cells)
    free = np.zeros((d, 2), dtype=bool) if free is None else np.asarray(free, dtype=bool)
    mask = np.ones((), dtype=bool)
    for k in range(d):  # x fastest: axis k is the (d - 1 - k)-th of the (z, y, x) array
        mask = np.multiply.outer(_free_1d(cells[k], *free[k]), mask)
    return mask.ravel()


def laplacian_whitening(cells, free=None) -> tuple[list, list, np.ndarray]:
    """Factors of a preconditioner P with P^T S_1 P = I for the Q1 stiffness S_1 of the
    Laplacian on a grid of ``cells`` unit cells with zero values on the sides but the ``free``
    ones (:func:`free_vertices`): S_1 = sum_k M (x) .. K_k .. (x) M. Per axis the generalised
    eigenvectors W_k (K W = M W Lambda, W^T M W = I) and U_k, the orthogonal polar factor of
    W_k; P = (x)_k W_k D^{-1/2} ((x)_k U_k)^T, D = sum_k Lambda_k. With zero values on every
    side this is exactly S_1^{-1/2} (sine eigenvectors, U = the sines). It preconditions the
    Deep Ritz energy: alpha = P y makes 1/2 alpha^T S alpha isotropic in y.

    Returns:
        (W, U, D^{-1/2}) with D^{-1/2} shaped (n_z, n_y, n_x) over the free vertices."""
    d = len(cells)
    free = np.zeros((d, 2), dtype=bool) if free is None else np.asarray(free, dtype=bool)
    Ws, Us, D = [], [], np.zeros(())
    for k in range(d):
        keep = _free_1d(cells[k], *free[k])
        K, M = (x[keep][:, keep] for x in _q1_matrices_1d(cells[k]))
        Lc = np.linalg.cholesky(M)  # K W = M W Lambda via Lc^{-1} K Lc^{-T}
        inv = np.linalg.inv(Lc)
        lam, Z = np.linalg.eigh(inv @ K @ inv.T)
        W = inv.T @ Z
        left, _, right = np.linalg.svd(W)
        Ws.append(W)
        Us.append(left @ right)
        D = np.add.outer(lam, D)  # axis k outermost so far: (.., z, y, x)
    return Ws, Us, 1.0 / np.sqrt(D)


class CoefficientNetworks(torch.nn.Module):
    """One convolutional network a|_{N^l(T)} -> C_T Lambda_j shared by all patches (translation
    invariance), for every configuration, batched over patches and samples, in d = 2 or 3.

    Every patch is placed into the window of (2l+1)^d coarse cells centred at T (W = (2l+1) r
    fine cells a side); cells of the window outside the patch (truncation at the domain
    boundary) carry a mask channel 0, or -1 beyond a Neumann side of the domain (where the
    correctors are free, not zero). Input channels (:func:`channels`): mask * (log a - m_T) / s
    (m_T the mean of log a over the patch, s a fixed scale), mask and the d cell-centre
    coordinates (so the network knows where T is), and the element loads a grad Lambda_j on T
    divided by exp(m_T) (``loads="mean"``) or by their largest magnitude over the patch
    (``loads="max"``: bounded by 1 whatever the contrast). The inputs, hence the outputs,
    depend on a only through a / exp(m_T): like the correctors, they do not change when a is
    scaled. Dilated 3^d convolutions (residual, GELU) act on the W^d cells; a final 2^d
    convolution gives 2^d values (one per corner j of T) at the (W+1)^d vertices. The values
    at the patch's vertices go through the preconditioner P of :func:`laplacian_whitening`
    (zero on the patch boundary but its Neumann sides) and, with ``project``, the exact
    projection onto ker B (B = I_H on the patch, independent of a):

        alpha = P y - B^T (B B^T)^+ B P y,

    so that B alpha = 0 to rounding and the Deep Ritz energy's minimizer over such outputs is
    the classical corrector. With ``contrast`` two more input channels a / max a and min a / a
    on the patch, with ``pool`` the window's mean added to every hidden layer, with ``output``
    "scaled" alpha = s^{-1/2} P y before the projection (s the vertex mean of a over a's mean
    on T); with ``zero_output`` the last convolution starts at zero (alpha = 0, energy 0). With
    ``ritz`` = m > 0 the last convolution gives m vectors in ker B and the correctors are the
    Deep Ritz energy's minimisers in their span (:mod:`dolfinx_lod.neural.ritz`; ``cell``: the
    fine cell sizes h); each of ``ritz_steps`` steps then adds to the span the residual
    F_j - S alpha_j preconditioned by the Laplacian and by diag S (projected onto ker B) and
    takes the minimisers again: a few steps of a block Krylov solver, unrolled in training.
    Out of training (``eval()``) with ``ritz_tol`` > 0 the steps go on while a step lowers the
    Deep Ritz energy E_j = -1/2 F_j^T alpha_j of some corrector by more than ``ritz_tol``
    |E_j|, at most :data:`RITZ_MAX_STEPS` in all.
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
        zero_output: bool = False,
        ritz: int = 0,
        cell: tuple[float, ...] | None = None,
        ritz_steps: int = 0,
        ritz_tol: float = 0.0,
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
        self.dim, self.r = patch_dims(Pi)
        if ritz < 0 or (ritz and cell is None):
            raise ValueError(f"cnn ritz must be >= 0 (0: off) and needs the cell sizes, got {ritz}")
        if ritz_steps < 0 or (ritz_steps and not ritz):
            raise ValueError(f"cnn ritz steps must be >= 0 and need ritz > 0, got {ritz_steps}")
        if not 0 <= ritz_tol < 1 or (ritz_tol and not ritz):
            raise ValueError(f"cnn ritz tol must be in [0, 1) and needs ritz > 0, got {ritz_tol}")
        self.ritz, self.cell, self.ritz_steps, self.ritz_tol = ritz, cell, ritz_steps, ritz_tol
        if self.dim not in _CONV:
            raise ValueError(f"the cnn network is for 2D and 3D patches, got dimension {self.dim}")
        self.cells = (2 * layers + 1) * self.r  # W
        self.register_buffer("Pi", Pi.clone())
        self.register_buffer("log_scale", torch.tensor(log_scale))
        conv = _CONV[self.dim]
        self.first = conv(channels(self.dim) + 2 * contrast, width, 3, padding=1)
        dilations = [d for d in (1, 2, 4, 8, 16) if 2 * d < self.cells] or [1]
        self.hidden = torch.nn.ModuleList(
            conv(width, width, 3, padding=d, dilation=d)
            for d in (dilations[i % len(dilations)] for i in range(depth - 2))
        )
        self.pooled = torch.nn.ModuleList(
            torch.nn.Linear(width, width) for _ in (self.hidden if pool else ())
        )
        self.last = conv(width, ritz or 2**self.dim, 2, padding=1)
        if zero_output:  # alpha = 0 at the start: the Deep Ritz energy starts at 0
            torch.nn.init.zeros_(self.last.weight)
            torch.nn.init.zeros_(self.last.bias)
        self._geometry: dict[tuple, PatchMaps] = {}

    def _window(self, config) -> tuple[torch.Tensor, torch.Tensor]:
        """Window cell index of each patch cell and window vertex index of each patch vertex
        (local patch order, x fastest) of ``config``."""
        shape, element, _ = config
        offset = (self.layers - np.asarray(element)) * self.r
        cells = np.asarray(shape) * self.r
        c = lattice_keys(box_points(cells) + offset, self.cells)
        v = lattice_keys(box_points(cells + 1) + offset, self.cells + 1)
        return torch.from_numpy(c), torch.from_numpy(v)

    def maps(self, config) -> PatchMaps:
        """The :class:`PatchMaps` of ``config`` (float64)."""
        cells = tuple(int(n) * self.r for n in config.shape)
        free = config.neumann_sides()
        W, U, scale = laplacian_whitening(cells, free)
        B = patch_constraints(config, self.r, self.Pi.double().numpy())
        return PatchMaps(
            counts=tuple(len(w) for w in W),
            free=torch.from_numpy(free_vertices(cells, free).nonzero()[0]),
            W=[torch.from_numpy(w) for w in W],
            U=[torch.from_numpy(u) for u in U],
            scale=torch.from_numpy(scale),
            B=torch.from_numpy(B),
            gram=torch.linalg.pinv(torch.from_numpy(B @ B.T), hermitian=True),
            ritz=RitzMaps.build(config.shape, config.element, self.r, self.cell)
            if self.ritz
            else None,
        )

    def geometry(self, configs: list) -> tuple[torch.Tensor, list[tuple]]:
        """Window cells of every patch (G, M) (padding: -1) and per configuration the patches
        (indices into ``configs``), their window vertices (N_c,) and :meth:`maps`. Cached per
        configuration."""
        G = len(configs)
        windows = {c: self._window(c) for c in dict.fromkeys(configs)}
        M = max((w[0].numel() for w in windows.values()), default=1)
        cells = torch.full((G, M), -1, dtype=torch.int64)
        groups = []
        for config, (c, v) in windows.items():
            index = torch.tensor([g for g, other in enumerate(configs) if other == config])
            cells[index, : c.numel()] = c
            if config not in self._geometry:
                self._geometry[config] = self.maps(config)
            groups.append((index, v, self._geometry[config]))
        return cells, groups

    def beyond_neumann(self, configs: list) -> torch.Tensor:
        """(G, W^d): 1 on the window cells beyond a Neumann side of each patch, else 0."""
        W, r, d = self.cells, self.r, self.dim
        out = torch.zeros(len(configs), W**d, dtype=torch.float64)
        c = torch.arange(W)
        for g, config in enumerate(configs):
            free = config.neumann_sides()
            if not free.any():
                continue
            beyond = torch.zeros((W,) * d, dtype=torch.bool)
            for k in range(d):
                lo = (self.layers - config.element[k]) * r
                hi = lo + config.shape[k] * r
                side = ((c < lo) & bool(free[k, 0])) | ((c >= hi) & bool(free[k, 1]))
                beyond |= side.reshape((W,) + (1,) * k)  # axis k is the (d-1-k)-th
            out[g] = beyond.ravel().double()
        return out

    def source_gradients(self) -> torch.Tensor:
        """H grad Lambda_j at the window's cell centres inside T, zero elsewhere: (d 2^d, W^d)
        (channel d j + k: d/dx_k of corner j, corners in :func:`corner_bits` order)."""
        r, W, lo, d = self.r, self.cells, self.layers * self.r, self.dim
        t = (torch.arange(r, dtype=torch.float64) + 0.5) / r  # local cell centres in T
        x = torch.meshgrid(*([t] * d), indexing="ij")[::-1]  # x[k]: coordinate k, (z, y, x)
        grads = torch.zeros((d * 2**d,) + (W,) * d, dtype=torch.float64)
        inside = (slice(None),) + (slice(lo, lo + r),) * d
        for j, bits in enumerate(corner_bits(d)):
            phi = [x[k] if bits[k] else 1 - x[k] for k in range(d)]
            for k in range(d):
                rest = math.prod(phi[m] for m in range(d) if m != k)
                grads[inside][d * j + k] = (1 if bits[k] else -1) * rest
        return grads.reshape(d * 2**d, -1)

    def inputs(self, configs: list, a: torch.Tensor) -> torch.Tensor:
        """Network input (G K, channels, W, .., W) from a on the patch cells (G, K, M) (local
        order): log a centred on the patch, the patch mask, the cell centres and the element
        loads a grad Lambda_j on T (the right-hand sides of the correctors) over exp(m_T), m_T
        the mean of log a over the patch, or over their patch maximum (``loads``)."""
        cells = self.geometry(configs)[0].to(a.device)
        G, K, _ = a.shape
        W, d = self.cells, self.dim
        M = cells.shape[1]
        real = cells >= 0
        loga = torch.log(a[:, :, :M].clamp_min(1e-30))
        mask = real[:, None].to(a.dtype)  # (G, 1, M)
        m_T = (loga * mask).sum(2, keepdim=True) / mask.sum(2, keepdim=True).clamp_min(1)
        loga = (loga - m_T) / self.log_scale
        # padding entries go to a spare slot W^d (dropped), not onto a window cell
        x = torch.zeros(G, K, 2, W**d + 1, dtype=a.dtype, device=a.device)
        index = torch.where(real, cells, W**d)[:, None].expand(G, K, M)
        x[:, :, 0].scatter_(2, index, torch.where(real[:, None], loga, 0.0))
        x[:, :, 1].scatter_(2, index, real[:, None].expand(G, K, M).to(a.dtype))
        x = x[..., : W**d]
        x[:, :, 1] -= self.beyond_neumann(configs).to(a.device, a.dtype)[:, None]
        centre = (torch.arange(W, dtype=a.dtype, device=a.device) + 0.5) * 2 / W - 1
        xyz = torch.stack(torch.meshgrid(*([centre] * d), indexing="ij")[::-1])
        xyz = xyz.reshape(1, 1, d, W**d).expand(G, K, d, W**d)
        scaled = torch.exp(x[:, :, :1] * self.log_scale) * x[:, :, 1:2].clamp_min(0)  # a/e^m_T
        loads = scaled * self.source_gradients().to(a.device, a.dtype)[None, None]
        if self.loads == "max":
            loads = loads / loads.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-30)
        parts = [x, xyz, loads]
        if self.contrast:  # a / max_patch a and min_patch a / a, in (0, 1] on the patch
            inside = scaled > 0
            low = torch.where(inside, scaled, torch.inf).amin(dim=3, keepdim=True)
            high = scaled.amax(dim=3, keepdim=True)
            parts.append(scaled / high)
            parts.append(torch.where(inside, low / scaled.clamp_min(1e-30), 0.0))
        return torch.cat(parts, dim=2).reshape((G * K, -1) + (W,) * d)

    def vertex_scales(self, x: torch.Tensor) -> torch.Tensor:
        """s^{-1/2} at the window vertices (G K, (W+1)^d) from the inputs ``x``: s the mean of
        a over the patch cells at a vertex divided by the mean of a over T."""
        d, lo, r = self.dim, self.layers * self.r, self.r
        scaled = torch.exp(x[:, :1] * self.log_scale) * x[:, 1:2].clamp_min(0)
        ones = torch.ones((1, 1) + (2,) * d, dtype=x.dtype, device=x.device)
        total = _CONV_FN[d](scaled, ones, padding=1)
        count = _CONV_FN[d](x[:, 1:2].clamp_min(0), ones, padding=1)
        on_T = scaled[(slice(None), slice(None)) + (slice(lo, lo + r),) * d].flatten(1).mean(1)
        s = total / count.clamp_min(1) / on_T.reshape((-1,) + (1,) * (d + 1))
        return torch.where(count > 0, s, 1.0).rsqrt().flatten(1)

    def forward(self, configs: list, a: torch.Tensor, project: bool = True) -> torch.Tensor:
        """Correctors alpha (G, K, N, 2^d) at the patch vertices for a (G, K, M) on the patch
        cells of the patches ``configs``; zero on the patch boundary (and padding), in ker B
        with ``project`` (needed by ``ritz``)."""
        if self.ritz and not project:
            raise ValueError("the cnn's ritz output needs the projection onto ker B")
        _, groups = self.geometry(configs)
        G, K, _ = a.shape
        x = self.inputs(configs, a)
        h = torch.nn.functional.gelu(self.first(x))
        for i, conv in enumerate(self.hidden):
            z = conv(h)
            if self.pool:  # the whole window's mean: a global receptive field
                z = z + self.pooled[i](h.flatten(2).mean(2)).reshape(h.shape[:2] + (1,) * self.dim)
            h = h + torch.nn.functional.gelu(z)
        y = self.last(h).reshape(G, K, self.ritz or 2**self.dim, -1)  # (G, K, m, (W+1)^d)
        scales = self.vertex_scales(x).reshape(G, K, 1, -1) if self.output == "scaled" else None
        N = max((v.numel() for _, v, _ in groups), default=1)
        alpha = torch.zeros(G, K, N, 2**self.dim, dtype=a.dtype, device=a.device)
        for index, verts, maps in groups:
            maps = maps.to(a.device, a.dtype)
            index, verts = index.to(a.device), verts.to(a.device)
            if scales is None:
                values = maps(y[index][..., verts], project)  # (g, K, 2^d, N_c)
            else:  # alpha = (projection of) s^{-1/2} (.) P y
                values = maps.precondition(y[index][..., verts], verts.numel())
                values = values * scales[index][..., verts]
                values = maps.project(values) if project else values
            if maps.ritz is not None:  # (g, K, m, N_c) -> (g, K, 2^d, N_c)
                values = self._ritz_stage(maps, values, a[index][..., : maps.ritz.corners.shape[0]])
            alpha[index, :, : verts.numel()] = values.transpose(2, 3)
        return alpha

    def _ritz_stage(self, maps: PatchMaps, W: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """:meth:`_ritz`; in 3D training under gradient checkpointing: the unrolled steps'
        intermediates (the span W and S W, (m, N) each per patch and field) are then kept
        for one configuration at a time, recomputed in the backward pass."""
        if self.dim == 3 and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._ritz, maps, W, a, use_reentrant=False)
        return self._ritz(maps, W, a)

    def _ritz(self, maps: PatchMaps, W: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The correctors (g, K, 2^d, N) in span W (g, K, m, N), grown by ``ritz_steps``
        preconditioned residuals, for a (g, K, n_t) on the patch cells."""
        ritz = maps.ritz
        F = ritz.loads(a)
        span = ritz.span(W, a, F)
        c = ritz.coefficients(span).transpose(-1, -2)
        jacobi = torch.zeros_like(F[..., :1, :])
        jacobi[..., maps.free] = 1.0 / ritz.diagonal(a)[..., None, maps.free].clamp_min(1e-30)
        online = not self.training and self.ritz_tol > 0
        energy = _energies(c, span) if online else None  # E_j at the minimiser
        for step in range(RITZ_MAX_STEPS if online else self.ritz_steps):
            r = F - c @ span.SW  # F - S alpha, alpha = c W
            z = torch.cat([maps.inverse_laplacian(r), r * jacobi], dim=-2)
            span = ritz.grow(span, maps.project(z), a, F, maps.project)
            c = ritz.coefficients(span).transpose(-1, -2)
            if online:  # the stopping rule (no per-step check, no sync, in training)
                energy, before = _energies(c, span), energy
                lowered = bool((before - energy > self.ritz_tol * energy.abs()).any())
                if step + 1 >= self.ritz_steps and not lowered:
                    break
        alpha = c @ span.W
        return alpha


#: At most this many Ritz steps out of training (``ritz_tol``).
RITZ_MAX_STEPS = 32


def _energies(c: torch.Tensor, span: RitzSpan) -> torch.Tensor:
    """E_j = -1/2 F_j^T alpha_j (..., 2^d) of alpha_j = c_j^T W from W^T F (float64)."""
    return -0.5 * (c.double() * span.loads.transpose(-1, -2)).sum(-1)


def log_statistics(batch: PatchBatch, comm: MPI.Comm) -> tuple[float, float]:
    """Mean and standard deviation of log a over all patch cells and samples (global).
    Collective."""
    _, r = patch_dims(batch.Pi)
    local = np.zeros(3)
    for g, config in enumerate(batch.configs):
        size = int(np.prod(np.asarray(config.shape) * r))
        loga = torch.log(batch.a[g, :, :size].double())
        local += [loga.numel(), float(loga.sum()), float((loga**2).sum())]
    count, total, squares = comm.allreduce(local, op=MPI.SUM)
    mean = total / max(count, 1)
    return mean, math.sqrt(max(squares / max(count, 1) - mean**2, 0.0)) or 1.0
