"""Corrector networks, one per patch, batched: G independent networks of identical shape are
stored as stacked weight tensors and evaluated (and trained) together.

Three architectures produce the correctors alpha (G, K, N, 2^d) at the patch vertices (paper (13)).
All share one interface: ``architecture`` (name), ``needs_coefficient`` (input: the coefficient
on the patch, or the parameter p) and a forward pass to alpha (G, K, N, 2^d);
:func:`dolfinx_lod.neural.losses.network_outputs` calls any of them on a
:class:`~dolfinx_lod.neural.export.PatchBatch`. :data:`NETWORKS` registers them by name: how
each is built for training, rebuilt from a model file and what it needs.

- :class:`PatchNetworks` (paper Definitions 3.1 and 3.3): an MLP (x, p) -> R^{2^d} with tanh
  activations and Xavier/Glorot normal initialization, localized by
  g(x) = prod_k 4 x_k (1 - x_k) in patch coordinates scaled to [0, 1]^d, so that every
  output vanishes on the patch boundary.
- :class:`ReducedPatchNetworks`: an MLP p -> R^{q x 2^d} giving coordinates of the correctors in a
  fixed patch basis V_T (N x q, columns in ker B, zero on the patch boundary), alpha = V_T c(p).
  One forward pass costs O(q) network work plus one N x q product per patch, instead of an MLP
  evaluation at every vertex.

- :class:`~dolfinx_lod.neural.cnn.CoefficientNetworks`: one CNN shared by all patches from
  log a on the patch's fine cells to the correctors, projected exactly onto ker B (needs no p:
  any coefficient; Conv2d on quadrilateral, Conv3d on hexahedral patches).

Parameters p enter scaled to [-1, 1] by the family's range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from mpi4py import MPI

from dolfinx_lod.neural.cnn import CoefficientNetworks, log_statistics
from dolfinx_lod.neural.export import PatchBatch
from dolfinx_lod.neural.reduced import patch_bases, reduced_system, ritz_coordinate_statistics

if TYPE_CHECKING:
    from dolfinx_lod.neural.presets import TrainingSettings


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


def network_generator(seed: int, cell: int) -> torch.Generator:
    """The generator of the network (or multipliers) of coarse cell T = ``cell``: seeded with
    (seed, T), so that nothing depends on which rank owns T."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(cell))


def _seeded_init(nets: _BatchedMLP, cells: Sequence[int], seed: int) -> None:
    """Xavier/Glorot normal weights of network g from the generator of (``seed``, cells[g])."""
    with torch.no_grad():
        for g, cell in enumerate(cells):
            gen = network_generator(seed, cell)
            for W in nets.weights:
                std = math.sqrt(2.0 / (W.shape[1] + W.shape[2]))
                W[g] = torch.randn(W.shape[1:], generator=gen) * std


#: What a builder returns: the networks and, for the reduced ones, the Deep Ritz system (A, b)
#: in the coordinates of their patch bases (:func:`~dolfinx_lod.neural.reduced.reduced_system`).
Built = tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor] | None]


def _build_mlp(
    batch: PatchBatch, num_params: int, settings: TrainingSettings, comm: MPI.Comm
) -> Built:
    dim = batch.coords.shape[-1]
    nets = PatchNetworks(len(batch.cells), num_params, settings.width, settings.depth, dim)
    _seeded_init(nets, batch.cells, settings.seed)
    return nets, None


def _build_reduced(
    batch: PatchBatch, num_params: int, settings: TrainingSettings, comm: MPI.Comm
) -> Built:
    if batch.C is None:
        raise ValueError("the reduced architecture needs the classical training correctors")
    V = patch_bases(batch, settings.modes)
    system = reduced_system(batch, V)
    offset, scale = ritz_coordinate_statistics(*system, V)
    dim = batch.coords.shape[-1]
    nets = ReducedPatchNetworks(V, num_params, settings.width, settings.depth, offset, scale, dim)
    _seeded_init(nets, batch.cells, settings.seed)
    with torch.no_grad():
        nets.weights[-1].zero_()  # start at the mean Ritz coordinates
    return nets, system


def _build_cnn(
    batch: PatchBatch, num_params: int, settings: TrainingSettings, comm: MPI.Comm
) -> Built:
    stats = log_statistics(batch, comm)
    # In 3D a random output's energy 1/2 |y|^2 over the (W+1)^3 window vertices dwarfs the
    # correctors' and training spends its epochs shrinking it: there the output starts at
    # zero (docs/lod-ann.md). 2D keeps its measured start.
    zero = batch.coords.shape[-1] == 3 and not settings.ritz  # (Ritz: W = 0 is singular)
    with torch.random.fork_rng():
        torch.manual_seed(settings.seed)
        nets = CoefficientNetworks(
            batch.layers,
            batch.Pi.float(),
            settings.width,
            settings.depth,
            stats[1],
            settings.loads,
            settings.contrast,
            settings.pool,
            settings.output,
            zero_output=zero,
            ritz=settings.ritz,
            cell=batch.cell,
            ritz_steps=settings.ritz_steps,
            ritz_tol=settings.ritz_tol,
        )
    return nets, None


