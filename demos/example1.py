# # Example 1: oscillatory coefficient family (paper §4.1)
#
# Unit square, H = 1/6, h = 1/36, l = 1, f = 1, u0 = 0, T = 1, tau = 1/24. The coefficient is
# the family of the paper's published code (`dolfinx_lod.coefficients.cont_family`) with values
# in [alpha, 1]: a_p = alpha + (1 - alpha) s, s the min-max rescaled
# g = cos(N x^2 y - 2 N x^2) sin(N/2 y^3 x + N x^2) + cos(N x^3 - 2 N y^2), N = 100 / p.
# `--alpha 0.1` (default) is the paper's text ("oscillations between alpha = 0.1 and
# beta = 1"), `--alpha 0.01` its published code.
#
# 1. Offline: corrector networks for all patches are trained on the paper's K = 40 parameters
#    p in [0.01, 1] (Deep Ritz), cached by their settings: the coefficient-aware CNN trained
#    from the coefficients alone (default, docs/lod-ann.md), or with --paper the paper's MLP
#    128 x 8 with its optimizer (checkpointed; `--epochs E` sets a budget, a rerun with more
#    epochs resumes).
# 2. Online: for each of the 25 test schedules p(t) = p_0 (1 + 0.2 t) (a held-out p_0; no time
#    step ever uses a training value, summary.json `settings.schedule_clearance` > 0) the
#    backward Euler loop runs with the classical correctors (LOD), the learned ones (LOD-ANN),
#    the mean training corrector (baseline) and none, next to the fine FEM.
#
# Run: `mpirun -n 2 python demos/example1.py [--quick | --paper] [--alpha 0.1|0.01] --out DIR`.
# Writes `DIR/summary.json` and the figures of the paper's Figs. 3-8.

import sys

from dolfinx_lod.paper.examples import example1
from dolfinx_lod.paper.experiments import example_arguments, run_demo, run_example


def main(argv=None) -> dict:
    """Run Example 1 with the command line ``argv``; returns the summary."""
    args = example_arguments("Paper Example 1 (oscillatory coefficients)", argv, alpha=True)
    example = example1(args.mode, args.network, alpha=args.alpha, epochs=args.epochs)
    return run_example(example, args.out, args.cache)


if __name__ == "__main__":
    sys.exit(run_demo(main, sys.argv[1:]))
