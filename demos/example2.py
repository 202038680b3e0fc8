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
# Offline: networks trained on the paper's 15 parametrizations (Deep Ritz, cached; the CNN by
# default, --paper the paper's MLP and optimizer, `--epochs E` a budget). Online: 25 held-out
# parameters moving with t, p(t) = clip(p_0 + 0.2 t, -1, 1); LOD, LOD-ANN, the mean training
# corrector and none next to the fine FEM.
#
# Run: `mpirun -n 2 python demos/example2.py [--quick | --paper] --out DIR`.

import sys

from dolfinx_lod.paper.examples import example2
from dolfinx_lod.paper.experiments import example_arguments, run_demo, run_example


def main(argv=None) -> dict:
    """Run Example 2 with the command line ``argv``; returns the summary."""
    args = example_arguments("Paper Example 2 (battery cell)", argv)
    example = example2(args.mode, args.network, epochs=args.epochs)
    return run_example(example, args.out, args.cache)


if __name__ == "__main__":
    sys.exit(run_demo(main, sys.argv[1:]))
