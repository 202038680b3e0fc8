"""Coefficients a(x) >= alpha > 0, piecewise constant on the fine cells of T_h (DG0), and the
parametrised families a(x, p) of the studies.

How user data (numbers, Constants, UFL expressions, Functions, arrays, callables x -> values)
becomes DG0 values is :mod:`dolfinx_lod.inputs`; its names are re-exported here. A family's
``a(x, p)`` takes fine-cell midpoints x of shape (3, N_cells), as DOLFINx passes points to
``Function.interpolate`` (z = 0 in 2D), and its parameter p.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dolfinx_lod.inputs import (  # noqa: F401  (the public names of the coefficient layer)
    MIN_RATIO,
    CoefficientLike,
    check_coefficient_values,
    check_contrast,
    check_dtype,
    coefficient_function,
    fine_cell_midpoints,
    owned_coefficient_values,
    set_cell_values,
    validate_array_shape,
)


def random_coefficient(
    n: int | tuple[int, ...], low: float = 0.01, high: float = 1.0, seed: int = 0, dim: int = 2
) -> npt.NDArray[np.float64]:
    """Rough coefficient: independent uniform values in [low, high] on every fine cell of an
    n^d grid (d = ``dim``) or, for n = (n_x, n_y[, n_z]), of that grid: an array of shape
    (n_y, n_x) or (n_z, n_y, n_x)."""
    shape = (n,) * dim if isinstance(n, int | np.integer) else tuple(n)[::-1]
    return np.random.default_rng(seed).uniform(low, high, size=shape)


@dataclass(frozen=True)
class Family:
    """A parametrized coefficient family a(x, p), p in the box [low, high] (one entry per
    parameter). ``a(x, p)`` takes fine-cell midpoints x (shape (3, N)) and returns N values.
    """

    name: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    a: Callable[[npt.NDArray[np.float64], npt.NDArray[np.float64]], npt.NDArray[np.float64]]
    description: str = ""

    @property
    def num_params(self) -> int:
        """N_p, the dimension of p."""
        return len(self.low)

    def training_parameters(self, count: int) -> npt.NDArray[np.float64]:
        """``count`` parameters spread over the range: a uniform grid for N_p = 1, a scrambled
        low-discrepancy (Halton) sequence otherwise. Shape (count, N_p)."""
        if self.num_params == 1:
            t = np.linspace(0.0, 1.0, count)[:, None]
        else:
            t = _halton(count, self.num_params)
        return np.asarray(self.low) + t * (np.asarray(self.high) - np.asarray(self.low))

    def test_parameters(self, count: int, seed: int = 12345) -> npt.NDArray[np.float64]:
        """``count`` random parameters in the range (held out: drawn independently)."""
        t = np.random.default_rng(seed).uniform(size=(count, self.num_params))
        return np.asarray(self.low) + t * (np.asarray(self.high) - np.asarray(self.low))

    def check(self, p: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """p as an array of shape (N_p,), raising ``ValueError`` outside the range."""
        p = np.atleast_1d(np.asarray(p, dtype=np.float64))
        if p.shape != (self.num_params,) or not np.all((p >= self.low) & (p <= self.high)):
            raise ValueError(
                f"parameter p of family {self.name!r} must have {self.num_params} entries in "
                f"[{list(self.low)}, {list(self.high)}]; got {p.tolist()}"
            )
        return p


def _halton(count: int, dim: int) -> npt.NDArray[np.float64]:
    primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29][:dim]
    out = np.zeros((count, dim))
    for d, b in enumerate(primes):
        for i in range(count):
            f, k, x = 1.0, i + 1, 0.0
            while k > 0:
                f /= b
                x += f * (k % b)
                k //= b
            out[i, d] = x
    return out


def cont_family(n: int, domain=((0.0, 0.0), (1.0, 1.0)), low: float = 0.01) -> Family:
    """The oscillatory family of the paper's Example 1, n x n cells.

    a_p = low + (1 - low) s, s the min-max rescaling to [0, 1] over the fine-cell midpoints of
    g(x, y) = cos(N x^2 y - 2 N x^2) sin(N/2 y^3 x + N x^2) + cos(N x^3 - 2 N y^2), N = 100 / p,
    p in [0.01, 1]. The lower bound alpha = ``low`` is 0.01 in the paper's published code and
    0.1 in its text (the family is then named ``cont0.1``); the upper bound is beta = 1.

    Raises:
        ValueError: ``low`` outside (0, 1).
    """
    if not 0.0 < low < 1.0:
        raise ValueError(
            f"cont_family: the lower coefficient bound low must be in (0, 1), got {low}"
        )
    (x0, y0), (x1, y1) = domain
    mx = x0 + (np.arange(n) + 0.5) * (x1 - x0) / n
    my = y0 + (np.arange(n) + 0.5) * (y1 - y0) / n
    X, Y = np.meshgrid(mx, my)

    def g(x, y, p):
        N = 100.0 / p
        return np.cos(N * x**2 * y - 2 * N * x**2) * np.sin(N / 2 * y**3 * x + N * x**2) + np.cos(
            N * x**3 - 2 * N * y**2
        )

    def a(x, p):
        p = float(np.atleast_1d(p)[0])
        G = g(X, Y, p)  # all midpoints: the rescaling is global
        s = (g(x[0], x[1], p) - G.min()) / (G.max() - G.min())
        return low + (1.0 - low) * s

    name = "cont" if low == 0.01 else f"cont{low:g}"
    return Family(name, (0.01,), (1.0,), a, f"paper Example 1: a in [{low:g}, 1], N = 100 / p")


#: Thermal data of the battery cell (paper Table 1): density rho, heat capacity c_p,
#: conductivity lambda for anode collector (AC), cathode collector (CC), active material (AM).
BATTERY_MATERIALS = {
    "AC": {"rho": 8710.2, "c_p": 384.65, "lambda": 398.65},
    "CC": {"rho": 2706.77, "c_p": 897.8, "lambda": 236.3},
    "AM": {"rho": 2094.302, "c_p": 1010.119, "lambda": (1.0, 5.0)},
}
#: Layer sequence of one period (bottom to top) in fine cells: CC | AM | AC | AM.
BATTERY_PERIOD = (("CC", 2), ("AM", 8), ("AC", 2), ("AM", 8))


def battery_layers(y_index: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """Material name of the fine-cell rows ``y_index`` (layers aligned with the fine mesh)."""
    names = np.concatenate([[name] * k for name, k in BATTERY_PERIOD])
    return names[np.asarray(y_index) % names.size]


def battery_layer_of(n: int, domain) -> Callable[[npt.NDArray], npt.NDArray[np.str_]]:
    """Material name at points x (shape (d, N)) of a battery cell on n fine cells per direction
    of ``domain``, layered through the last axis (y in 2D, z in 3D) as in
    :data:`BATTERY_PERIOD`, from the bottom."""
    lo, hi = domain[0][-1], domain[1][-1]
    h = (hi - lo) / n
    return lambda x: battery_layers(np.floor((x[len(domain[0]) - 1] - lo) / h).astype(np.int64))


def battery_family(n: int, num_params: int = 4, domain=((0.0, 0.0), (1.0, 1.0))) -> Family:
    """Conductivity lambda of a layered battery cell (paper Example 2; 3D: layers through z).

    Collectors with the constants of Table 1, active material lambda_AM(x, p) in [1, 5] a smooth
    random field

        lambda_AM = 3 + 2 tanh(sum_k p_k phi_k(x)),  p in [-1, 1]^N_p,

    phi_k fixed Fourier modes (seeded) of wave numbers 1..4 per direction.
    """
    lo, hi = (np.asarray(c, dtype=np.float64) for c in domain)
    rng = np.random.default_rng(2024)
    waves = [rng.integers(1, 5, num_params), rng.integers(1, 5, num_params)]
    phase = rng.uniform(0, 2 * np.pi, (num_params, 2))
    if lo.size == 3:  # modes in z drawn after those of 2D: the 2D family stays the same
        waves.append(rng.integers(1, 5, num_params))
        phase = np.hstack([phase, rng.uniform(0, 2 * np.pi, (num_params, 1))])
    layer_of = battery_layer_of(n, domain)

    def a(x, p):
        p = np.atleast_1d(np.asarray(p, dtype=np.float64))
        s = [(x[j] - lo[j]) / (hi[j] - lo[j]) for j in range(lo.size)]
        field = 0
        for k in range(num_params):
            term = p[k]
            for j in range(lo.size):
                term = term * np.sin(2 * np.pi * waves[j][k] * s[j] + phase[k, j])
            field = field + term
        out = 3.0 + 2.0 * np.tanh(field)
        layer = layer_of(x)
        for name in ("AC", "CC"):
            out = np.where(layer == name, BATTERY_MATERIALS[name]["lambda"], out)
        return out

    return Family(
        "battery",
        (-1.0,) * num_params,
        (1.0,) * num_params,
        a,
        "paper Example 2: layered CC/AM/AC, lambda_AM in [1, 5]",
    )


def battery_capacity(n: int, domain=((0.0, 0.0), (1.0, 1.0))) -> Callable:
    """Scaled heat capacity c = rho c_p / (rho c_p)_AM of the battery layers (Table 1), as a
    callable c(x, p) of fine-cell midpoints: 1 in the active material, 1.149 in the cathode and
    1.584 in the anode collector. Dividing the heat equation by (rho c_p)_AM measures time in
    units of L^2 (rho c_p)_AM / (1 W/(m K)) (L the cell size), so that the conductivities
    lambda in [1, 398.65] W/(m K) act on the unit time scale of the experiment."""
    layer_of = battery_layer_of(n, domain)
    ref = BATTERY_MATERIALS["AM"]["rho"] * BATTERY_MATERIALS["AM"]["c_p"]
    values = {k: v["rho"] * v["c_p"] / ref for k, v in BATTERY_MATERIALS.items()}

    def c(x, p=None):
        layer = layer_of(x)
        return np.vectorize(values.__getitem__)(layer).astype(np.float64)

    return c


def battery_source(n: int, domain=((0.0, 0.0), (1.0, 1.0))) -> Callable:
    """Heat source f(t, x) = 1 in the active material, 0 in the collectors."""
    layer_of = battery_layer_of(n, domain)

    def f(t, x):
        return (layer_of(x) == "AM").astype(float)

    return f


def _cell_index(x: npt.NDArray, n: int, domain) -> tuple[npt.NDArray, npt.NDArray]:
    """Fine-cell indices (ix, iy) of midpoints x on an n x n grid of ``domain``."""
    (x0, y0), (x1, y1) = domain
    ix = np.floor((x[0] - x0) / (x1 - x0) * n).astype(np.int64)
    iy = np.floor((x[1] - y0) / (y1 - y0) * n).astype(np.int64)
    return ix, iy


def checkerboard_family(
    n: int, scale: int, contrast: float, seed: int = 0, domain=((0.0, 0.0), (1.0, 1.0))
) -> Family:
    """Random two-phase checkerboard: blocks of ``scale`` x ``scale`` fine cells take the
    value ``contrast`` where their fixed random threshold u_B ~ U(0, 1) is below p, else 1;
    p in [0, 1] is the expected volume fraction of the ``contrast`` phase."""
    if scale < 1 or n % scale:
        raise ValueError(f"checkerboard scale must divide n = {n}, got {scale}")
    blocks = n // scale
    u = np.random.default_rng(seed).uniform(size=(blocks, blocks))

    def a(x, p):
        ix, iy = _cell_index(x, n, domain)
        return np.where(u[iy // scale, ix // scale] < float(np.atleast_1d(p)[0]), contrast, 1.0)

    return Family("checkerboard", (0.0,), (1.0,), a, f"blocks {scale} cells, contrast {contrast}")


def laminate_family(
    n: int, period: int, contrast: float, domain=((0.0, 0.0), (1.0, 1.0))
) -> Family:
    """Layers across x: a = 1 in the first half of each period of ``period`` fine cells and
    a_2 = 1 + p (contrast - 1) in the second half, p in [0, 1]. Its homogenized coefficient is
    known exactly (:func:`laminate_homogenized`)."""
    if period < 2 or period % 2 or n % period:
        raise ValueError(f"laminate period must be even and divide n = {n}, got {period}")

    def a(x, p):
        ix, _ = _cell_index(x, n, domain)
        second = (ix % period) >= period // 2
        return np.where(second, 1.0 + float(np.atleast_1d(p)[0]) * (contrast - 1.0), 1.0)

    return Family("laminate", (0.0,), (1.0,), a, f"period {period} cells, contrast {contrast}")


def laminate_homogenized(p: float, contrast: float) -> tuple[float, float]:
    """Homogenized coefficient diag(a_xx, a_yy) of :func:`laminate_family` (equal volume
    fractions): the harmonic mean across the layers, the arithmetic mean along them."""
    a2 = 1.0 + p * (contrast - 1.0)
    return 2.0 / (1.0 + 1.0 / a2), 0.5 * (1.0 + a2)


def lognormal_family(
    n: int,
    modes: int = 8,
    sigma: float = 1.0,
    correlation: float = 0.2,
    seed: int = 0,
    domain=((0.0, 0.0), (1.0, 1.0)),
) -> Family:
    """Log-normal random field a = exp(sigma * sum_k p_k w_k phi_k(x)): ``modes`` random
    Fourier modes phi_k with Gaussian spectral weights w_k (correlation length
    ``correlation``, normalized so that sum w_k^2 = 1) and standard normal coordinates
    truncated to p in [-3, 3]^modes."""
    (x0, y0), (x1, y1) = domain
    rng = np.random.default_rng(seed)
    k = rng.normal(scale=1.0 / (2 * np.pi * correlation), size=(modes, 2))
    phase = rng.uniform(0, 2 * np.pi, modes)
    w = np.exp(-0.5 * (2 * np.pi * correlation) ** 2 * (k**2).sum(1))
    w /= np.sqrt((w**2).sum())

    def a(x, p):
        xs = np.stack([(x[0] - x0) / (x1 - x0), (x[1] - y0) / (y1 - y0)])
        field = (
            np.asarray(p)[:, None]
            * w[:, None]
            * np.sqrt(2)
            * np.cos(2 * np.pi * k @ xs + phase[:, None])
        ).sum(0)
        return np.exp(sigma * field)

    return Family("lognormal", (-3.0,) * modes, (3.0,) * modes, a, f"sigma {sigma}, modes {modes}")


def family(name: str, n: int, domain=((0.0, 0.0), (1.0, 1.0))) -> Family:
    """The coefficient family ``name`` ("cont" or "battery") on n x n fine cells."""
    makers = {"cont": cont_family, "battery": battery_family}
    if name not in makers:
        raise ValueError(f"family must be one of {sorted(makers)}, got {name!r}")
    return makers[name](n, domain=domain)
