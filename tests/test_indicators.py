"""Coefficient-only error indicators (Hellman–Keil–Målqvist) against patch solves."""

import numpy as np
import pytest
from helpers import rough_coefficient

import dolfinx_lod as dl
from dolfinx_lod.indicators import element_stiffness, segment_layout

pytestmark = pytest.mark.mpi


def _energy_ratio(N: np.ndarray, D: np.ndarray) -> float:
    """max_w (w^T N w) / (w^T D w) over w modulo constants, as a square root."""
    m = D.shape[0]
    Q = np.linalg.qr(np.vstack([np.ones(m), np.eye(m)[: m - 1]]).T)[0][:, 1:]
    Linv = np.linalg.inv(np.linalg.cholesky(Q.T @ D @ Q))
    return float(np.sqrt(max(np.linalg.eigvalsh(Linv @ Q.T @ N @ Q @ Linv.T).max(), 0.0)))


def _quadratic(space, form, X):
    """X^T A X for the DOLFINx-assembled matrix of ``form`` (X in local vertex order)."""
    return space.quadratic(form, X[space.dof_vertex])


def test_element_stiffness_matches_dolfinx_assembly(comm):
    """sum_c a_c V_c^T K V_c over the segments equals the assembled patch stiffness (h_x != h_y)."""
    g = dl.create_nested_grids(comm.Split(comm.rank), (4, 2), (16, 8))
    basis = dl.MultiscaleBasis(g, 1)
    patch = basis.patches[0]
    space = basis.patch_problem(0).space
    layout = segment_layout(patch.configuration.shape, tuple(g.refinement))
    rng = np.random.default_rng(0)
    a = rng.uniform(0.1, 2.0, layout.cells.size)
    X = rng.standard_normal((space.dof_vertex.size, 3))
    K = element_stiffness(g.h)
    V = X[layout.vertices]
    ours = np.einsum("tc,tcim,ij,tcjn->mn", a[layout.cells], V, K, V)
    space.set_cells(space.a, a)
    assert np.allclose(ours, _quadratic(space, space.S_form, X), rtol=1e-12, atol=1e-12)
    basis.destroy()


def test_coefficient_indicator_zero_grows_and_bounds_the_corrector_change(comm):
    """e_T = 0 where a did not change on the patch, grows with the change, and bounds both the
    corrector-based indicator and the measured energy change of the correctors."""
    g = dl.create_nested_grids(comm.Split(comm.rank), 6, 48)
    basis = dl.MultiscaleBasis(g, 1)
    A = rough_coefficient(48, seed=4)
    basis.update(A)
    indicator = basis.coefficient_indicator()
    a0 = basis.local_coefficient(A)
    assert np.all(indicator.indicators(a0) == 0.0)
    near = np.zeros_like(A, dtype=bool)
    near[8:14, 3:12] = True  # fine cells (y, x) inside coarse cells (1, 0) and (1, 1)
    results = []
    for eps in (0.01, 0.1, 1.0):
        a_new = basis.local_coefficient(np.where(near, A * (1 + eps), A))
        results.append(indicator.indicators(a_new))
    e_small, e_mid, e_big = results
    touched = e_big > 0
    assert 0 < touched.sum() < len(basis.patches)
    assert np.all(e_small[touched] < e_mid[touched]) and np.all(e_mid[touched] < e_big[touched])
    assert np.all(e_small[~touched] == 0.0)
    checked = 0
    for i in np.flatnonzero(touched):
        problem = basis.patch_problem(i)
        space = problem.space
        a_ref, C_ref = basis.reference[i], basis.correctors[i]
        a_new = np.where(near, A * 2.0, A).ravel()[basis.patches[i].fine_cell_keys(g)]
        e_corr = problem.indicator(a_new, a_ref, C_ref)  # sets space.a = a_new
        D_T = _quadratic(space, problem._indicator_forms[2], problem.vertex_hats)
        dC = problem.solve(a_new) - C_ref  # assembles S_full for a_new
        measured = _energy_ratio(_quadratic(space, space.S_form, dC), D_T)
        assert 0 < measured <= e_corr * (1 + 1e-9) <= e_big[i] * (1 + 1e-9), (i, measured)
        checked += 1
    assert checked >= 4
    basis.destroy()


def test_coefficient_indicator_recomputes_at_least_the_corrector_one(comm):
    """The coefficient indicator bounds the corrector one, so at the same tol it recomputes a
    superset of the patches; both stay as accurate as the full update on local changes."""
    from test_parabolic import corner_stack

    from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic

    g = dl.create_nested_grids(comm, 8, 64)
    schedule = CoefficientSchedule.from_stack(corner_stack(64, 3, 16))
    runs = {
        ind: run_parabolic(
            g, schedule, 0.5, 3, 2, update="selective", tol=0.1, indicator=ind, reference=True
        )  # fmt: skip
        for ind in ("coefficient", "correctors")
    }
    counts = {k: [r["recomputed_patches"] for r in v.records[1:]] for k, v in runs.items()}
    assert all(a >= b for a, b in zip(counts["coefficient"], counts["correctors"], strict=True))
    assert sum(counts["coefficient"]) < 16 * 2  # fewer than the 16 patches touched per step
    full = run_parabolic(g, schedule, 0.5, 3, 2, reference=True).final_errors["l2"]
    for run in runs.values():
        assert run.final_errors["l2"] <= 1.5 * full
        run.basis.destroy()
