"""The paper's two examples at the sizes of the demo modes (``paper``, ``quick``, ``tiny``).

Used by ``demos/example1.py``, ``demos/example2.py`` and the benchmarks in ``bench/``.
Training budgets per mode: :data:`dolfinx_lod.paper.experiments.TRAINING`.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from dolfinx_lod.coefficients import battery_capacity, battery_family, battery_source, cont_family
from dolfinx_lod.paper.experiments import Example, sized_example

#: Problem sizes of Example 1 (paper §4.1) per mode.
EXAMPLE1_SIZES = {
    "paper": dict(NH=6, n=36, samples=40, tests=25, steps=24),
    "quick": dict(NH=6, n=36, samples=160, tests=5, steps=24),
    "tiny": dict(NH=3, n=12, samples=4, tests=2, steps=4),
}

#: Problem sizes of Example 2 (paper §4.2, battery cell) per mode.
EXAMPLE2_SIZES = {
    "paper": dict(NH=6, n=60, samples=15, tests=25, steps=24),
    "quick": dict(NH=6, n=60, samples=15, tests=5, steps=24),
    "tiny": dict(NH=4, n=20, samples=4, tests=2, steps=4),
}


def example1(mode: str, network: str | None = None, comm: MPI.Comm = MPI.COMM_WORLD) -> Example:
    """Example 1 at the sizes of ``mode``.

    Test schedules: a held-out p_i moving with t, p(t) = min(p_i (1 + 0.2 t), 1).
    """
    size = EXAMPLE1_SIZES[mode]
    return sized_example(
        1,
        mode,
        size,
        cont_family(size["n"]),
        network,
        comm,
        schedule=lambda p, t: np.minimum(p * (1 + 0.2 * t), 1.0),
        label=lambda p: f"p(t) = min({p[0]:.4f} (1 + 0.2 t), 1)",
        paper={"rel_error_final_mean": 0.0495, "basis_error_nodal": 0.064},
    )


def example2(mode: str, network: str | None = None, comm: MPI.Comm = MPI.COMM_WORLD) -> Example:
    """Example 2 (battery cell) at the sizes of ``mode``.

    Test schedules: a held-out p_i drifting with t, p(t) = clip(p_i + 0.2 t, -1, 1).
    """
    size = EXAMPLE2_SIZES[mode]
    n = size["n"]
    return sized_example(
        2,
        mode,
        size,
        battery_family(n),
        network,
        comm,
        schedule=lambda p, t: np.clip(p + 0.2 * t, -1.0, 1.0),
        label=lambda p: f"p(t) = clip({np.round(p, 4).tolist()} + 0.2 t, -1, 1)",
        capacity=battery_capacity(n),
        source=battery_source(n),
        paper={
            "rel_error_final_mean": 0.0298,
            "rel_error_final_one": 0.0294,
            "basis_error_nodal": 0.064,
        },
    )


#: The examples by demo name (``bench/`` selects them so).
EXAMPLES = {"example1": example1, "example2": example2}
