"""Trained corrector models: persistence, the learned corrector provider, baselines, errors.

:class:`TrainedModel` holds the networks of all patches (gathered from the ranks) with the
metadata of the problem they were trained for; :class:`LearnedCorrectors` is a
:class:`~dolfinx_lod.correctors.CorrectorProvider`, so ``MultiscaleBasis(grids, l,
provider=LearnedCorrectors(model))`` gives B(p) by batched forward passes and the parabolic loop
runs LOD-ANN unchanged. Baseline providers (no corrector, mean training corrector, nearest
training parameter, nearest training coefficient on the patch) use the same interface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from mpi4py import MPI

import dolfinx_lod
from dolfinx_lod.basis import MultiscaleBasis, basis_errors
from dolfinx_lod.coefficients import Family
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.io import write_atomic
from dolfinx_lod.neural.cnn import CoefficientNetworks
from dolfinx_lod.neural.export import PatchBatch, patch_coordinates
from dolfinx_lod.neural.networks import NETWORKS, PatchNetworks, ReducedPatchNetworks
from dolfinx_lod.parallel import InputError, brief
from dolfinx_lod.patches import Configuration, Patch

FORMAT = "dolfinx_lod.neural/2"


def scale_parameters(family: Family, params: npt.ArrayLike) -> torch.Tensor:
    """Parameters mapped from the family's box to [-1, 1], shape (K, N_p), float32."""
    p = np.atleast_2d(np.asarray(params, dtype=np.float64))
    low, high = np.asarray(family.low), np.asarray(family.high)
    return torch.tensor(2 * (p - low) / (high - low) - 1, dtype=torch.float32)


#: Values of problem keys that models written before the key existed were made for.
LEGACY_PROBLEM = {"neumann": []}


def counts_key(counts: Sequence[int]) -> int | list[int]:
    """Cell counts as recorded: one number when equal in every direction, else the list."""
    return int(counts[0]) if len(set(counts)) == 1 else [int(c) for c in counts]


def problem_metadata(
    grids: NestedGrids, layers: int, family: Family | None = None
) -> dict[str, Any]:
    """What a model must match to be used for a problem: the grids (cell counts: one number
    when equal in every direction), the Neumann sides and l, and for networks conditioned on p
    (``family`` given) the family and its parameter box."""
    grid = {
        "domain": [list(map(float, c)) for c in grids.domain],
        "n": counts_key(grids.fine_cells),
        "NH": counts_key(grids.coarse_cells),
        "neumann": sorted(grids.neumann),
        "l": layers,
    }
    if family is None:
        return grid
    return {
        **grid,
        "family": family.name,
        "param_low": list(family.low),
        "param_high": list(family.high),
    }


