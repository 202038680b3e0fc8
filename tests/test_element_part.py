"""The element part's interpolation of a (dolfinx_lod.neural.element_part): exact for a
family affine in p, a held-out error bound on the battery family, the fallback for a field
the training fields do not span, and the online cost independent of the fine mesh."""

import numpy as np
import pytest
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.coefficients import Family
from dolfinx_lod.neural.element_part import CHECKS, ElementPart
from dolfinx_lod.neural.operators import max_patch_vertices
from dolfinx_lod.patches import make_patch

#: Held-out relative Frobenius error of the interpolated element part P~_T against P_T on the
#: battery family, (1/4, 1/32, 1), 24 training parameters, tol 1e-6 (measured 3.1e-5).
BATTERY_BOUND = 1e-4


def element_part(coarse: int, fine: int) -> tuple:
    """The grids and the element part of all patches (l = 1)."""
    g = dl.create_nested_grids(MPI.COMM_SELF, coarse, fine)
    free = ~g.dirichlet_sides
    patches = [make_patch(T, g.coarse_sizes, 1, g.dim, free) for T in range(coarse**2)]
    return g, ElementPart(g, patches, max_patch_vertices(g.coarse_sizes, 1, g.dim))


def two_regions() -> Family:
    """a(x, p) = 1 + p_0 on x < 0.3 and 2 + p_1 sin(3 y) elsewhere: affine in p."""

    def a(x, p):
        left = x[0] < 0.3
        return np.where(left, 1.0 + p[0], 2.0 + p[1] * np.sin(3 * x[1]))

    return Family("two-regions", (0.0, 0.0), (1.0, 1.0), a)


def test_affine_family_exact():
    """A family affine in p: the interpolated element part and mean of a equal the direct
    ones (a on every fine cell) to 1e-12 at held-out p, with no fallback, from at most 3
    points per coarse cell (the fields span 3 functions: 1, the region indicator, sin)."""
    _, element = element_part(4, 32)
    family = two_regions()
    width = element.interpolate(family, family.training_parameters(6))
    assert 1 <= width <= 3
    for p in family.test_parameters(3, seed=5):
        P, mean = element.values(family, p)
        exact = element.exact(family, p)
        assert np.abs(P - exact[:, :-1]).max() < 1e-12 * np.abs(exact[:, :-1]).max()
        assert np.abs(mean - exact[:, -1]).max() < 1e-12 * np.abs(exact[:, -1]).max()
    assert element.fallbacks == 0


def test_battery_held_out_bound():
    """The battery family (a tanh of p, not affine): held-out relative error of P~_T below
    BATTERY_BOUND and a small fraction of the change of P_T over p (the collectors, fixed,
    dominate P_T), no fallback."""
    _, element = element_part(4, 32)
    family = dl.coefficients.family("battery", 32)
    element.interpolate(family, family.training_parameters(24))
    test = family.test_parameters(4, seed=11)
    sums = element.interpolation_error(family, test)
    assert np.sqrt(sums[0] / sums[1]) < BATTERY_BOUND
    assert np.sqrt(sums[2] / sums[3]) < BATTERY_BOUND
    assert sums[4] == 0
    change = element.exact(family, test[0]) - element.exact(family, test[1])
    assert np.sqrt(sums[0] / len(test)) < 0.05 * np.linalg.norm(change[:, :-1])  # 1 % measured


def test_unspanned_field_falls_back():
    """A field the training fields do not span (another family on the same points): every
    coarse cell whose check point misses falls back to the exact element part, so the result
    equals the direct one."""
    _, element = element_part(4, 32)
    element.interpolate(two_regions(), two_regions().training_parameters(6))
    rough = Family("rough", (0.0,), (1.0,), lambda x, p: 1.0 + np.sin(40 * x[0] * x[1]) ** 2)
    P, mean = element.values(rough, [0.5])
    exact = element.exact(rough, [0.5])
    assert element.fallbacks > 0
    assert np.abs(P - exact[:, :-1]).max() < 1e-12 * np.abs(exact[:, :-1]).max()
    assert np.allclose(mean, exact[:, -1], rtol=1e-12)


@pytest.mark.parametrize("fine", [32, 64])
def test_online_points_independent_of_h(fine):
    """The online evaluation reads a at m + CHECKS points per coarse cell (m <= 3 for the affine
    family), the same on a fine mesh twice as fine: the cost does not grow with 1/h."""
    _, element = element_part(4, fine)
    family = two_regions()
    calls = []

    def counted(x, p):
        calls.append(x.shape[1])
        return family.a(x, p)

    width = element.interpolate(family, family.training_parameters(6))
    element.values(Family("counted", family.low, family.high, counted), [0.2, 0.7])
    assert calls == [16 * (width + CHECKS)] and width <= 3


def disc_fields(n: int, params: np.ndarray, growing: bool) -> np.ndarray:
    """A (K, n, n) stack: a disc of a = 1 + 9 p (fixed radius) or of a = 10 whose radius grows
    with p, in a = 1."""
    x, y = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n)
    r = np.hypot(x - 0.45, y - 0.55)
    if growing:
        return np.stack([np.where(r < 0.1 + 0.25 * p, 10.0, 1.0) for p in params])
    return np.stack([1.0 + 9.0 * p * (r < 0.3) for p in params])


@pytest.mark.parametrize("growing", [False, True])
def test_given_samples_interpolation_kept_or_dropped(growing):
    """A family given as samples (params_family): fields affine in p keep the interpolation
    (held-out error at rounding level); a disc whose radius grows with p (new fields not in
    the span of the training ones) has a large held-out error, so the fit drops the
    interpolation with a warning and computes the element part from a on the fine cells."""
    from dolfinx_lod.neural.operators import train_operators
    from dolfinx_lod.samples import params_family

    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    g = dl.create_nested_grids(MPI.COMM_SELF, 4, 32)
    P = np.random.default_rng(2).uniform(0.0, 1.0, 10)
    family = params_family(disc_fields(32, P, growing), P, "disc", box=((0.0,), (1.0,)))
    ops, report = train_operators(g, 1, family, 8, 2, epochs=20)
    info = report["element_interpolation"]
    if growing:
        assert info["error_test"]["P"] > 1e-3 and not info["used"]
        assert "warning" in report and ops.element.points is None
    else:
        assert info["error_test"]["P"] < 1e-12 and info["used"] and "warning" not in report
        assert ops.element.points is not None


def test_padded_interpolation_gives_the_same_values():
    """The file of a fit on several ranks pads each rank's interpolation to the widest one
    (reduced_operators.padded: zero columns of D_T, repeated points): read back, the padded
    interpolation gives the same element part."""
    from dolfinx_lod.neural.reduced_operators import padded

    _, narrow = element_part(4, 32)
    _, wide = element_part(4, 32)
    family, battery = two_regions(), dl.coefficients.family("battery", 32)
    narrow.interpolate(family, family.training_parameters(6))
    wide.interpolate(battery, battery.training_parameters(12))
    states = [
        {f"element.{k}": v for k, v in e.interpolation_state().items()} for e in (narrow, wide)
    ]
    (_, _, state), _ = padded([(None, None, states[0]), (None, None, states[1])])
    assert state["element.D"].shape[2] == wide.D.shape[2] > narrow.D.shape[2]
    _, back = element_part(4, 32)
    back.set_interpolation(state["element.points"].transpose(1, 0, 2), state["element.D"])
    p = family.test_parameters(1, seed=4)[0]
    for ours, theirs in zip(back.values(family, p), narrow.values(family, p), strict=True):
        assert np.allclose(ours, theirs, rtol=1e-13, atol=1e-13)
