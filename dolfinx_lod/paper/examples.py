"""The paper's two examples at the sizes of the demo modes (``paper``, ``quick``, ``tiny``).

``quick`` (the demos' default) and ``paper`` are the paper's setting: K = 40 (Example 1) and 15
(Example 2) training parameters and 25 test schedules; ``paper`` trains the paper's network
with its optimizer, ``quick`` the best network here. Test schedules never take a training
value (:func:`dolfinx_lod.paper.experiments.schedule_clearance`).

Used by ``demos/example1.py``, ``demos/example2.py`` and the benchmarks in ``bench/``.
Training budgets per mode: :data:`dolfinx_lod.neural.presets.PRESETS`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from mpi4py import MPI

from dolfinx_lod.coefficients import battery_capacity, battery_family, battery_source, cont_family
from dolfinx_lod.paper.experiments import ALPHAS, Example, sized_example

#: Problem sizes of Example 1 (paper §4.1) per mode.
EXAMPLE1_SIZES = {
    "paper": dict(NH=6, n=36, samples=40, tests=25, steps=24),
    "quick": dict(NH=6, n=36, samples=40, tests=25, steps=24),
    "tiny": dict(NH=3, n=12, samples=4, tests=2, steps=4),
}

#: Problem sizes of Example 2 (paper §4.2, battery cell) per mode.
EXAMPLE2_SIZES = {
    "paper": dict(NH=6, n=60, samples=15, tests=25, steps=24),
    "quick": dict(NH=6, n=60, samples=15, tests=25, steps=24),
    "tiny": dict(NH=4, n=20, samples=4, tests=2, steps=4),
}


#: Growth of Example 1's test parameter over [0, T]: p(t) = p_0 (1 + GROWTH t / T).
GROWTH = 0.2


def example1_start(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """p_0 of a test schedule from a held-out draw p in [0.01, 1], mapped affinely onto
    [0.01, 1 / (1 + GROWTH)] so that p(t) = p_0 (1 + GROWTH t) stays in the range without
    saturating (a clipped schedule would sit on the training value p = 1)."""
    return 0.01 + (p - 0.01) * (1 / (1 + GROWTH) - 0.01) / 0.99


def example1(
    mode: str,
    network: str | None = None,
    comm: MPI.Comm = MPI.COMM_WORLD,
    alpha: float = ALPHAS[0],
    epochs: int | None = None,
) -> Example:
    """Example 1 at the sizes of ``mode``, coefficient in [alpha, 1].

    Test schedules: a held-out p_0 moving with t, p(t) = p_0 (1 + 0.2 t) (:func:`example1_start`).
    """
    size = EXAMPLE1_SIZES[mode]
    return sized_example(
        1,
        mode,
        size,
        cont_family(size["n"], low=alpha),
        network,
        epochs,
        comm,
        schedule=lambda p, t: example1_start(p) * (1 + GROWTH * t),
        label=lambda p: f"p(t) = {example1_start(p)[0]:.4f} (1 + {GROWTH} t)",
        paper={"rel_error_final_one": 0.0495},
        alpha=alpha,
    )


def example2(
    mode: str,
    network: str | None = None,
    comm: MPI.Comm = MPI.COMM_WORLD,
    epochs: int | None = None,
) -> Example:
    """Example 2 (battery cell) at the sizes of ``mode``.

    Test schedules: a held-out p_i drifting with t, p(t) = clip(p_i + 0.2 t, -1, 1).
    """
    size = EXAMPLE2_SIZES[mode]
    n = size["n"]
    network = network or EXAMPLE2_NETWORKS.get(mode)
    return sized_example(
        2,
        mode,
        size,
        battery_family(n),
        network,
        epochs,
        comm,
        schedule=lambda p, t: np.clip(p + 0.2 * t, -1.0, 1.0),
        label=lambda p: f"p(t) = clip({np.round(p, 4).tolist()} + 0.2 t, -1, 1)",
        capacity=battery_capacity(n),
        source=battery_source(n),
        paper={
            "rel_error_final_mean": 0.0298,
            "rel_error_final_one": 0.0294,
            "basis_error_mean": 0.064,
        },
    )


#: Example 2's network per mode where it differs from the mode's: the reduced network reaches
#: the paper's basis error on the battery cell in 29 s of training (docs/results.md). The
#: coefficient-aware CNN trains on this cell too (its energy weights are the element energies
#: sum_j ||Lambda_j||_{a,T}^2, positive at the boundary as well) but is not measured on it.
EXAMPLE2_NETWORKS = {"quick": "reduced:16:32x3"}


#: The examples by demo name (``bench/`` selects them so).
EXAMPLES = {"example1": example1, "example2": example2}