class TrainedModel:
    """The networks of every patch (stacked, sorted by coarse cell T) with the configuration of
    each patch and the metadata of the problem. Identical on every rank."""

    def __init__(
        self,
        metadata: dict[str, Any],
        cells: Sequence[int],
        configs: Sequence[Sequence[int]],
        state: dict[str, torch.Tensor],
    ):
        self.metadata = metadata
        self.cells = np.asarray(cells, dtype=np.int64)
        self.configs = [_config_from_list(c) for c in configs]
        self.nets = NETWORKS[metadata["architecture"]].rebuild(metadata, state, len(self.cells))
        self.nets.load_state_dict(state)
        self.nets.eval()

    @classmethod
    def gather(
        cls,
        comm: MPI.Comm,
        batch: PatchBatch,
        nets: PatchNetworks | ReducedPatchNetworks | CoefficientNetworks,
        metadata: dict[str, Any],
    ) -> TrainedModel:
        """Collect the networks trained on all ranks (a network shared by all patches is the
        same on every rank). Collective."""
        state = {k: v.detach().cpu() for k, v in nets.state_dict().items()}
        shared = nets.needs_coefficient
        mine = {} if shared else state
        parts = comm.allgather((batch.cells, [_config_to_list(c) for c in batch.configs], mine))
        cells = np.concatenate([c for c, _, _ in parts])
        configs = [c for _, cs, _ in parts for c in cs]
        order = torch.as_tensor(np.argsort(cells))
        merged = dict(state) if shared else {}
        for k in mine:
            tensors = [st[k] for _, _, st in parts]
            if k == "basis":  # patch bases: pad the vertex dimension to the largest patch
                N = max(t.shape[1] for t in tensors)
                tensors = [torch.nn.functional.pad(t, (0, 0, 0, N - t.shape[1])) for t in tensors]
            merged[k] = torch.cat(tensors)[order]
        return cls(metadata, cells[order], [configs[i] for i in order], merged)

    def save(self, path: str | Path) -> Path:
        """Write the model (state dict + metadata) atomically. Call on one rank."""
        data = {
            "format": FORMAT,
            "metadata": self.metadata,
            "cells": self.cells.tolist(),
            "configs": [_config_to_list(c) for c in self.configs],
            "state": self.nets.state_dict(),
        }
        return write_atomic(path, lambda f: torch.save(data, f))

    @property
    def needs_coefficient(self) -> bool:
        """Whether the networks read the coefficient (else the parameter p)."""
        return self.nets.needs_coefficient

    @classmethod
    def load(
        cls,
        path: str | Path,
        grids: NestedGrids | None = None,
        layers: int | None = None,
        family: Family | None = None,
    ) -> TrainedModel:
        """Load a model (``weights_only=True``); with a problem given (grids and layers, and
        the family for a p-conditioned model), check that the model was trained for it and
        raise ``ValueError`` naming the first mismatch. Rank-local.

        Raises:
            InputError: ``path`` is not a dolfinx_lod model (damaged, empty, another format).
        """
        try:
            data = torch.load(path, weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as e:  # truncated, empty, not a torch file, unsafe pickle
            raise InputError(f"not a dolfinx_lod model: {path} ({brief(e)})") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"not a dolfinx_lod model: {path} (format {FORMAT} expected)")
        try:
            model = cls(data["metadata"], data["cells"], data["configs"], data["state"])
        except (KeyError, TypeError, RuntimeError) as e:  # damaged contents
            raise InputError(f"not a dolfinx_lod model: {path} ({brief(e)})") from e
        if grids is not None and layers is not None:
            model.check(grids, layers, family)
        return model

    def check(self, grids: NestedGrids, layers: int, family: Family | None = None) -> None:
        """Raise ``ValueError`` if the model was trained for another problem (grids, l; the
        family too for a p-conditioned model when ``family`` is given)."""
        family = None if self.needs_coefficient else family
        for key, value in problem_metadata(grids, layers, family).items():
            mine = self.metadata.get(key, LEGACY_PROBLEM.get(key))
            if mine != value:
                raise ValueError(
                    f"model does not match the problem: {key} is {mine!r} in the model but "
                    f"{value!r} here"
                )


class LearnedCorrectors:
    """Corrector provider that evaluates the trained networks (batched per configuration; a
    coefficient-aware model reads the coefficient on the patches and needs no ``family``)."""

    def __init__(self, model: TrainedModel, family: Family | None, r: int):
        self.model, self.family, self.r = model, family, r
        self.needs_coefficient = model.needs_coefficient
        self._subsets: dict[bytes, ReducedPatchNetworks] = {}

    def correctors(self, patches, a_patches, p=None, progress=False):
        if self.needs_coefficient:
            return self._from_coefficient(patches, a_patches)
        if p is None:
            raise ValueError(
                "this learned model is conditioned on the family parameter p: give `p`"
            )
        pt = scale_parameters(self.family, self.family.check(p))
        if not patches:
            return []
        which = torch.as_tensor(
            np.searchsorted(self.model.cells, [patch.cell for patch in patches])
        )
        if isinstance(self.model.nets, ReducedPatchNetworks):  # one forward pass for all
            key = which.numpy().tobytes()
            if key not in self._subsets:  # the patches of a rank: the same at every update
                self._subsets = {key: self.model.nets.subset(which)}
            nets = self._subsets[key]
            rows = torch.zeros(nets.basis.shape[1], 1)  # V_T carries the vertices
            with torch.no_grad():
                alpha = nets(rows, pt)[:, 0].double().numpy()
            return self._trim(patches, alpha)
        out: list[npt.NDArray[np.float64] | None] = [None] * len(patches)
        by_config: dict[Configuration, list[int]] = {}
        for i, patch in enumerate(patches):
            by_config.setdefault(patch.configuration, []).append(i)
        with torch.no_grad():
            for config, index in by_config.items():
                coords = patch_coordinates(config, self.r).to(torch.float32)
                alpha = self.model.nets(coords, pt, which[index])[:, 0].double().numpy()
                for g, i in enumerate(index):
                    out[i] = alpha[g]
        return out

    def _from_coefficient(self, patches, a_patches) -> list[npt.NDArray[np.float64]]:
        """One batched pass of the shared network over all patches."""
        if not patches:
            return []
        M = max(a.size for a in a_patches)
        a = torch.ones(len(patches), 1, M, dtype=torch.float32)
        for g, values in enumerate(a_patches):
            a[g, 0, : values.size] = torch.as_tensor(values)
        project = self.model.metadata.get("constraint") == "projection"
        with torch.no_grad():
            alpha = self.model.nets([q.configuration for q in patches], a, project)
        return self._trim(patches, alpha[:, 0].double().numpy())

    def _trim(self, patches, alpha: npt.NDArray) -> list[npt.NDArray[np.float64]]:
        """The rows of the padded alpha (G, N, 2^d) that are each patch's vertices."""
        sizes = [int(np.prod(np.asarray(q.configuration.shape) * self.r + 1)) for q in patches]
        return [alpha[g, :size] for g, size in enumerate(sizes)]


