"""Coefficient families given by samples: fields of a stack as a family (:func:`sample_family`,
the index k is the parameter) and a parametrized family known by its samples, field K[i] at
parameter P[i] (:func:`params_family`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dolfinx_lod.coefficients import Family
from dolfinx_lod.parallel import InputError


class SampleFamily(Family):
    """Given coefficient fields as a family a(x, k): k = 0..K-1 is the index of the field in
    a (K, n, n) stack (orientation as for arrays). Its training and test parameters are the
    indices 0..count-1: every field is used, none is drawn."""

    def training_parameters(self, count: int) -> npt.NDArray[np.float64]:
        """The first ``count`` indices, shape (count, 1)."""
        if not 1 <= count <= self.high[0] + 1:
            raise InputError(
                f"samples ({count}) must be in 1..{int(self.high[0]) + 1} (fields in the stack)"
            )
        return np.arange(count, dtype=np.float64)[:, None]

    def test_parameters(self, count: int, seed: int = 12345) -> npt.NDArray[np.float64]:
        """The first ``count`` indices (the stack holds the held-out fields)."""
        return self.training_parameters(count)


def _stack_lookup(stack: npt.NDArray, domain: Any) -> Callable:
    """(x, k) -> the values of field k of a (K, n_y, n_x) or (K, n_z, n_y, n_x) stack at the
    fine-cell midpoints x (shape (3, N)) of the box ``domain`` (default: the unit box)."""
    cells = np.asarray(stack.shape[1:][::-1])  # (n_x, n_y[, n_z])
    dim = cells.size
    lo, hi = ((0.0,) * dim, (1.0,) * dim) if domain is None else domain
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)

    def values(x: npt.NDArray, k: int) -> npt.NDArray[np.float64]:
        index = np.floor((x[:dim].T - lo) / (hi - lo) * cells).astype(np.int64)
        index = np.clip(index, 0, cells - 1)
        return np.asarray(stack[k])[tuple(index[:, ::-1].T)]

    return values


def sample_family(stack: npt.NDArray, name: str = "samples", domain: Any = None) -> SampleFamily:
    """The fields of a (K, n_y, n_x) or (K, n_z, n_y, n_x) stack (validated by the caller;
    orientation as for arrays) on the box ``domain`` (default: the unit square or cube) as a
    :class:`SampleFamily`."""
    values = _stack_lookup(stack, domain)

    def a(x, p):
        return values(x, int(round(float(np.atleast_1d(p)[0]))))

    K, size = stack.shape[0], " x ".join(map(str, stack.shape[1:][::-1]))
    return SampleFamily(name, (0.0,), (float(K - 1),), a, f"{K} given fields, {size} cells")


@dataclass(frozen=True, eq=False)
class ParamsFamily(Family):
    """A parametrized family given by samples: field K[i] at parameter P[i]. Training
    parameters are the first rows of P, held-out ones the last rows; a(x, p) is the field of the
    row of P equal to p (the nearest row)."""

    #: P, shape (K, N_p)
    params: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 1)))

    def training_parameters(self, count: int) -> npt.NDArray[np.float64]:
        """The first ``count`` rows of P."""
        return self.params[:count]

    def test_parameters(self, count: int, seed: int = 12345) -> npt.NDArray[np.float64]:
        """The last ``count`` rows of P (held out when training used the first ones)."""
        return self.params[len(self.params) - count :]


def params_family(
    stack: npt.NDArray,
    params: npt.ArrayLike,
    name: str = "samples",
    domain: Any = None,
    box: tuple[Sequence[float], Sequence[float]] | None = None,
) -> ParamsFamily:
    """The family of the fields of ``stack`` (as :func:`sample_family`) at the parameters
    ``params`` ((K,) or (K, N_p): field i at P[i]); its box [low, high] is ``box`` or the range
    of P.

    Raises:
        InputError: K fields but not K parameters, or a parameter constant over the samples
            (no box to scale it to).
    """
    P = np.asarray(params, dtype=np.float64)
    P = P[:, None] if P.ndim == 1 else P
    if P.ndim != 2 or P.shape[0] != stack.shape[0]:
        raise InputError(
            f"`params` must have shape (K,) or (K, N_p) with K = {stack.shape[0]} (the fields "
            f"of `stack`); got {np.shape(params)}"
        )
    low, high = (P.min(0), P.max(0)) if box is None else map(np.asarray, box)
    if np.any(high <= low):
        raise InputError(
            f"`params`: parameter column(s) {np.flatnonzero(high <= low).tolist()} take one "
            "value only; give samples over a range of p"
        )
    values = _stack_lookup(stack, domain)
    scale = high - low

    def a(x, p):
        distance = (((P - np.atleast_1d(p)) / scale) ** 2).sum(1)
        return values(x, int(np.argmin(distance)))

    low, high = tuple(map(float, low)), tuple(map(float, high))
    return ParamsFamily(name, low, high, a, f"{len(P)} given samples", P)
