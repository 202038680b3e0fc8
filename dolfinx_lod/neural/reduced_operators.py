"""Learned local operators from the exact element part and a reduced least-squares fit in p.

The Petrov–Galerkin local operators of a patch (:meth:`dolfinx_lod.patch_problem.PatchProblem.
local_operators`) split into

    K_T[i, j] = int_T a grad Lambda_j . grad Lambda_i  -  int_w a grad C_j . grad Lambda_i,

an element part P_T(a) that is a cheap product of the coefficient on T's fine cells (a DG0
field) with fixed weights (:class:`ElementPart`, no patch solve), and the corrector part.
:class:`ReducedOperators` computes P_T(a(p)) from the coefficient (online from a at a few
interpolation points per T, exact where the family's fields on T lie in the span of the training
fields, checked every step: :mod:`~dolfinx_lod.neural.element_part`) and fits only the rest
R_T(p) = P_T - K_T
(and all of M_T), scaled by the mean of a on T: per patch the POD of the training samples
(modes above a relative singular value, at most ``modes``) and a least-squares polynomial
(Legendre, total degree chosen by leave-one-out error) of the POD coordinates in p. The fit is
linear in the training samples, so every linear identity they share holds exactly for the
fitted operators too: the row sums K_T 1 = 0 (constants have no energy), and the zero rows of
the Dirichlet boundary. The same interface as :class:`~dolfinx_lod.neural.operators.
LearnedOperators` (``evaluate``, ``save``, ``load``), used through
:class:`~dolfinx_lod.neural.operator_provider.OperatorProvider`. Rank-local.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from mpi4py import MPI

from dolfinx_lod.coefficients import Family
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.io import write_atomic
from dolfinx_lod.neural.element_part import CHECKS, ElementPart
from dolfinx_lod.neural.presets import OPERATOR_INTERPOLATION

FORMAT = "dolfinx_lod.operators.reduced/1"


def legendre_terms(num_params: int, degree: int) -> npt.NDArray[np.int64]:
    """Multi-indices of the Legendre polynomials of total degree <= ``degree`` in
    ``num_params`` variables, shape (terms, N_p)."""
    ranges = [range(degree + 1)] * num_params
    return np.array([t for t in itertools.product(*ranges) if sum(t) <= degree], dtype=np.int64)


def legendre_features(t: npt.NDArray[np.float64], terms: npt.NDArray[np.int64]) -> npt.NDArray:
    """phi(t) for scaled parameters t in [-1, 1]^N_p (K, N_p): prod_k L_{n_k}(t_k), shape
    (K, terms)."""
    out = np.ones((len(t), len(terms)))
    for k in range(t.shape[1]):
        values = np.polynomial.legendre.legvander(t[:, k], int(terms[:, k].max()))
        out *= values[:, terms[:, k]]
    return out


def choose_degree(t: npt.NDArray, Y: npt.NDArray, max_degree: int) -> tuple[int, list[float]]:
    """The total degree (0..``max_degree``, fewer terms than samples) of the least-squares fit
    Y ~ phi(t) C with the least leave-one-out error sum_k ||r_k / (1 - h_kk)||^2 (closed form,
    h the hat matrix); also the relative LOO error of each degree tried."""
    K = len(t)
    norm = float((Y**2).sum()) or 1.0
    errors = []
    for degree in range(max_degree + 1):
        Phi = legendre_features(t, legendre_terms(t.shape[1], degree))
        if Phi.shape[1] >= K:
            break
        Q, _ = np.linalg.qr(Phi)
        h = (Q**2).sum(axis=1)
        residual = Y - Q @ (Q.T @ Y)
        errors.append(float(np.sqrt((((residual / (1 - h)[:, None]) ** 2).sum()) / norm)))
    return int(np.argmin(errors)), errors


def scaled(family: Family, params: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Parameters mapped from the family's box to [-1, 1], shape (K, N_p)."""
    p = np.atleast_2d(np.asarray(params, dtype=np.float64))
    low, high = np.asarray(family.low), np.asarray(family.high)
    return 2 * (p - low) / (high - low) - 1


