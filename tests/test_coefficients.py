"""The coefficient library: paper families, checkerboards, laminates, log-normal fields."""

import dolfinx.fem
import dolfinx.fem.petsc
import numpy as np
import pytest
import ufl

import dolfinx_lod as dl
from dolfinx_lod.coefficients import (
    BATTERY_MATERIALS,
    battery_capacity,
    battery_family,
    checkerboard_family,
    cont_family,
    laminate_family,
    laminate_homogenized,
    lognormal_family,
)

pytestmark = pytest.mark.mpi


def midpoints(n):
    m = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(m, m)
    return np.stack([X.ravel(), Y.ravel()])


def test_paper_families():
    a = cont_family(36).a(midpoints(36), 0.3)
    assert a.min() == pytest.approx(0.01) and a.max() == pytest.approx(1.0)
    text = cont_family(36, low=0.1)  # the paper's text: alpha = 0.1, beta = 1
    b = text.a(midpoints(36), 0.3)
    assert b.min() == pytest.approx(0.1) and b.max() == pytest.approx(1.0)
    assert np.allclose((b - 0.1) / 0.9, (a - 0.01) / 0.99)  # the same pattern, rescaled
    assert text.name == "cont0.1" and cont_family(36).name == "cont"  # distinct models/caches
    for low in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match=r"low must be in \(0, 1\)"):
            cont_family(36, low=low)
    lam = battery_family(60).a(midpoints(60), [0.3, -0.2, 0.9, -1.0]).reshape(60, 60)
    assert np.all(lam[0:2] == BATTERY_MATERIALS["CC"]["lambda"])  # bottom rows: CC
    assert np.all(lam[10:12] == BATTERY_MATERIALS["AC"]["lambda"])
    am = lam[2:10]
    assert am.min() >= 1.0 and am.max() <= 5.0 and am.std() > 0.1
    c = battery_capacity(60)(midpoints(60)).reshape(60, 60)
    assert c[5, 0] == 1.0 and c[0, 0] == pytest.approx(2706.77 * 897.8 / (2094.302 * 1010.119))


def test_checkerboard_and_lognormal():
    f = checkerboard_family(64, 4, 100.0)
    a = f.a(midpoints(64), 0.3).reshape(64, 64)
    assert set(np.unique(a)) <= {1.0, 100.0}
    assert 0.2 < (a == 100.0).mean() < 0.4
    assert np.all(a[:4, :4] == a[0, 0])  # constant on blocks
    g = lognormal_family(64, sigma=0.5)
    values = np.log(g.a(midpoints(64), np.random.default_rng(1).normal(size=8)))
    assert 0.1 < values.std() < 1.5
    with pytest.raises(ValueError, match="must divide"):
        checkerboard_family(64, 5, 2.0)


def test_laminate_homogenizes(comm):
    """FEM with a fine laminate approaches FEM with its exact homogenized coefficient
    (harmonic mean across, arithmetic mean along the layers) as the period shrinks."""
    n, contrast, p = 128, 50.0, 1.0
    g = dl.create_nested_grids(comm, 4, n)
    a_xx, a_yy = laminate_homogenized(p, contrast)
    assert a_xx == pytest.approx(2 * 50 / 51) and a_yy == pytest.approx(25.5)
    # Homogenized reference, assembled independently with a constant tensor.
    V = g.V_h
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    A = ufl.as_matrix([[a_xx, 0.0], [0.0, a_yy]])
    fine = dl.FineSystem(g, dl.coefficient_function(g, laminate_family(n, 2, contrast).a, p))
    K = dolfinx.fem.petsc.assemble_matrix(
        dolfinx.fem.form(ufl.inner(A * ufl.grad(u), ufl.grad(v)) * ufl.dx), bcs=[fine.bc]
    )
    K.assemble()
    u0 = fine.solve(K, fine.F)
    errors = []
    for period in (16, 4):
        fam = laminate_family(n, period, contrast)
        sys = dl.FineSystem(g, dl.coefficient_function(g, fam.a, p))
        u_eps = sys.solve(sys.S, sys.F)
        errors.append(dl.lod.relative_errors(u_eps, u0, sys.M, sys.M)["l2"])
    # O(epsilon) convergence: a four times smaller period, about four times smaller error.
    assert errors[0] / errors[1] > 3 and errors[1] < 0.05, errors