def _dim(metadata: dict[str, Any]) -> int:
    return len(metadata["domain"][0])


def _cell(metadata: dict[str, Any]) -> tuple[float, ...]:
    """The fine cell sizes h of a model's problem (its domain and fine cell counts)."""
    lo, hi = (np.asarray(c, dtype=np.float64) for c in metadata["domain"])
    return tuple(float(h) for h in (hi - lo) / np.broadcast_to(metadata["n"], lo.shape))


@dataclass(frozen=True)
class Architecture:
    """A registered corrector network architecture.

    Attributes:
        cls: The network class (its ``needs_coefficient``: input a on the patch, else p).
        build: (batch, N_p, settings, comm) -> :data:`Built`: the networks to train for the
            patches of a batch (collective).
        rebuild: (model metadata, state dict, patch count) -> the networks of a model file.
        modes: The spec names a patch basis size Q (``NAME:Q:WIDTHxDEPTH``).
        needs_corrector_data: Training reads classical correctors (POD bases).
        projection: The outputs can be projected exactly onto ker B (constraint "projection").
        in_kernel: The outputs lie in ker B to rounding whatever the constraint.
        compiles: Training may run the forward pass through ``torch.compile``.
    """

    cls: type[torch.nn.Module]
    build: Callable[[PatchBatch, int, Any, MPI.Comm], Built]
    rebuild: Callable[[dict[str, Any], dict[str, torch.Tensor], int], torch.nn.Module]
    modes: bool = False
    needs_corrector_data: bool = False
    projection: bool = False
    in_kernel: bool = False
    compiles: bool = False


#: The network registry: architecture name -> :class:`Architecture`.
NETWORKS: dict[str, Architecture] = {
    "mlp": Architecture(
        PatchNetworks,
        _build_mlp,
        lambda meta, state, count: PatchNetworks(
            count, meta["num_params"], meta["width"], meta["depth"], dim=_dim(meta)
        ),
        compiles=True,
    ),
    "reduced": Architecture(
        ReducedPatchNetworks,
        _build_reduced,
        lambda meta, state, count: ReducedPatchNetworks(
            state["basis"], meta["num_params"], meta["width"], meta["depth"], dim=_dim(meta)
        ),
        modes=True,
        needs_corrector_data=True,
        in_kernel=True,
    ),
    "cnn": Architecture(
        CoefficientNetworks,
        _build_cnn,
        lambda meta, state, count: CoefficientNetworks(  # models before "loads": "mean"
            meta["l"],
            state["Pi"],
            meta["width"],
            meta["depth"],
            loads=meta.get("loads", "mean"),
            contrast=meta.get("contrast", False),
            pool=meta.get("pool", False),
            output=meta.get("output", "laplacian"),
            ritz=meta.get("ritz", 0),
            cell=_cell(meta) if meta.get("ritz") else None,
            ritz_steps=meta.get("ritz_steps", 0),
            ritz_tol=meta.get("ritz_tol", 0.0),
        ),
        projection=True,
    ),
}


def architecture(name: str) -> Architecture:
    """The registered architecture ``name``; ``ValueError`` naming the registered ones."""
    if name not in NETWORKS:
        raise ValueError(f"architecture must be one of {tuple(NETWORKS)}, got {name!r}")
    return NETWORKS[name]


def build_networks(
    batch: PatchBatch, num_params: int, settings: TrainingSettings, comm: MPI.Comm
) -> Built:
    """Networks of ``settings.architecture`` for the patches of ``batch``, each initialised
    from its own seeded generator (a network shared by all patches from ``settings.seed``, the
    same on every rank), and for the reduced architecture the Deep Ritz system of its patch
    bases. Collective."""
    return architecture(settings.architecture).build(batch, num_params, settings, comm)


def parse_network(spec: str) -> dict[str, Any]:
    """``cnn:WxD`` (coefficient-aware CNN, W channels, D convolutions), ``mlp:WxD`` (paper
    MLP, width W, depth D) or ``reduced:Q:WxD`` (Q patch modes) -> TrainingSettings fields."""
    parts = spec.split(":")
    arch = NETWORKS.get(parts[0])
    try:
        if arch is not None and len(parts) == (3 if arch.modes else 2):
            w, d = parts[-1].split("x")
            fields = {"architecture": parts[0], "width": int(w), "depth": int(d)}
            return {**fields, "modes": int(parts[1])} if arch.modes else fields
    except ValueError:
        pass
    raise ValueError(
        "`network` must be 'cnn:WIDTHxDEPTH', 'mlp:WIDTHxDEPTH' or 'reduced:MODES:WIDTHxDEPTH', "
        f"got {spec!r}"
    )
