"""The min-max Deep Ritz training of the corrector networks (paper (18)): Adam descent in the
network weights theta, Adam ascent in the multipliers mu of the penalty (16) (initialised
U(0, 1)), both with the learning rate decaying by ``lr_decay`` every ``lr_step`` epochs; early
stopping on the training loss, model selection on validation energies, checkpoints.

Networks per patch are independent (the loss is a sum, :mod:`dolfinx_lod.neural.losses`), so
they are trained batched per configuration and split over MPI ranks with no communication but
the loss history (one allreduce per epoch); the shared coefficient-aware network sums its
gradients over the ranks. Every network is initialised from a generator seeded with (seed, T):
results do not depend on the number of ranks.
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

from dolfinx_lod.neural.augment import augment_symmetries
from dolfinx_lod.neural.checkpoints import checkpoint_file, read_checkpoint, write_checkpoint
from dolfinx_lod.neural.export import PatchBatch
from dolfinx_lod.neural.losses import (
    constraint_weights,
    deep_ritz_energy,
    energy_terms,
    energy_weights,
    field_energy_weights,
    network_outputs,
    penalty_terms,
)
from dolfinx_lod.neural.networks import NETWORKS, build_networks, network_generator
from dolfinx_lod.neural.presets import TrainingSettings
from dolfinx_lod.neural.reduced import reduced_energy, reduced_system
from dolfinx_lod.parallel import InputError, NumericalError, check_interrupt, validate


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
        index = {int(c): g for g, c in enumerate(batch.cells)}  # before the copies
        if settings.augment:
            batch = augment_symmetries(batch)
        self.batch = batch.to(device)
        self.params = params.to(device)
        nets, system = build_networks(batch, params.shape[1], settings, comm)
        self.nets = nets.to(device)
        #: The training forward pass: compiled for the mlp networks if asked (same weights).
        self.forward = self.nets
        arch = NETWORKS[settings.architecture]
        if settings.compile and arch.compiles:
            self.forward = torch.compile(self.nets, dynamic=False)
        G, K, _ = batch.shape
        corners = batch.F.shape[-1]
        # mu in the layout of B alpha: (G m, K 2^d), U(0, 1) seeded per patch.
        m = batch.B.shape[0] // max(G, 1)
        mu = torch.empty(G, m, K * corners)
        for g, cell in enumerate(batch.cells):
            mu[g] = torch.rand(mu.shape[1:], generator=network_generator(settings.seed + 1, cell))
        self.mu = torch.nn.Parameter(mu.reshape(G * m, K * corners).to(device))
        self.opt_theta = torch.optim.Adam(self.nets.parameters(), lr=settings.lr)
        self.opt_mu = torch.optim.Adam([self.mu], lr=settings.lr, maximize=True)
        self.schedulers = [
            torch.optim.lr_scheduler.StepLR(opt, settings.lr_step, settings.lr_decay)
            for opt in (self.opt_theta, self.opt_mu)
        ]
        self.history = History()
        #: This rank's networks of ``node``: indices into (G, 2^d) of the loss terms.
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
        if validation is not None and (arch.in_kernel or self.projected):
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

        #: Energy weights w (G, K) of the training samples (coefficient-aware networks).
        self.weights = self.energy_weights(self.batch)
        #: Sample chunks of the optimizer steps of an epoch, with their share of the samples
        #: and their energy weights.
        self.chunks = self._chunks(K)
        #: Row weights 1 / (N_s^2 N_H^l) of the penalty (16) per chunk size.
        self.penalty_weights = {
            k: constraint_weights(self.batch, k) for k in {c.shape[1] for c, _, _ in self.chunks}
        }

    def _chunks(self, K: int) -> list[tuple[PatchBatch, float, torch.Tensor | None]]:
        """The training samples split into chunks of ``batch_size`` (all in one without)."""
        size = self.settings.batch_size
        if not size or size >= K:
            return [(self.batch, 1.0, self.weights)]
        parts = torch.arange(K).split(size)
        return [(self.batch.select(i), len(i) / K, _columns(self.weights, i)) for i in parts]

    def energy_weights(self, batch: PatchBatch) -> torch.Tensor | None:
        """The energy weights of ``batch`` for a coefficient-aware network (else None):
        :func:`~dolfinx_lod.neural.losses.energy_weights` per patch, or with ``energy_scale``
        "field" :func:`~dolfinx_lod.neural.losses.field_energy_weights`. Collective."""
        if not self.nets.needs_coefficient:
            return None
        if self.settings.energy_scale == "field":
            return field_energy_weights(batch, self.comm)
        return energy_weights(batch)

    def outputs(self, batch: PatchBatch | None = None) -> torch.Tensor:
        """Network outputs alpha (G, K, N, 4) for the training samples (or ``batch``)."""
        batch = self.batch if batch is None else batch
        return network_outputs(self.forward, batch, self.params, self.projected)

    def loss_terms(
        self, batch: PatchBatch | None = None, weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Local (this rank's) energy (14) and self-adaptive penalty (16) (zero with the
        projection) of every network (T, j), shape (G, 2^d) each, on the training samples or
        the chunk ``batch`` of them (with its energy ``weights``)."""
        if self.reduced is not None:
            A, b, BV = self.reduced
            c = self.nets.coordinates(self.params)  # (G, K, q, 2^d)
            Bc = torch.einsum("gmq,gkqj->gmkj", BV, c)
            w = self.penalty_weights[c.shape[1]].reshape(Bc.shape[0], -1, 1, 1)
            mu = self.mu.reshape(Bc.shape)
            return reduced_energy(A, b, c), (w * (mu * Bc) ** 2).sum(dim=(1, 2))
        if batch is None:
            batch, weights = self.batch, self.weights
        alpha = self.outputs(batch)
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
        show = progress and self.comm.rank == 0
        t0 = time.perf_counter()
        self._warm_start(show)
        end = self.settings.warm_start + self.settings.epochs
        bar = tqdm(total=end, initial=self.epoch, desc="deep ritz", disable=not show, unit="epoch")
        while self.epoch < end:
            try:
                e, p = self._ritz_epoch(checkpoint)
            except TrainingDiverged:
                bar.close()
                raise
            bar.update()
            bar.set_postfix(energy=f"{e:.4e}", penalty=f"{p:.2e}", refresh=False)
            t0 = self._after_epoch(t0, checkpoint, monitor)
            check_interrupt(self.comm)  # a signal on any rank: every rank stops here
            if self.stopping["since_best"] >= self.settings.patience:
                break
        bar.close()
        self.train_seconds += time.perf_counter() - t0
        if checkpoint is not None:  # the final state, to resume with more epochs
            self.save_checkpoint(checkpoint)
        if self.best_state is not None:  # the networks of the best validation energy
            self.nets.load_state_dict(self.best_state[1])
        return self.history

    def _warm_start(self, show: bool) -> None:
        """The supervised warm start epochs not done yet (:meth:`supervised_loss`)."""
        warm = max(self.settings.warm_start - self.epoch, 0)
        if not warm:
            return
        opt = torch.optim.Adam(self.nets.parameters(), lr=self.settings.lr)
        for _ in tqdm(range(warm), desc="warm start", disable=not show, unit="epoch"):
            opt.zero_grad()
            loss = self.supervised_loss()
            loss.backward()
            self._share_gradients()
            opt.step()
            self.epoch += 1
            (value,) = self._global(loss.item())
            self._record(value, 0.0, "warm")

    def _ritz_epoch(self, checkpoint: Path | None) -> tuple[float, float]:
        """One min-max epoch (one optimizer step per chunk of samples): record the loss parts
        and update the early-stopping state. Returns the global (energy, penalty)."""
        stop = self.stopping
        e = p = node_e = node_p = 0.0
        for chunk, share, weights in self.chunks:
            self.opt_theta.zero_grad()
            self.opt_mu.zero_grad()
            terms = self.loss_terms(chunk, weights)
            energy, penalty = (t.sum() for t in terms)
            (energy + penalty).backward()
            self._share_gradients()
            node = [float(t.detach()[self.node].sum()) for t in terms] if self.node else [0, 0]
            ce, cp, ne, npen = self._global(energy.item(), penalty.item(), *node)
            stop["first"] = ce + cp if stop["first"] is None else stop["first"]
            self._check_divergence(ce + cp, checkpoint)
            self.opt_theta.step()
            self.opt_mu.step()
            e, p = e + share * ce, p + share * cp
            node_e, node_p = node_e + share * ne, node_p + share * npen
        for scheduler in self.schedulers:
            scheduler.step()
        self.epoch += 1
        self._record(e, p, "ritz")
        if self.monitors_node:
            self.history.node_energy.append(node_e)
            self.history.node_penalty.append(node_p)
        best, total = stop["best"], e + p
        improved = not math.isfinite(best) or total < best - self.settings.min_delta * abs(best)
        stop["best"], stop["since_best"] = (
            (total, 0) if improved else (best, stop["since_best"] + 1)
        )
        return e, p

    def _check_divergence(self, loss: float, checkpoint: Path | None) -> None:
        """Raise :class:`TrainingDiverged` if the global ``loss`` is NaN/infinite or exceeds
        1e6 (1 + |first loss|)."""
        if math.isfinite(loss) and abs(loss) <= 1e6 * (1.0 + abs(self.stopping["first"])):
            return
        kept = (
            f"the last good checkpoint (epoch {self.checkpoint_epoch}) is kept in {checkpoint}"
            if checkpoint is not None and self.checkpoint_epoch is not None
            else "no checkpoint was written"
        )
        raise TrainingDiverged(
            f"training diverged at epoch {self.epoch} (loss {loss:g}); {kept}; try a smaller `lr`"
        )

    def _after_epoch(
        self,
        t0: float,
        checkpoint: Path | None,
        monitor: Callable[[DeepRitzTrainer], None] | None,
    ) -> float:
        """Validation (and ``monitor``) and checkpoint of this epoch if due; their time is not
        counted in ``train_seconds``. Returns the new start of the training clock."""
        s = self.settings
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
        return t0

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
                energy = deep_ritz_energy(batch, self.outputs(batch), self.energy_weights(batch))
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

    def save_checkpoint(self, folder: Path) -> None:
        """Write this rank's training state atomically: networks, multipliers, optimizers,
        learning-rate schedules, loss history, early-stopping state, the best validation state
        and its epoch, the settings, the problem and the rank count. Collective (all ranks
        write)."""
        state = {
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
        write_checkpoint(self.comm, folder, state)
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
                path = checkpoint_file(folder, self.comm.rank, self.comm.size)
                raise InputError(
                    f"checkpoint {path} belongs to other patches "
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


def _columns(weights: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    """The sample columns ``index`` of the weights (G, K), or None."""
    return None if weights is None else weights[:, index]
