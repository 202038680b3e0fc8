import numpy as np
import pytest
from helpers import rough_coefficient

import dolfinx_lod as dl
from dolfinx_lod.patches import make_patch
from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic

pytestmark = pytest.mark.mpi


def constant_in_time(A):
    return CoefficientSchedule(lambda m, t: (A, None))


def corner_stack(n, steps, corner, seed=0):
    """A rough coefficient that changes every step only in the lower-left corner x corner cells."""
    rng = np.random.default_rng(seed)
    stack = np.repeat(rng.uniform(0.01, 1.0, (n, n))[None], steps, axis=0)
    for m in range(steps):
        stack[m, :corner, :corner] = rng.uniform(0.01, 1.0, (corner, corner))
    return stack


def test_time_independent_coefficient_matches_elliptic_lod(comm):
    g = dl.create_nested_grids(comm, 8, 64)
    A = rough_coefficient(64)
    elliptic = dl.solve_elliptic(g, A, 2, reference=True).errors["l2"]
    res = run_parabolic(g, constant_in_time(A), T=1.0, steps=4, layers=2, reference=True)
    errors = [r["rel_l2_error"] for r in res.records]
    assert errors[-1] <= 1.2 * elliptic and max(errors) <= 2 * elliptic, (errors, elliptic)
    # The basis is computed once and reused.
    assert [r["recomputed_patches"] for r in res.records] == [64, 0, 0, 0]


def test_backward_euler_is_first_order(comm):
    g = dl.create_nested_grids(comm, 4, 16)
    A = rough_coefficient(16, seed=2)

    def u0(x):
        return np.sin(np.pi * x[0]) * np.sin(np.pi * x[1])

    final = {}
    for steps in (4, 8, 16, 256):
        res = run_parabolic(g, constant_in_time(A), 0.1, steps, 1, u0=u0, reference=True)
        final[steps] = (res.u_h.x.petsc_vec.copy(), res.u_ms.x.petsc_vec.copy())
    for k in (0, 1):  # FEM and LOD
        err = [(final[s][k] - final[256][k]).norm() for s in (4, 8, 16)]
        assert 1.7 < err[0] / err[1] < 2.3 and 1.7 < err[1] / err[2] < 2.3, err


