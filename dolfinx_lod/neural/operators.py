"""Learned Petrov–Galerkin local operators (operator compression): networks p -> (K_T, M_T).

For a coefficient family a(x, p), each patch's local operators (K_T(p), M_T(p)) (see
:meth:`dolfinx_lod.patch_problem.PatchProblem.local_operators`) are a small, smooth map of p:
prod_k (w_k + 1) x 2^d numbers each. :class:`LearnedOperators` fits one MLP per owned patch to
them by least squares at training parameters (Kröpfl, Maier, Peterseim, *Operator compression
with deep neural networks*, 2022: learn the local coarse contributions instead of
reassembling them), with the outputs normalized per entry.
:class:`~dolfinx_lod.neural.operator_provider.OperatorProvider` pairs the networks with a
corrector provider: a :class:`~dolfinx_lod.basis.MultiscaleBasis` built with a capacity then
takes the operators from the networks, so a Petrov–Galerkin step of the
:class:`~dolfinx_lod.timestepping.LODStepper` solves no patch problem; with ``fit="mlp"`` it
reads no coefficient, while the default reduced fit evaluates a(x, p) at a few interpolation
points per owned T for the element part (O(N_H / ranks) work per step, no solve, independent of
h: :mod:`~dolfinx_lod.neural.element_part`); the correctors are evaluated only when B is asked
for (output steps).
:func:`fit_operators` fits these networks (``fit="mlp"``) or, by default, the more accurate
:class:`~dolfinx_lod.neural.reduced_operators.ReducedOperators` (the element part from
a(x, p), interpolated on each T, networks on POD coordinates of the rest); :meth:`LearnedOperators.
load` reads either.

Rank-local: each rank fits and evaluates the networks of the patches it owns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from mpi4py import MPI

from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.coefficients import Family
from dolfinx_lod.coefficients import family as make_family
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.io import write_atomic
from dolfinx_lod.neural.networks import _BatchedMLP
from dolfinx_lod.neural.operator_provider import OperatorProvider
from dolfinx_lod.neural.presets import OPERATOR_EPOCHS, OPERATOR_FIT, OPERATOR_INTERPOLATION
from dolfinx_lod.neural.provider import LEGACY_PROBLEM, problem_metadata, scale_parameters
from dolfinx_lod.parallel import InputError, brief
from dolfinx_lod.samples import ParamsFamily

if TYPE_CHECKING:
    from dolfinx_lod.neural.reduced_operators import ReducedOperators

FORMAT = "dolfinx_lod.operators/1"


def max_patch_vertices(coarse: int | Sequence[int], layers: int, dim: int) -> int:
    """Coarse vertices of the largest patch N^l(T): prod_k min(2 l + 2, N_k + 1) (``coarse``:
    N_H, or the counts N_k per direction; the same on every rank, so that the networks'
    output size does not depend on the partition)."""
    counts = np.broadcast_to(np.asarray(coarse, dtype=np.int64), (dim,))
    return int(np.prod(np.minimum(2 * layers + 2, counts + 1)))


def operator_samples(
    basis: MultiscaleBasis, family: Family, params: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Local operators of every owned patch at each parameter: shape (G, K, 2 N_max 2^d), rows
    [K_T; M_T] flattened and zero-padded to the largest patch. ``basis`` must have a capacity
    (its provider produces the correctors). Collective."""
    if not basis.with_operators:
        raise ValueError("operator samples need a MultiscaleBasis built with a capacity")
    g = basis.grids
    size = max_patch_vertices(g.coarse_sizes, basis.layers, g.dim)
    out = np.zeros((len(basis.patches), len(params), 2 * size * 2**g.dim))
    for k, p in enumerate(params):
        basis.update(family.a, p, assemble=False)
        out[:, k] = pack_operators(basis.operators, size, 2**g.dim)
    return out


def pack_operators(
    operators: Sequence[tuple[npt.NDArray, npt.NDArray]], size: int, corners: int
) -> npt.NDArray[np.float64]:
    """(K_T, M_T) of each patch as one row [K_T; M_T], each flattened and zero-padded to
    ``size`` patch vertices x ``corners``: shape (G, 2 size corners)."""
    out = np.zeros((len(operators), 2 * size * corners))
    for g, (K, M) in enumerate(operators):
        out[g, : K.size] = K.ravel()
        out[g, size * corners : size * corners + M.size] = M.ravel()
    return out