class FixedCorrectors:
    """Baseline provider: fixed correctors per coarse cell, whatever the coefficient (the mean
    training corrector, or zeros for no correction)."""

    needs_coefficient = False

    def __init__(self, correctors: dict[int, npt.NDArray[np.float64]]):
        self.fixed = correctors

    def correctors(self, patches: Sequence[Patch], a_patches, p=None, progress=False):
        return [self.fixed[patch.cell] for patch in patches]


class NearestCorrectors:
    """Baseline provider: the classical correctors of the nearest training parameter."""

    needs_coefficient = False

    def __init__(self, family: Family, params: npt.NDArray, correctors: dict[int, npt.NDArray]):
        self.family, self.params, self.table = family, scale_parameters(family, params), correctors

    def correctors(self, patches: Sequence[Patch], a_patches, p=None, progress=False):
        k = int(torch.argmin(((self.params - scale_parameters(self.family, p)) ** 2).sum(1)))
        return [self.table[patch.cell][k] for patch in patches]


class NearestCoefficientCorrectors:
    """Baseline provider for any coefficient: per patch, the classical correctors of the
    training sample whose coefficient on that patch is nearest, in the Euclidean distance of
    log a - m_T over the patch's fine cells (m_T the patch mean of log a: the correctors do not
    change when a is scaled)."""

    needs_coefficient = True

    def __init__(self, batch: PatchBatch):
        C = batch.C.double().numpy()
        r = math.isqrt(batch.Pi.shape[1]) - 1
        self.logs, self.table = {}, {}
        for g, (cell, config) in enumerate(zip(batch.cells, batch.configs, strict=True)):
            cells = int(np.prod(config.shape)) * r ** len(config.shape)
            self.logs[int(cell)] = _centred_log(batch.a[g, :, :cells].double().numpy())
            self.table[int(cell)] = C[g, :, : batch.num_vertices[g]]

    def correctors(self, patches: Sequence[Patch], a_patches, p=None, progress=False):
        out = []
        for patch, a in zip(patches, a_patches, strict=True):
            distance = ((self.logs[patch.cell] - _centred_log(a)) ** 2).sum(1)
            out.append(self.table[patch.cell][int(np.argmin(distance))])
        return out


def _centred_log(a: npt.NDArray) -> npt.NDArray[np.float64]:
    """log a - its mean over the last axis."""
    loga = np.log(np.asarray(a, dtype=np.float64))
    return loga - loga.mean(-1, keepdims=True)


def _config_to_list(config: Configuration) -> list[int]:
    return [*config.shape, *config.element, *map(int, config.on_boundary)]


def _config_from_list(values: Sequence[int]) -> Configuration:
    v = [int(x) for x in values]
    d = len(v) // 4  # shape, element: d entries each; on_boundary: 2 d
    return Configuration(tuple(v[:d]), tuple(v[d : 2 * d]), tuple(bool(x) for x in v[2 * d :]))


def compare_providers(
    grids: NestedGrids,
    layers: int,
    family: Family,
    params: npt.NDArray[np.float64],
    providers: dict[str, Any],
) -> dict[str, dict[str, float]]:
    """Mean relative basis errors of each provider's basis against the classical one over the
    parameters ``params``: ``energy`` (||Lambda^_j - Lambda~_j||_a / ||Lambda~_j||_a) and
    ``nodal`` (Euclidean, as the paper's code), averaged over interior coarse vertices j and
    parameters. Collective."""
    reference = MultiscaleBasis(grids, layers)
    bases = {name: MultiscaleBasis(grids, layers, provider=pr) for name, pr in providers.items()}
    sums = {name: np.zeros(2) for name in providers}
    for p in params:
        B_ref = reference.update(family.a, p)
        fine = dolfinx_lod.FineSystem(grids, dolfinx_lod.coefficient_function(grids, family.a, p))
        for name, basis in bases.items():
            sums[name] += basis_errors(grids, basis.update(family.a, p), B_ref, fine.S)
        fine.destroy()
    for basis in (reference, *bases.values()):
        basis.destroy()
    return {
        name: {"energy": v[0] / len(params), "nodal": v[1] / len(params)}
        for name, v in sums.items()
    }