class ReducedOperators:
    """Local operators (K_T, M_T) = (P_T(a(p)) - s_T R_T(p), M_T(p)) of the owned patches:
    P_T exact (:class:`ElementPart`), s_T the mean of a(p) on T, and [R_T; M_T] per patch the
    POD mean plus at most ``modes`` POD modes per block (K, M) whose coordinates are Legendre
    polynomials of total degree ``degree`` in the scaled p, fitted by least squares (module
    docstring). Rank-local; the fit of a patch does not depend on the others.

    Args:
        cells: Coarse cell T of each patch.
        sizes: Coarse vertices of each patch N^l(T).
        family: The coefficient family a(x, p).
        size: Rows of the padded operators (:func:`~dolfinx_lod.neural.operators.
            max_patch_vertices`).
        element: The element parts of the same patches.
        modes: POD modes kept per block at most (those above 1e-10 of the largest).
        max_degree: Highest total degree tried by the leave-one-out choice.
        exact_element: Whether P_T is computed exactly and only the rest fitted (False: all
            of K_T fitted, as M_T).
        regressor: The POD coordinates as functions of p: "mlp" (one
            :class:`~dolfinx_lod.neural.operators.LearnedOperators` network per patch, outputs
            the coordinates) or "poly" (Legendre least squares, degree by leave-one-out).
        network: (width, depth, epochs) of the "mlp" regressor.
        seed: Seed of the "mlp" networks (per cell, as LearnedOperators).
        interpolation: The tolerance of the element part's interpolation of a
            (:meth:`ElementPart.interpolate`, built from the training fields by :meth:`fit`;
            online: a at a few points per T), or None: a on all of T's fine cells every step.
    """

    def __init__(
        self,
        cells: Sequence[int],
        sizes: Sequence[int],
        family: Family,
        size: int,
        element: ElementPart,
        modes: int = 24,
        max_degree: int = 6,
        exact_element: bool = True,
        regressor: str = "mlp",
        network: tuple[int, int, int] = (32, 3, 2000),
        seed: int = 0,
        interpolation: float | None = OPERATOR_INTERPOLATION["tol"],
    ):
        self.cells = np.asarray(cells, dtype=np.int64)
        self.sizes, self.family, self.size = list(sizes), family, size
        self.element, self.corners = element, element.corners
        self.modes, self.max_degree = modes, max_degree
        self.exact_element = exact_element
        if regressor not in ("mlp", "poly"):
            raise ValueError(f"regressor must be 'mlp' or 'poly', got {regressor!r}")
        self.regressor, self.network, self.seed = regressor, tuple(network), seed
        self.interpolation = interpolation if exact_element else None
        self.net: Any = None
        self.metadata: dict[str, Any] = {}
        n = 2 * size * self.corners
        self.mean = np.zeros((len(self.cells), n))
        self.V = np.zeros((len(self.cells), n, 0))
        self.terms = legendre_terms(family.num_params, 0)
        self.C = np.zeros((len(self.cells), 1, 0))
        self._blocks: tuple[npt.NDArray, npt.NDArray] | None = None  # of V, built when needed

    def targets(self, params: npt.NDArray, samples: npt.NDArray) -> npt.NDArray:
        """What is fitted of the samples (G, K, 2 N_max 2^d): [(P_T - K_T) / s_T; M_T] on the
        entries the coarse system uses (zero elsewhere)."""
        y = np.array(samples, dtype=np.float64) * self.element.kept[:, None]
        if not self.exact_element:
            return y
        half = self.size * self.corners
        for k, p in enumerate(params):
            P, s = self.element.parts(self.family, p)
            y[:, k, :half] = (P[:, :half] - y[:, k, :half]) / s[:, None]
        return y

    def drop_interpolation(self) -> None:
        """Compute the element part from a on all of T's fine cells from now on."""
        self.interpolation, self.element.points = None, None

    def operators(self, p: Any, y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The operators (G, 2 N_max 2^d) at p of fitted values y (:meth:`targets` layout);
        zero on the entries the coarse system does not use."""
        if self.exact_element:
            P, s = self.element.parts(self.family, p)
            half = self.size * self.corners
            y[:, :half] = P[:, :half] - s[:, None] * y[:, :half]
        return y * self.element.kept

    def fit(self, params: npt.NDArray[np.float64], samples: npt.NDArray[np.float64]) -> dict:
        """Fit to the classical operators ``samples`` (G, K, 2 N_max 2^d, as
        :func:`~dolfinx_lod.neural.operators.operator_samples`) at ``params`` (K, N_p).
        Returns {"degree", "loo_error" per degree tried, "modes" (mean kept per patch),
        "points": the most interpolation points of a per T (0: none)}."""
        points = 0
        if self.interpolation is not None:
            points = self.element.interpolate(self.family, params, self.interpolation)
        y = self.targets(params, samples)
        self.mean = y.mean(axis=1)
        Y = y - self.mean[:, None]
        half = self.size * self.corners
        q = min(self.modes, len(params), half)
        self.V, self._blocks = np.zeros((len(Y), 2 * half, 2 * q)), None
        kept = []
        for g in range(len(Y)):
            for b, cols in enumerate((slice(0, half), slice(half, None))):
                _, s, Vt = np.linalg.svd(Y[g][:, cols], full_matrices=False)
                keep = min(q, int((s > 1e-10 * max(s[0], 1e-300)).sum())) if s.size else 0
                self.V[g, cols, b * q : b * q + keep] = Vt[:keep].T
                kept.append(keep)
        Z = np.einsum("gkn,gnq->kgq", Y, self.V)  # POD coordinates
        info = {"modes": float(np.mean(kept)) if kept else 0.0, "points": points}
        if self.regressor == "mlp":
            self.net = self._network(Z.shape[2])
            if not len(Y):  # no patch on this rank
                return {**info, "loss": 0.0}
            loss = self.net.fit(params, Z.transpose(1, 0, 2), self.network[2], blocks=2)
            return {**info, "loss": float(loss.mean())}
        # Per patch its own degree (the fit of a patch does not depend on the others).
        t = scaled(self.family, params)
        self.terms = legendre_terms(self.family.num_params, self.max_degree)
        Phi = legendre_features(t, self.terms)
        self.C = np.zeros((len(Y), len(self.terms), Z.shape[2]))
        degrees, loo = [], []
        for g in range(len(Y)):
            degree, errors = choose_degree(t, Z[:, g], self.max_degree)
            use = self.terms.sum(axis=1) <= degree
            self.C[g, use] = np.linalg.lstsq(Phi[:, use], Z[:, g], rcond=None)[0]
            degrees.append(degree)
            loo.append(errors[degree])
        return {**info, "degree": degrees, "loo_error": loo}

    def _network(self, outputs: int) -> Any:
        """The "mlp" regressor's networks: p -> the ``outputs`` POD coordinates."""
        from dolfinx_lod.neural.operators import LearnedOperators

        width, depth, _ = self.network
        dim = int(np.log2(self.corners))
        return LearnedOperators(
            self.cells, self.sizes, self.family, self.size, width, depth, dim, self.seed, outputs
        )

    def coordinates(self, p: Any) -> npt.NDArray[np.float64]:
        """The fitted POD coordinates at p, shape (G, 2 q)."""
        if self.regressor == "mlp":
            return self.net.evaluate(p) if len(self.cells) else np.zeros((0, self.V.shape[2]))
        phi = legendre_features(scaled(self.family, self.family.check(p)), self.terms)[0]
        return np.einsum("t,gtq->gq", phi, self.C)

    def evaluate(self, p: Any) -> npt.NDArray[np.float64]:
        """(K_T, M_T) flattened for one parameter p: shape (G, 2 N_max 2^d)."""
        z, half = self.coordinates(p), self.size * self.corners
        if self._blocks is None:  # V is block diagonal: K rows on the first q, M on the rest
            q = self.V.shape[2] // 2
            blocks = (self.V[:, :half, :q], self.V[:, half:, q:])
            self._blocks = tuple(np.ascontiguousarray(b) for b in blocks)
        q = self._blocks[0].shape[2]
        y = self.mean.copy()
        y[:, :half] += np.matmul(self._blocks[0], z[:, :q, None])[:, :, 0]
        y[:, half:] += np.matmul(self._blocks[1], z[:, q:, None])[:, :, 0]
        return self.operators(p, y)

    def save(self, comm: MPI.Comm, path: str | Path, metadata: dict[str, Any]) -> None:
        """Gather the fits of all ranks (sorted by cell T) and write them with ``metadata``
        atomically (rank 0); read by :func:`~dolfinx_lod.neural.operators.load_operators`.
        Collective."""
        import torch

        state = {"mean": self.mean, "V": self.V, "C": self.C}
        state.update({f"element.{k}": v for k, v in self.element.interpolation_state().items()})
        if self.net is not None:
            state.update({f"net.{k}": v.detach().numpy() for k, v in self.net.state_dict().items()})
        parts = padded(comm.allgather((self.cells, self.sizes, state)))
        cells = np.concatenate([c for c, _, _ in parts])
        order = np.argsort(cells)
        sizes = [s for _, ss, _ in parts for s in ss]
        data = {
            "format": FORMAT,
            "metadata": {
                **metadata,
                "modes": self.modes,
                "max_degree": self.max_degree,
                "exact_element": self.exact_element,
                "regressor": self.regressor,
                "network": list(self.network),
                "interpolation": self.interpolation,
            },
            "cells": cells[order].tolist(),
            "sizes": [sizes[i] for i in order],
            "terms": torch.as_tensor(self.terms),
            "state": {
                k: torch.as_tensor(np.concatenate([st[k] for _, _, st in parts])[order])
                for k in state
            },
        }
        if comm.rank == 0:
            write_atomic(path, lambda f: torch.save(data, f))

    @classmethod
    def from_data(
        cls, data: dict, grids: NestedGrids, layers: int, cells: Sequence[int], family: Family
    ) -> ReducedOperators:
        """The fits of ``cells`` from the contents of a file of :meth:`save` (read and checked
        by :func:`~dolfinx_lod.neural.operators.load_operators`). Rank-local."""
        from dolfinx_lod.neural.operators import max_patch_vertices
        from dolfinx_lod.patches import make_patch

        meta = data["metadata"]
        size = max_patch_vertices(grids.coarse_sizes, layers, grids.dim)
        free = ~grids.dirichlet_sides
        patches = [make_patch(int(c), grids.coarse_sizes, layers, grids.dim, free) for c in cells]
        position = {c: i for i, c in enumerate(data["cells"])}
        rows = [position[int(c)] for c in cells]
        out = cls(
            cells,
            [data["sizes"][i] for i in rows],
            family,
            size,
            ElementPart(grids, patches, size),
            meta["modes"],
            meta["max_degree"],
            meta["exact_element"],
            meta["regressor"],
            tuple(meta["network"]),
            interpolation=meta.get("interpolation"),
        )
        state = {k: v[rows] for k, v in data["state"].items()}
        out.mean, out.V, out.C = (state[k].double().numpy() for k in ("mean", "V", "C"))
        out.terms = data["terms"].numpy().astype(np.int64)
        if "element.D" in state:
            points = state["element.points"].double().numpy().transpose(1, 0, 2)
            out.element.set_interpolation(points, state["element.D"].double().numpy())
        if out.regressor == "mlp":
            out.net = out._network(out.V.shape[2])
            out.net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        out.metadata = meta
        return out


def padded(parts: list[tuple]) -> list[tuple]:
    """The allgathered (cells, sizes, state) of the ranks with the interpolation arrays of the
    element part padded to the same number of points (zero columns of D, copies of the
    patch's first point: they add nothing)."""
    width = max((st["element.D"].shape[2] for _, _, st in parts if "element.D" in st), default=0)
    out = []
    for cells, sizes, state in parts:
        if "element.D" in state and state["element.D"].shape[2] < width:
            D, points = state["element.D"], state["element.points"]
            extra, front = width - D.shape[2], points[:, :, :-CHECKS]
            state = {
                **state,
                "element.D": np.pad(D, ((0, 0), (0, 0), (0, extra))),
                "element.points": np.concatenate(
                    [front, np.repeat(points[:, :, :1], extra, 2), points[:, :, -CHECKS:]], axis=2
                ),
            }
        out.append((cells, sizes, state))
    return out