class LearnedOperators(_BatchedMLP):
    """G MLPs p -> (K_T, M_T) (tanh, ``width`` x ``depth``), outputs normalized per entry by
    the training data's mean and spread. Rank-local.

    Args:
        cells: Coarse cell T of each network.
        sizes: Coarse vertices of each patch N^l(T).
        family: The coefficient family a(x, p).
        size: Output rows per operator: the largest patch (:func:`max_patch_vertices`).
        width, depth: Network size.
        dim: Space dimension d.
        seed: The network of cell T is initialized from the seed (``seed``, T): the networks,
            and so the fit, do not depend on which rank owns T.
        outputs: Outputs per network (default 2 N_max 2^d: all entries of [K_T; M_T]; fewer
            for coordinates in a reduced space, :mod:`~dolfinx_lod.neural.reduced_operators`).
    """

    def __init__(
        self,
        cells: Sequence[int],
        sizes: Sequence[int],
        family: Family,
        size: int,
        width: int = 32,
        depth: int = 3,
        dim: int = 2,
        seed: int = 0,
        outputs: int | None = None,
    ):
        self.size, self.corners = size, 2**dim
        outputs = outputs or 2 * self.size * self.corners
        seeds = [seed * 1_000_003 + int(c) for c in cells]
        super().__init__(len(cells), family.num_params, outputs, width, depth, seeds)
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
        blocks: int = 0,
    ) -> npt.NDArray[np.float64]:
        """Least-squares fit of the normalized samples (G, K, 2 N_max 2^d) at ``params`` with Adam
        (learning rate decayed 100x over the epochs); the loss is the sum over the networks of
        each one's mean squared error, so that every network's fit is independent of the others.
        ``blocks`` > 0: the outputs are that many equal blocks, each scaled by its largest
        spread (POD coordinates: the loss weighs each by its energy). Returns the final mean
        squared error of each network's normalized outputs, shape (G,)."""
        y = torch.tensor(samples, dtype=torch.float32)
        with torch.no_grad():
            self.offset.copy_(y.mean(1, keepdim=True))
            # Per entry: K_T and M_T differ by orders of magnitude (a vs H^2 c).
            floor = (1e-6 * y.abs().amax(1, keepdim=True)).clamp_min(torch.finfo(y.dtype).tiny)
            spread = y.std(1, keepdim=True).clamp_min(floor)
            if blocks:
                parts = spread.reshape(len(y), 1, blocks, y.shape[2] // blocks)
                spread = parts.amax(-1, keepdim=True).expand_as(parts).reshape(spread.shape)
            self.scale.copy_(spread)
        target = (y - self.offset) / self.scale
        p = scale_parameters(self.family, params)
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.01 ** (1 / epochs))
        errors = torch.zeros(len(self.cells))
        for _ in range(epochs):
            optimizer.zero_grad()
            errors = ((self(p) - target) ** 2).mean(dim=(1, 2))
            errors.sum().backward()
            optimizer.step()
            schedule.step()
        return errors.detach().double().numpy()

    def evaluate(self, p: Any) -> npt.NDArray[np.float64]:
        """(K_T, M_T) flattened for one parameter p: shape (G, 2 N_max 2^d)."""
        with torch.no_grad():
            y = self(scale_parameters(self.family, self.family.check(p)))
            return (self.offset + self.scale * y)[:, 0].double().numpy()

    def save(self, comm: MPI.Comm, path: str | Path, metadata: dict[str, Any]) -> None:
        """Gather the networks of all ranks (sorted by cell T) and write them with
        ``metadata`` atomically (rank 0). Collective."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        parts = comm.allgather((self.cells, self.sizes, state))
        cells = np.concatenate([c for c, _, _ in parts])
        order = np.argsort(cells)
        sizes = [s for _, ss, _ in parts for s in ss]
        rows = torch.as_tensor(order)
        data = {
            "format": FORMAT,
            "metadata": metadata,
            "cells": cells[order].tolist(),
            "sizes": [sizes[i] for i in order],
            "state": {k: torch.cat([st[k] for _, _, st in parts])[rows] for k in state},
        }
        if comm.rank == 0:
            write_atomic(path, lambda f: torch.save(data, f))

    @classmethod
    def load(
        cls,
        path: str | Path,
        grids: NestedGrids,
        layers: int,
        cells: Sequence[int],
        family: Family | Callable[[dict], Family] | None = None,
    ) -> LearnedOperators | ReducedOperators:
        """The networks of ``cells`` (e.g. the owned patches) from a file of :meth:`save`, or
        the fits of :meth:`ReducedOperators.save`, checked against the grids and l.
        ``family``: the coefficient family of the problem, or a function of the file's
        metadata giving it (default: the built-in family the file
        names; required for operators fitted to given samples,
        :func:`~dolfinx_lod.samples.params_family`). Rank-local.

        Raises:
            InputError: ``path`` is not an operator file, or it was fitted for another problem.
        """
        from dolfinx_lod.neural.reduced_operators import FORMAT as REDUCED
        from dolfinx_lod.neural.reduced_operators import ReducedOperators

        try:
            data = torch.load(path, weights_only=True)
            meta, state = data["metadata"], data["state"]
            if data["format"] not in (FORMAT, REDUCED):
                raise ValueError(f"format {FORMAT} or {REDUCED} expected")
        except FileNotFoundError:
            raise
        except Exception as e:  # truncated, empty, not a torch file, another format
            raise InputError(f"not a dolfinx_lod operator file: {path} ({brief(e)})") from e
        if callable(family):
            family = family(meta)
        if family is None:
            if meta.get("given_samples"):
                raise InputError(
                    f"{path} was fitted to given samples ({meta['family']!r}): give their "
                    "coefficients and parameters (`stack`, `params`)"
                )
            family = make_family(meta["family"], grids.fine, grids.domain)
        for key, value in problem_metadata(grids, layers, family).items():
            mine = meta.get(key, LEGACY_PROBLEM.get(key))
            if mine != value:
                raise InputError(
                    f"{path} does not match the problem: {key} is {mine!r} there but {value!r} here"
                )
        if data["format"] == REDUCED:
            return ReducedOperators.from_data(data, grids, layers, cells, family)
        position = {c: i for i, c in enumerate(data["cells"])}
        rows = torch.as_tensor([position[int(c)] for c in cells], dtype=torch.int64)
        nets = cls(
            cells,
            [data["sizes"][i] for i in rows],
            family,
            max_patch_vertices(grids.coarse_sizes, layers, grids.dim),
            meta["width"],
            meta["depth"],
            grids.dim,
        )
        nets.load_state_dict({k: v[rows] for k, v in state.items()})
        nets.metadata = meta
        return nets


def fit_operators(
    basis: MultiscaleBasis,
    family: Family,
    params: npt.NDArray[np.float64],
    width: int = OPERATOR_FIT["width"],
    depth: int = OPERATOR_FIT["depth"],
    epochs: int = OPERATOR_EPOCHS,
    seed: int = 0,
    fit: str = OPERATOR_FIT["fit"],
    modes: int = OPERATOR_FIT["modes"],
    interpolation: float | None = OPERATOR_INTERPOLATION["tol"],
) -> tuple[LearnedOperators | ReducedOperators, float]:
    """Learned local operators for the owned patches of ``basis`` (built with a capacity),
    fitted to the local operators its provider gives at ``params``: ``fit`` "reduced" (default:
    the element part from a, MLPs on ``modes`` POD coordinates per block, ReducedOperators),
    "poly" (the same with Legendre least squares) or "mlp" (:class:`LearnedOperators` on all
    entries); ``interpolation``: the tolerance of the element part's interpolation of a
    (reduced, poly; None: a on every fine cell of T each step). Returns (fit, mean over all
    patches of the final normalized mean squared error; "poly": of the relative leave-one-out
    error of each patch's chosen degree). Collective (the basis updates); the fit does not
    depend on the number of ranks."""
    from dolfinx_lod.neural.element_part import ElementPart
    from dolfinx_lod.neural.reduced_operators import ReducedOperators

    if fit not in ("reduced", "poly", "mlp"):
        raise ValueError(f"fit must be 'reduced', 'poly' or 'mlp', got {fit!r}")
    samples = operator_samples(basis, family, params)
    g = basis.grids
    sizes = [len(p.coarse_vertex_keys(g.coarse_sizes)) for p in basis.patches]
    cells = [p.cell for p in basis.patches]
    size = max_patch_vertices(g.coarse_sizes, basis.layers, g.dim)
    if fit == "mlp":
        nets = LearnedOperators(cells, sizes, family, size, width, depth, g.dim, seed)
        errors = nets.fit(params, samples, epochs=epochs)
        total = g.comm.allreduce(float(errors.sum()))
        return nets, total / g.comm.allreduce(len(cells))
    element = ElementPart(g, basis.patches, size)
    regressor = "mlp" if fit == "reduced" else "poly"
    network = (width, depth, epochs)
    ops = ReducedOperators(
        cells,
        sizes,
        family,
        size,
        element,
        modes,
        regressor=regressor,
        network=network,
        seed=seed,
        interpolation=interpolation,
    )
    info = ops.fit(params, samples)
    local = float(np.sum(info["loo_error"])) if fit == "poly" else info["loss"] * len(cells)
    total = g.comm.allreduce(local)
    return ops, total / max(g.comm.allreduce(len(cells)), 1)


def operator_errors(
    basis: MultiscaleBasis, learned: OperatorProvider, family: Family, params: npt.NDArray
) -> dict[str, float]:
    """Relative Frobenius error of the learned local operators against the classical ones of
    ``basis`` (built with a capacity, classical provider) over all patches and ``params``, on
    the entries the coarse system uses (:func:`~dolfinx_lod.neural.reduced_operators.
    kept_entries`): {"K": ||K~ - K||_F / ||K||_F, "M": likewise}. Collective."""
    from dolfinx_lod.neural.element_part import kept_entries

    g = basis.grids
    size, corners = max_patch_vertices(g.coarse_sizes, basis.layers, g.dim), 2**g.dim
    kept = kept_entries(g, basis.patches, size)
    sums = np.zeros(4)  # ||dK||^2, ||K||^2, ||dM||^2, ||M||^2
    for p in params:
        basis.update(family.a, p, assemble=False)
        X = pack_operators(learned.local_operators(basis.patches, p), size, corners) * kept
        X_ref = pack_operators(basis.operators, size, corners) * kept
        for k, part in enumerate((slice(0, size * corners), slice(size * corners, None))):
            d, r = X[:, part] - X_ref[:, part], X_ref[:, part]
            sums[2 * k : 2 * k + 2] += (d**2).sum(), (r**2).sum()
    sums = g.comm.allreduce(sums)
    return {"K": float(np.sqrt(sums[0] / sums[1])), "M": float(np.sqrt(sums[2] / sums[3]))}


def train_operators(
    grids: NestedGrids,
    layers: int,
    family: Family,
    samples: int,
    test_samples: int,
    width: int = OPERATOR_FIT["width"],
    depth: int = OPERATOR_FIT["depth"],
    epochs: int = OPERATOR_EPOCHS,
    seed: int = 0,
    fit: str = OPERATOR_FIT["fit"],
    modes: int = OPERATOR_FIT["modes"],
    interpolation: float | None = OPERATOR_INTERPOLATION["tol"],
) -> tuple[LearnedOperators | ReducedOperators, dict[str, Any]]:
    """Fit the local operators of every owned patch (:func:`fit_operators`: ``fit``,
    ``modes``, ``interpolation``, kept only if it holds on the held-out parameters:
    :func:`check_interpolation`) at ``samples`` training parameters of ``family`` (capacity
    c = 1) and measure them on ``test_samples`` held-out parameters.
    Returns (networks, report: offline time (classical samples and fit), fit loss, held-out
    errors (of the operators; of the element part's interpolation, :func:`interpolation_report`),
    online time of the operators of one p, metadata for :meth:`LearnedOperators.save`).
    Collective."""
    comm = grids.comm
    train_p = family.training_parameters(samples)
    test_p = family.test_parameters(test_samples, seed=10_000 + seed)
    t0 = time.perf_counter()
    with MultiscaleBasis(grids, layers, capacity=1.0) as basis:
        nets, loss = fit_operators(
            basis, family, train_p, width, depth, epochs, seed, fit, modes, interpolation
        )
        offline_seconds = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        learned = OperatorProvider(basis.patch_problems, nets)
        errors = operator_errors(basis, learned, family, test_p)
        interpolation = check_interpolation(nets, interpolation_report(nets, family, test_p, comm))
        t1 = time.perf_counter()
        basis.update(family.a, test_p[0], assemble=False)
        classical_seconds = comm.allreduce(time.perf_counter() - t1, op=MPI.MAX)
        t1 = time.perf_counter()
        learned.local_operators(basis.patches, test_p[0])
        learned_seconds = comm.allreduce(time.perf_counter() - t1, op=MPI.MAX)
    metadata = {
        **problem_metadata(grids, layers, family),
        "num_params": family.num_params,
        "width": width,
        "depth": depth,
        "seed": seed,
        "samples": samples,
        "epochs": epochs,
        "fit": fit,
        "capacity": 1.0,
        "given_samples": isinstance(family, ParamsFamily),
    }
    report = {
        "metadata": metadata,
        "offline_seconds": offline_seconds,
        "fit_loss": loss,
        "operator_error_test": errors,
        **interpolation,
        "online_operator_seconds": {"classical": classical_seconds, "learned": learned_seconds},
    }
    return nets, report


def interpolation_report(
    fit: LearnedOperators | ReducedOperators, family: Family, params: npt.NDArray, comm: MPI.Comm
) -> dict[str, Any]:
    """{"element_interpolation": points per coarse cell (most), relative Frobenius error of
    the online element part P~_T and of the mean of a on T against the exact ones at the
    held-out ``params``, coarse cells that fell back (of all evaluated)} ({} for a fit without
    the interpolation). Collective."""
    element = getattr(fit, "element", None)
    if element is None or element.points is None:
        return {}
    sums = comm.allreduce(element.interpolation_error(family, params))
    return {
        "element_interpolation": {
            "points_per_cell": comm.allreduce(element.D.shape[2], op=MPI.MAX),
            "error_test": {
                "P": float(np.sqrt(sums[0] / sums[1])),
                "mean": float(np.sqrt(sums[2] / sums[3])),
            },
            "fallback_cells_test": int(sums[4]),
            "cells_test": comm.allreduce(len(element.D)) * len(params),
        }
    }


def check_interpolation(fit: ReducedOperators, report: dict[str, Any]) -> dict[str, Any]:
    """Keep the element part's interpolation of ``fit`` only if its held-out error (``report``
    of :func:`interpolation_report`) is at most OPERATOR_INTERPOLATION["check_tol"]; otherwise
    drop it (a on every fine cell of T each step, online cost O(N_h / ranks)). Returns
    ``report`` with "used" and, when dropped or when cells fell back, a "warning" sentence."""
    if not report:
        return report
    info = report["element_interpolation"]
    error, tol = info["error_test"]["P"], OPERATOR_INTERPOLATION["check_tol"]
    info["used"] = error <= tol
    if not info["used"]:
        fit.drop_interpolation()
        warning = (
            f"the coefficient's interpolation on the coarse cells misses the held-out fields "
            f"(element part error {error:.2e} > {tol:g}): the element part is computed from a on "
            "every fine cell each step instead (online cost grows with 1/h); more training "
            "samples would span those fields"
        )
        return {**report, "warning": warning}
    if info["fallback_cells_test"]:
        warning = (
            f"the coefficient's interpolation missed on {info['fallback_cells_test']} of "
            f"{info['cells_test']} coarse cells at the held-out parameters (a on their fine cells "
            "used there instead)"
        )
        return {**report, "warning": warning}
    return report
