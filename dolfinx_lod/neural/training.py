"""Deep Ritz training of the corrector networks (paper (14)–(18)).

For every owned patch (network) and training parameter p_k, with alpha = network output at the
patch vertices (4 columns, one per corner j of T),

    energy  E = sum_{T, j} 1/N_s sum_k [ 1/2 alpha^T S(p_k) alpha - F_j(p_k)^T alpha ]          (14)
    penalty P = sum_{T, j} 1/N_s 1/(N_s N_H^l) ||mu_{T,j} (.) I_H^l alpha_{T,j}||_2^2        (16)

(N_s = K samples, N_H^l = coarse vertices of the patch: rows of its I_H^l = B) and the networks
solve the min-max problem min_theta max_mu E + P (18): Adam descent in theta, Adam ascent in mu
(initialised U(0, 1)), both with the learning rate decaying by ``lr_decay`` every ``lr_step``
epochs. Per network (T, j) this is the paper's loss (17) = (14) + (16) divided by N_s, which
leaves Adam's steps unchanged (Adam is invariant to a constant factor of the loss, up to its
epsilon) and keeps the learning rate independent of N_s. E is the element version of the
paper's energy: for element correctors C_T Lambda_j the linear term is the element load F_j
of (7). The loss is a sum of one term per network (T, j); :meth:`DeepRitzTrainer.loss_terms`
returns them (the loss curve of one node's correction, paper Fig. 3, is their sum over the
elements at that node).

The coefficient-aware networks (:class:`~dolfinx_lod.neural.networks.CoefficientNetworks`) see
a on the patch instead of p. Their outputs can be projected exactly onto ker B (B does not depend
on a): then P = 0, no multiplier is needed and E's minimizer is the classical corrector, so the
training needs the coefficients alone. Their energy is weighted per patch and sample by
1 / sum_j F_j^T Lambda_j = 1 / sum_j ||Lambda_j||_{a,T}^2 (computed from a, not from correctors),
which leaves the minimizer unchanged and makes every sample count alike.

Networks per patch are independent (the loss is a sum), so they are trained batched per
configuration and split over MPI ranks with no communication but the loss history (one allreduce
per epoch); the shared coefficient-aware network sums its gradients over the ranks.
Every network is initialised from a generator seeded with (seed, T): results do not depend on
the number of ranks.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from mpi4py import MPI
from tqdm import tqdm

from dolfinx_lod.io import write_atomic
from dolfinx_lod.neural.export import PatchBatch
from dolfinx_lod.neural.networks import (
    CoefficientNetworks,
    PatchNetworks,
    ReducedPatchNetworks,
)
from dolfinx_lod.parallel import (
    InputError,
    NumericalError,
    OutputError,
    brief,
    collective,
    validate,
)

#: Format tag of the training checkpoints.
#: 3: the penalty (16) with mu squared, normalized by N_s N_H^l.
CHECKPOINT_FORMAT = "dolfinx_lod.checkpoint/3"
#: Settings that may differ between a checkpoint and the run that resumes it (they decide how
#: long training goes on and where, not the path it takes).
RESUMABLE_SETTINGS = ("epochs", "patience", "checkpoint_every", "device", "compile")


@dataclass
class TrainingSettings:
    """Network shape and optimisation settings (paper defaults where the paper gives them)."""

    #: "mlp" (paper, Def. 3.1), "reduced" (alpha = V_T c(p)) or "cnn" (coefficient-aware)
    architecture: str = "mlp"
    width: int = 128
    depth: int = 8
    modes: int = 16  # q, patch basis size of the reduced architecture
    epochs: int = 30000  # Deep Ritz epochs (after the warm start)
    lr: float = 1e-3
    lr_decay: float = 0.9
    lr_step: int = 1000
    patience: int = 2000  # stop when the loss has not improved for this many epochs ...
    min_delta: float = 1e-6  # ... by more than this relative amount
    warm_start: int = 0  # supervised epochs (energy-norm fit of the classical correctors)
    checkpoint_every: int = 500
    validate_every: int = 50  # epochs between validation energies (model selection)
    seed: int = 0
    device: str = "cpu"
    #: B alpha = 0 by the self-adaptive "penalty" (16) or by the exact "projection" (cnn only)
    constraint: str = "penalty"
    batch_size: int = 0  # training samples per optimizer step (projection only; 0: all)
    #: Train the mlp networks through torch.compile (fused kernels: bias, tanh and their
    #: derivatives in one pass; docs/results.md has the time per epoch); needs a C compiler.
    compile: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting out of range."""
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        if self.constraint not in ("penalty", "projection"):
            raise ValueError(
                f"constraint must be 'penalty' or 'projection', got {self.constraint!r}"
            )
        if self.constraint == "projection" and self.architecture != "cnn":
            raise ValueError(
                f"constraint 'projection' needs architecture 'cnn', got {self.architecture!r}"
            )
        if self.batch_size < 0 or (self.batch_size and self.constraint != "projection"):
            raise ValueError(
                f"batch size must be >= 0 (0: all samples) and needs constraint 'projection', "
                f"got {self.batch_size} with {self.constraint!r}"
            )
        for name in (
            "width",
            "depth",
            "modes",
            "epochs",
            "lr_step",
            "patience",
            "checkpoint_every",
            "validate_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"training setting {name} must be >= 1, got {getattr(self, name)}")
        if self.warm_start < 0:
            raise ValueError(f"warm start epochs must be >= 0, got {self.warm_start}")
        if not (self.lr > 0 and 0 < self.lr_decay <= 1):
            raise ValueError(f"need lr > 0 and 0 < lr_decay <= 1, got {self.lr}, {self.lr_decay}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch finds no CUDA device")

    @property
    def uses_corrector_data(self) -> bool:
        """Whether training reads classical correctors (POD bases, supervised warm start)."""
        return self.architecture == "reduced" or self.warm_start > 0


#: Network architectures of :class:`TrainingSettings`.
ARCHITECTURES = ("mlp", "reduced", "cnn")


class TrainingDiverged(NumericalError):
    """The loss became NaN/infinite or exploded; the last good checkpoint (if any) is kept."""


@dataclass
class History:
    """Loss history: per epoch the energy part and the penalty part (summed over ranks)."""

    epoch: list[int] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    penalty: list[float] = field(default_factory=list)
    phase: list[str] = field(default_factory=list)  # "warm" (supervised) or "ritz"
    validation: list[tuple[int, float]] = field(default_factory=list)  # (epoch, energy)
    #: The loss parts of the correction of one coarse node's basis function (paper Fig. 3):
    #: the terms of the networks (T, j) at that node, per epoch (empty if no node was chosen).
    node_energy: list[float] = field(default_factory=list)
    node_penalty: list[float] = field(default_factory=list)


def _network_generator(seed: int, cell: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(cell))


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


def init_networks(
    batch: PatchBatch, num_params: int, settings: TrainingSettings, comm: MPI.Comm
) -> tuple[
    PatchNetworks | ReducedPatchNetworks | CoefficientNetworks,
    tuple[torch.Tensor, torch.Tensor] | None,
]:
    """Networks for the patches of ``batch``, each initialised from its own seeded generator
    (the shared coefficient-aware network from ``settings.seed``, the same on every rank),
    and for the reduced architecture the :func:`reduced_system` (A, b) of its patch bases.
    Collective."""
    cells = batch.cells
    system = None
    dim = batch.coords.shape[-1]
    if settings.architecture == "cnn":
        if dim != 2:
            raise ValueError(f"the cnn network is for 2D patches, got dimension {dim}")
        stats = log_statistics(batch, comm)
        with torch.random.fork_rng():
            torch.manual_seed(settings.seed)
            nets = CoefficientNetworks(
                batch.layers, batch.Pi.float(), settings.width, settings.depth, stats[1]
            )
        return nets, None
    if settings.architecture == "reduced":
        if batch.C is None:
            raise ValueError("the reduced architecture needs the classical training correctors")
        V = patch_bases(batch, settings.modes)
        system = reduced_system(batch, V)
        offset, scale = ritz_coordinate_statistics(*system, V)
        nets = ReducedPatchNetworks(
            V, num_params, settings.width, settings.depth, offset, scale, dim
        )
    else:
        nets = PatchNetworks(len(cells), num_params, settings.width, settings.depth, dim)
    with torch.no_grad():
        for g, cell in enumerate(cells):
            gen = _network_generator(settings.seed, cell)
            for W in nets.weights:
                std = math.sqrt(2.0 / (W.shape[1] + W.shape[2]))
                W[g] = torch.randn(W.shape[1:], generator=gen) * std
        if settings.architecture == "reduced":  # start at the mean Ritz coordinates
            nets.weights[-1].zero_()
    return nets, system


class DeepRitzTrainer:
    """Min-max Deep Ritz training of the networks of all owned patches. Collective methods.

    Args:
        batch: Exported patch data of the training samples.
        params: Training parameters scaled to [-1, 1], shape (K, N_p).
        settings: Network and optimiser settings.
        comm: Communicator over which the patches are split.
        validation: Patch data and scaled parameters for model selection.
        problem: Problem metadata (recorded in the checkpoints).
        node: The networks (coarse cell T, corner j) of one coarse node's basis function
            (global); the history records their loss terms per epoch (paper Fig. 3).
    """

    def __init__(
        self,
        batch: PatchBatch,
        params: torch.Tensor,
        settings: TrainingSettings,
        comm: MPI.Comm,
        validation: tuple[PatchBatch, torch.Tensor] | None = None,
        problem: dict | None = None,
        node: list[tuple[int, int]] = (),
    ):
        settings.validate()
        self.settings, self.comm = settings, comm
        #: What the training data was made for (problem metadata, samples): checkpoints
        #: record it and a resume must match it.
        self.problem = dict(problem or {})
        device = torch.device(settings.device)
        self.batch = batch.to(device)
        self.params = params.to(device)
        nets, system = init_networks(batch, params.shape[1], settings, comm)
        self.nets = nets.to(device)
        #: The training forward pass: compiled for the mlp networks if asked (same weights).
        self.forward = self.nets
        if settings.compile and settings.architecture == "mlp":
            self.forward = torch.compile(self.nets, dynamic=False)
        G, K, _ = batch.shape
        corners = batch.F.shape[-1]
        # mu in the layout of B alpha: (G m, K 2^d), U(0, 1) seeded per patch.
        m = batch.B.shape[0] // max(G, 1)
        mu = torch.empty(G, m, K * corners)
        for g, cell in enumerate(batch.cells):
            mu[g] = torch.rand(mu.shape[1:], generator=_network_generator(settings.seed + 1, cell))
        self.mu = torch.nn.Parameter(mu.reshape(G * m, K * corners).to(device))
        self.opt_theta = torch.optim.Adam(self.nets.parameters(), lr=settings.lr)
        self.opt_mu = torch.optim.Adam([self.mu], lr=settings.lr, maximize=True)
        self.schedulers = [
            torch.optim.lr_scheduler.StepLR(opt, settings.lr_step, settings.lr_decay)
            for opt in (self.opt_theta, self.opt_mu)
        ]
        self.history = History()
        #: This rank's networks of ``node``: indices into (G, 2^d) of the loss terms.
        index = {int(c): g for g, c in enumerate(batch.cells)}
        mine = np.array([(index[c], j) for c, j in node if c in index], dtype=np.int64)
        mine = torch.from_numpy(mine.reshape(-1, 2))
        self.node = (mine[:, 0], mine[:, 1]) if len(mine) else ()
        self.monitors_node = bool(node)
        self.epoch = 0
        self.train_seconds = 0.0
        #: Early-stopping state (best training loss, epochs since, first loss) and the epoch of
        #: the last checkpoint written or loaded: all checkpointed, so a resume is exact.
        self.stopping = {"best": math.inf, "since_best": 0, "first": None}
        self.checkpoint_epoch: int | None = None
        # Model selection on validation parameters (reduced or projected networks: alpha in
        # ker B exactly, so the validation energy measures the energy error).
        self.validation = None
        self.projected = settings.constraint == "projection"
        if validation is not None and (settings.architecture == "reduced" or self.projected):
            self.validation = (validation[0].to(device), validation[1].to(device))
        self.best_state: tuple[float, dict, int] | None = None
        # Reduced networks train in their coordinates c (alpha = V c): the energy from
        # A_k = V^T S_k V, b_k = V^T F_k and the penalty from B V, computed once (exact).
        self.reduced = self.validation_system = None
        if system is not None:
            V = self.nets.basis
            BV = torch.sparse.mm(self.batch.B, V.reshape(G * V.shape[1], -1)).reshape(G, m, -1)
            self.reduced = (*(x.to(device) for x in system), BV)
            if self.validation is not None:
                self.validation_system = reduced_system(self.validation[0], V)

        #: Sample chunks of the optimizer steps of an epoch, with their share of the samples.
        self.chunks: list[tuple[PatchBatch, float]] = [(self.batch, 1.0)]
        if settings.batch_size and settings.batch_size < K:
            parts = torch.arange(K).split(settings.batch_size)
            self.chunks = [(self.batch.select(idx), len(idx) / K) for idx in parts]
        #: Row weights 1 / (N_s^2 N_H^l) of the penalty (16) per chunk size.
        self.penalty_weights = {
            k: constraint_weights(self.batch, k) for k in {c.shape[1] for c, _ in self.chunks}
        }

    def outputs(self, batch: PatchBatch | None = None) -> torch.Tensor:
        """Network outputs alpha (G, K, N, 4) for the training samples (or ``batch``)."""
        batch = self.batch if batch is None else batch
        return network_outputs(self.forward, batch, self.params, self.projected)

    def loss_terms(self, batch: PatchBatch | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Local (this rank's) energy (14) and self-adaptive penalty (16) (zero with the
        projection) of every network (T, j), shape (G, 2^d) each, on the training samples or
        the chunk ``batch`` of them."""
        if self.reduced is not None:
            A, b, BV = self.reduced
            c = self.nets.coordinates(self.params)  # (G, K, q, 2^d)
            Bc = torch.einsum("gmq,gkqj->gmkj", BV, c)
            w = self.penalty_weights[c.shape[1]].reshape(Bc.shape[0], -1, 1, 1)
            mu = self.mu.reshape(Bc.shape)
            return reduced_energy(A, b, c), (w * (mu * Bc) ** 2).sum(dim=(1, 2))
        batch = self.batch if batch is None else batch
        alpha = self.outputs(batch)
        weights = energy_weights(batch) if self.nets.needs_coefficient else None
        energy = energy_terms(batch, alpha, weights)
        if self.projected:
            return energy, torch.zeros_like(energy)
        w = self.penalty_weights[batch.shape[1]]
        return energy, penalty_terms(batch, alpha, self.mu, w)

    def loss_parts(self, batch: PatchBatch | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Local energy (14) and penalty (16): the sums of :meth:`loss_terms`."""
        return tuple(t.sum() for t in self.loss_terms(batch))

    def _share_gradients(self) -> None:
        """Sum the gradients of a network shared by all patches over the ranks."""
        if not self.nets.needs_coefficient or self.comm.size == 1:
            return
        for q in self.nets.parameters():
            grad = torch.zeros_like(q) if q.grad is None else q.grad
            total = self.comm.allreduce(grad.detach().cpu().numpy(), op=MPI.SUM)
            q.grad = torch.as_tensor(total, device=q.device)

    def supervised_loss(self) -> torch.Tensor:
        """Warm start: sum_T mean_k |alpha - C|^2 / mean |C|^2, C the classical correctors."""
        C = self.batch.C
        scale = (C**2).mean(dim=(1, 2, 3), keepdim=True) + 1e-30
        return (((self.outputs() - C) ** 2) / scale).mean(dim=(1, 2, 3)).sum()

    def _global(self, *values: float) -> list[float]:
        return [
            float(v) for v in self.comm.allreduce(np.array(values, dtype=np.float64), op=MPI.SUM)
        ]

    def train(
        self,
        checkpoint: Path | None = None,
        progress: bool = False,
        monitor: Callable[[DeepRitzTrainer], None] | None = None,
    ) -> History:
        """Run the warm start (if any, and not done yet) and then the min-max Deep Ritz training
        up to ``settings.epochs`` epochs, or until the loss stagnates. Collective.

        Args:
            checkpoint: Folder of the per-rank checkpoints (none if None).
            progress: Show a progress bar (rank 0).
            monitor: Called (collectively) after every validation with the trainer, e.g. to
                measure the errors of :meth:`selected_networks` during training; its time is
                not counted in ``train_seconds``.

        Raises:
            TrainingDiverged: NaN/infinite or exploding loss (on every rank); the last good
                checkpoint (if one was written) stays on disk.
        """
        s = self.settings
        show = progress and self.comm.rank == 0
        t0 = time.perf_counter()
        warm = max(s.warm_start - self.epoch, 0)
        if warm:
            opt = torch.optim.Adam(self.nets.parameters(), lr=s.lr)
            for _ in tqdm(range(warm), desc="warm start", disable=not show, unit="epoch"):
                opt.zero_grad()
                loss = self.supervised_loss()
                loss.backward()
                self._share_gradients()
                opt.step()
                self.epoch += 1
                (value,) = self._global(loss.item())
                self._record(value, 0.0, "warm")
        stop = self.stopping
        end = s.warm_start + s.epochs
        bar = tqdm(total=end, initial=self.epoch, desc="deep ritz", disable=not show, unit="epoch")
        while self.epoch < end:
            e = p = node_e = node_p = 0.0
            for chunk, share in self.chunks:  # one optimizer step per chunk of samples
                self.opt_theta.zero_grad()
                self.opt_mu.zero_grad()
                energy_terms_, penalty_terms_ = self.loss_terms(chunk)
                energy, penalty = energy_terms_.sum(), penalty_terms_.sum()
                (energy + penalty).backward()
                self._share_gradients()
                node = [0.0, 0.0]
                if self.node:
                    node = [
                        float(t.detach()[self.node].sum()) for t in (energy_terms_, penalty_terms_)
                    ]
                ce, cp, ne, npen = self._global(energy.item(), penalty.item(), *node)
                stop["first"] = ce + cp if stop["first"] is None else stop["first"]
                if not math.isfinite(ce + cp) or abs(ce + cp) > 1e6 * (1.0 + abs(stop["first"])):
                    bar.close()
                    kept = (
                        f"the last good checkpoint (epoch {self.checkpoint_epoch}) is kept in "
                        f"{checkpoint}"
                        if checkpoint is not None and self.checkpoint_epoch is not None
                        else "no checkpoint was written"
                    )
                    raise TrainingDiverged(
                        f"training diverged at epoch {self.epoch} (loss {ce + cp:g}); {kept}; "
                        "try a smaller --lr"
                    )
                self.opt_theta.step()
                self.opt_mu.step()
                e, p = e + share * ce, p + share * cp
                node_e, node_p = node_e + share * ne, node_p + share * npen
            total = e + p
            for scheduler in self.schedulers:
                scheduler.step()
            self.epoch += 1
            self._record(e, p, "ritz")
            if self.monitors_node:
                self.history.node_energy.append(node_e)
                self.history.node_penalty.append(node_p)
            bar.update()
            bar.set_postfix(energy=f"{e:.4e}", penalty=f"{p:.2e}", refresh=False)
            best = stop["best"]
            improved = not math.isfinite(best) or total < best - s.min_delta * abs(best)
            stop["best"], stop["since_best"] = (
                (total, 0) if improved else (best, stop["since_best"] + 1)
            )
            if self.validation is not None and self.epoch % s.validate_every == 0:
                self._validate()
                if monitor is not None:  # train_seconds is up to date while it runs
                    self.train_seconds += time.perf_counter() - t0
                    monitor(self)
                    t0 = time.perf_counter()
            if checkpoint is not None and self.epoch % s.checkpoint_every == 0:
                self.train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save_checkpoint(checkpoint)  # after the validation of this epoch
            if stop["since_best"] >= s.patience:
                break
        bar.close()
        self.train_seconds += time.perf_counter() - t0
        if checkpoint is not None:  # the final state, to resume with more epochs
            self.save_checkpoint(checkpoint)
        if self.best_state is not None:  # the networks of the best validation energy
            self.nets.load_state_dict(self.best_state[1])
        return self.history

    def selected_networks(self) -> torch.nn.Module:
        """A copy of the networks training would return if it stopped now: those of the best
        validation energy so far (the current ones without validation)."""
        nets = copy.deepcopy(self.nets)
        if self.best_state is not None:
            nets.load_state_dict(self.best_state[1])
        return nets

    def validation_energy(self) -> float:
        """Deep Ritz energy on the validation parameters (global). For alpha in ker B,
        E(alpha) - E(C) = 1/2 ||alpha - C||_S^2: lower is closer to the classical correctors,
        measured without solving for them."""
        with torch.no_grad():
            if self.validation_system is not None:
                c = self.nets.coordinates(self.validation[1])
                energy = reduced_energy(*self.validation_system, c).sum()
            else:
                batch = self.validation[0]
                energy = deep_ritz_energy(batch, self.outputs(batch), energy_weights(batch))
        return self._global(energy.item())[0]

    def _validate(self) -> None:
        """Record the validation energy and keep the best networks (model selection)."""
        value = self.validation_energy()
        self.history.validation.append((self.epoch, value))
        if self.best_state is None or value < self.best_state[0]:
            state = {k: v.detach().clone() for k, v in self.nets.state_dict().items()}
            self.best_state = (value, state, self.epoch)

    def _record(self, energy: float, penalty: float, phase: str) -> None:
        h = self.history
        h.epoch.append(self.epoch)
        h.energy.append(energy)
        h.penalty.append(penalty)
        h.phase.append(phase)

    # -- checkpoints (one file per rank; resume with the same number of ranks) ----------------

    def _checkpoint_file(self, folder: Path) -> Path:
        return checkpoint_file(folder, self.comm.rank, self.comm.size)

    def save_checkpoint(self, folder: Path) -> None:
        """Write this rank's training state atomically: networks, multipliers, optimizers,
        learning-rate schedules, loss history, early-stopping state, the best validation state
        and its epoch, the settings, the problem and the rank count. Collective (all ranks
        write)."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "ranks": self.comm.size,
            "problem": self.problem,
            "epoch": self.epoch,
            "train_seconds": self.train_seconds,
            "cells": self.batch.cells.tolist(),
            "nets": self.nets.state_dict(),
            "mu": self.mu.detach().cpu(),
            "opt_theta": self.opt_theta.state_dict(),
            "opt_mu": self.opt_mu.state_dict(),
            "schedulers": [sch.state_dict() for sch in self.schedulers],
            "history": asdict(self.history),
            "stopping": dict(self.stopping),
            "best_state": self.best_state,
            "settings": asdict(self.settings),
        }
        with collective(self.comm, OutputError):  # a rank that cannot write stops them all
            write_atomic(self._checkpoint_file(folder), lambda f: torch.save(state, f))
        self.checkpoint_epoch = self.epoch

    def load_checkpoint(self, folder: Path) -> bool:
        """Resume from this rank's checkpoint in ``folder`` if there is one. Returns whether a
        checkpoint was loaded. Collective.

        Raises:
            InputError: On every rank, if the checkpoints were written by another number of
                ranks, are not this package's, or were made for other settings (all but
                :data:`RESUMABLE_SETTINGS`), another problem or other patches.
        """
        state = read_checkpoint(self.comm, folder, asdict(self.settings), self.problem)
        if state is None:
            return False

        def check() -> None:
            if state["cells"] != self.batch.cells.tolist():
                raise InputError(
                    f"checkpoint {self._checkpoint_file(folder)} belongs to other patches "
                    "(another problem or another number of ranks)"
                )

        validate(self.comm, check)
        self.nets.load_state_dict(state["nets"])
        with torch.no_grad():
            self.mu.copy_(state["mu"])
        self.opt_theta.load_state_dict(state["opt_theta"])
        self.opt_mu.load_state_dict(state["opt_mu"])
        for sch, sd in zip(self.schedulers, state["schedulers"], strict=True):
            sch.load_state_dict(sd)
        history = state["history"]
        history["validation"] = [tuple(v) for v in history["validation"]]
        self.history = History(**history)
        self.epoch, self.train_seconds = state["epoch"], state["train_seconds"]
        self.stopping = dict(state["stopping"])
        best = state["best_state"]
        self.best_state = None if best is None else (best[0], best[1], best[2])
        self.checkpoint_epoch = self.epoch
        return True


def checkpoint_file(folder: Path, rank: int, size: int) -> Path:
    """The checkpoint of ``rank`` of a run on ``size`` ranks in ``folder``."""
    return Path(folder) / f"checkpoint-rank{rank}-of{size}.pt"


def _differences(found: dict, expected: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """'key = found (here expected)' for every key whose values differ."""
    keys = [k for k in {**found, **expected} if k not in skip]
    return [
        f"{k} = {found.get(k)!r} (here {expected.get(k)!r})"
        for k in keys
        if found.get(k) != expected.get(k)
    ]


def read_checkpoint(
    comm: MPI.Comm, folder: Path, settings: dict, problem: dict | None = None
) -> dict | None:
    """This rank's checkpoint in ``folder``, checked against the run that wants to resume it
    (``settings`` as a dict, ``problem`` metadata); None if no rank has one. Collective.

    Raises:
        InputError: On every rank, naming what differs: checkpoints of another rank count,
            files that are not dolfinx_lod checkpoints, other settings (but
            :data:`RESUMABLE_SETTINGS`) or another problem.
    """
    folder = Path(folder)
    path = checkpoint_file(folder, comm.rank, comm.size)
    found = comm.allgather(path.exists())
    if not any(found):
        others = sorted(p.name for p in folder.glob("checkpoint-rank0-of*.pt"))
        if others:
            counts = [n.removeprefix("checkpoint-rank0-of").removesuffix(".pt") for n in others]
            raise InputError(
                f"the checkpoints in {folder} were written by {' or '.join(counts)} rank(s), "
                f"not {comm.size}: resume with the same number of ranks (mpirun -n "
                f"{counts[0]})"
            )
        return None
    if not all(found):
        raise InputError(
            f"checkpoints in {folder} are incomplete for {comm.size} ranks (ranks "
            f"{[r for r, f in enumerate(found) if not f]} have none)"
        )
    loaded: list[dict] = []

    def check() -> None:  # on every rank, raising together (validate)
        try:
            state = torch.load(path, weights_only=True)
        except Exception as e:
            raise InputError(f"not a dolfinx_lod checkpoint: {path} ({brief(e)})") from e
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise InputError(
                f"not a dolfinx_lod checkpoint: {path} (format {CHECKPOINT_FORMAT} expected)"
            )
        differ = _differences(state["settings"], settings, RESUMABLE_SETTINGS)
        differ += _differences(state["problem"], problem or {})
        if differ:
            raise InputError(
                f"cannot resume from {path}: it was written for {', '.join(differ)}; resume "
                f"with the same settings (only {', '.join(RESUMABLE_SETTINGS)} may change) or "
                "train without --resume"
            )
        loaded.append(state)

    validate(comm, check)
    return loaded[0]


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