def test_selective_update(comm):
    """tol = 0 equals the full recompute; only patches touching the changed corner are
    recomputed; a positive tol recomputes fewer with nearly the same solution."""
    NH, n, layers, steps, corner = 8, 64, 2, 3, 16
    g = dl.create_nested_grids(comm, NH, n)
    schedule = CoefficientSchedule.from_stack(corner_stack(n, steps, corner))
    runs = {
        key: run_parabolic(
            g, schedule, 0.5, steps, layers, update=key[0], tol=key[1], reference=True
        )
        for key in (("full", 0.0), ("selective", 0.0), ("selective", 0.5))
    }
    full = runs["full", 0.0].u_ms.x.petsc_vec
    sel = runs["selective", 0.0].u_ms.x.petsc_vec
    assert (sel - full).norm() <= 1e-12 * full.norm()
    # Patches N^l(T) that intersect the changed corner (coarse cells [0, 2)^2).
    touched = sum(
        1
        for T in range(NH * NH)
        if make_patch(T, NH, layers).lo[0] * (n // NH) < corner
        and make_patch(T, NH, layers).lo[1] * (n // NH) < corner
    )
    assert touched == 16
    counts = [r["recomputed_patches"] for r in runs["selective", 0.0].records]
    assert counts == [NH * NH] + [touched] * (steps - 1)
    assert [r["recomputed_patches"] for r in runs["full", 0.0].records] == [NH * NH] * steps
    loose = runs["selective", 0.5]
    assert sum(r["recomputed_patches"] for r in loose.records[1:]) < touched * (steps - 1)
    assert abs(loose.final_errors["l2"] - runs["full", 0.0].final_errors["l2"]) < 0.01


def test_indicator_scales_with_the_change(comm):
    g = dl.create_nested_grids(comm.Split(comm.rank), 4, 16)
    basis = dl.MultiscaleBasis(g, 1)
    A = rough_coefficient(16, seed=3)
    basis.update(A)
    i = 0
    problem = basis.patch_problem(i)
    a_ref, C = basis.reference[i], basis.correctors[i]
    e = [problem.indicator(a_ref * (1 + eps), a_ref, C) for eps in (0.0, 0.01, 0.1)]
    assert e[0] == 0.0 and 0 < e[1] < e[2]
    # a -> (1 + eps) a: weight eps^2 a / (1 + eps), energy (1 + eps) a: e_T ~ eps / (1 + eps).
    assert e[2] / e[1] == pytest.approx(10 * 1.01 / 1.1, rel=1e-9)
    basis.destroy()


def test_capacity_rescales_time(comm):
    """c = 2 up to T = 2 is the same discrete problem as c = 1 up to T = 1."""
    g = dl.create_nested_grids(comm, 4, 32)
    schedule = CoefficientSchedule.from_stack(corner_stack(32, 3, 8, seed=4))
    ref = run_parabolic(g, schedule, 1.0, 3, 1, reference=True)
    for capacity in (2.0, np.full((32, 32), 2.0)):
        res = run_parabolic(g, schedule, 2.0, 3, 1, capacity=capacity, reference=True)
        for u in ("u_ms", "u_h"):
            x, y = getattr(res, u).x.petsc_vec, getattr(ref, u).x.petsc_vec
            assert (x - y).norm() <= 1e-10 * y.norm()


def test_family_schedule_and_petrov_galerkin(comm):
    g = dl.create_nested_grids(comm, 4, 32)

    def a(x, p):
        return 1.0 + 0.9 * np.sin(40 * x[0] + p) * np.cos(30 * x[1])

    schedule = CoefficientSchedule.from_family(a, lambda t: 10 * t)
    f = lambda t, x: 1 + x[0] * t  # noqa: E731
    gal = run_parabolic(g, schedule, 0.3, 3, 2, source=f, reference=True)
    pg = run_parabolic(g, schedule, 0.3, 3, 2, method="petrov-galerkin", source=f, reference=True)
    assert all(r["recomputed_patches"] == 16 for r in gal.records)
    assert gal.final_errors["l2"] < 0.1 and pg.final_errors["l2"] < 0.1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"T": 0.0}, "final time T must be > 0"),
        ({"T": -1.0}, "final time T must be > 0"),
        ({"steps": 4}, "coefficient stack has 3 entries but steps M = 4"),
        ({"steps": 0}, "steps M must be an integer >= 1"),
        ({"capacity": -1.0}, "capacity c must be > 0"),
        ({"capacity": np.zeros((16, 16))}, "capacity c must be > 0"),
        ({"update": "sometimes"}, "update must be one of"),
        ({"update": "selective", "tol": -1.0}, "tol must be >= 0"),
        ({"layers": 0}, "layers l must be an integer >= 1"),
        ({"source": np.nan}, "source f must be"),
    ],
)
def test_bad_input_raises_before_stepping(comm, kwargs, message):
    g = dl.create_nested_grids(comm, 4, 16)
    args = {"T": 1.0, "steps": 3, "layers": 1, **kwargs}
    calls = []
    with pytest.raises(ValueError, match=message):
        run_parabolic(
            g,
            CoefficientSchedule.from_stack(np.ones((3, 16, 16))),
            observer=lambda *a: calls.append(a),
            **args,
        )
    assert not calls


@pytest.mark.parametrize("shape", [(16, 16), (3, 16, 0), (3, 4)])
def test_bad_stack_shape(shape):
    with pytest.raises(ValueError, match="coefficient stack"):
        CoefficientSchedule.from_stack(np.ones(shape))


def test_bad_coefficient_at_a_later_step_raises_everywhere(comm):
    g = dl.create_nested_grids(comm, 4, 16)
    stack = np.ones((3, 16, 16))
    stack[2, 5, 5] = -1.0
    with pytest.raises(ValueError, match="coefficient at step 3 must be > 0"):
        run_parabolic(g, CoefficientSchedule.from_stack(stack), 1.0, 3, 1)
