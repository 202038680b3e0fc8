# # Example 1: oscillatory coefficient family (paper §4.1)
#
# Unit square, H = 1/6, h = 1/36, l = 1, f = 1, u0 = 0, T = 1, tau = 1/24. The coefficient is
# the family of the paper's published code (`dolfinx_lod.coefficients.cont_family`):
# a_p = 0.01 + 0.99 s, s the min-max rescaled
# g = cos(N x^2 y - 2 N x^2) sin(N/2 y^3 x + N x^2) + cos(N x^3 - 2 N y^2), N = 100 / p.
#
# 1. Offline: corrector networks for all patches are trained on K parameters p in [0.01, 1]
#    (Deep Ritz, as `dolfinx-lod train`), cached by their settings: K = 40 in --paper, K = 160
#    in --quick (this family changes its fine-scale pattern completely with p, and the learned
#    correctors improve with K: bench/bench_training.py).
# 2. Online: for every test schedule p(t) (a held-out parameter moving with t, never a training
#    value) the backward Euler loop runs with the classical correctors (LOD), the learned ones
#    (LOD-ANN) and the mean training corrector (baseline), next to the fine FEM.
#
# Run: `mpirun -n 2 python demos/example1.py [--quick | --paper] --out DIR`. Writes
# `DIR/summary.json` and the figures of the paper's Figs. 3-8.

import sys

from dolfinx_lod.paper.examples import example1
from dolfinx_lod.paper.experiments import example_arguments, run_demo, run_example


def main(argv=None) -> dict:
    """Run Example 1 with the command line ``argv``; returns the summary."""
    args = example_arguments("Paper Example 1 (oscillatory coefficients)", argv)
    return run_example(example1(args.mode, args.network), args.out, args.cache)


if __name__ == "__main__":
    sys.exit(run_demo(main, sys.argv[1:]))
