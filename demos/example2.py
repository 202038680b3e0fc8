# # Example 2: heat in a battery cell (paper §4.2, Table 1)
#
# rho c_p d_t u - div(lambda grad u) = f on the unit square, u = 0 on the boundary, u0 = 0,
# H = 1/6, h = 1/60, l = 1, T = 1, tau = 1/24. Horizontal layers aligned with the fine mesh
# repeat cathode collector (CC, 2 fine cells), active material (AM, 8), anode collector (AC, 2),
# active material (8) from the bottom (`dolfinx_lod.coefficients.battery_family`). Collectors
# have the constants of Table 1; lambda_AM(x, p) = 3 + 2 tanh(sum_k p_k phi_k(x)) in [1, 5] is a
# smooth random field with p in [-1, 1]^4. The heat source is f = 1 in the active material.
#
# Scaling: the equation is divided by (rho c_p)_AM = 2.115e6 J/(m^3 K), so the capacity is
# c = rho c_p / (rho c_p)_AM (1, 1.149, 1.584) and time is measured in units of
# L^2 (rho c_p)_AM / (1 W/(m K)) with L the cell size; then heat diffuses through the active
# material on the time scale of the experiment and the collectors (lambda ~ 240-400) spread it
# to the boundary, so the solution shows the layers instead of a flat f t / (rho c_p) field.
#
# Offline: networks trained on 15 parametrizations (Deep Ritz, cached). Online: held-out
# parameters moving with t; LOD, LOD-ANN and the mean training corrector next to the fine FEM.
#
# Run: `mpirun -n 2 python demos/example2.py [--quick | --paper] --out DIR`.

import sys

import numpy as np
from mpi4py import MPI

from dolfinx_lod.coefficients import (
    battery_capacity,
    battery_family,
    battery_layers,
    battery_source,
)
from dolfinx_lod.experiments import (
    Example,
    example_arguments,
    run_demo,
    run_example,
    sized_example,
)

# Problem sizes of the modes (training budgets: dolfinx_lod.experiments.TRAINING).
SIZES = {
    "paper": dict(NH=6, n=60, samples=15, tests=25, steps=24),
    "quick": dict(NH=6, n=60, samples=15, tests=5, steps=24),
    "tiny": dict(NH=4, n=20, samples=4, tests=2, steps=4),
}


def make_example(mode: str, network: str | None = None, comm=MPI.COMM_WORLD) -> Example:
    """Example 2 at the sizes of ``mode`` (also used by the benchmarks). Test schedules: a
    held-out p_i drifting with t, p(t) = clip(p_i + 0.2 t, -1, 1)."""
    size = SIZES[mode]
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


def main(argv=None) -> dict:
    args = example_arguments("Paper Example 2 (battery cell)", argv)
    example = make_example(args.mode, args.network)
    summary = run_example(example, args.out, args.cache)
    grids, family, n = example.grids, example.family, example.grids.fine
    if grids.comm.rank == 0:
        from dolfinx_lod.io import write_json
        from dolfinx_lod.plotting import plot_solution_grid

        # Fig. 9: the layout (material index per fine cell) and lambda of the first test case.
        materials = {"CC": 0, "AM": 1, "AC": 2}
        rows = np.vectorize(materials.__getitem__)(battery_layers(np.arange(n)))
        layout = np.repeat(rows[:, None], n, axis=1).astype(float)
        mid = (np.arange(n) + 0.5) / n
        X, Y = np.meshgrid(mid, mid)
        p0 = example.schedules[0](0.0)
        lam = family.a(np.stack([X.ravel(), Y.ravel()]), p0).reshape(n, n)
        summary["figures"]["layout"] = plot_solution_grid(
            args.out / "fig9_battery_layout.png",
            [("", [("layers: 0 CC, 1 AM, 2 AC", layout, False), ("lambda", lam, True)])],
            grids.domain,
        ).name
        write_json(args.out / "summary.json", summary)
    return summary


if __name__ == "__main__":
    sys.exit(run_demo(main, sys.argv[1:]))
