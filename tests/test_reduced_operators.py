"""Learned local operators in a reduced space (dolfinx_lod.neural.reduced_operators): the exact
element part against the patch problem's own assembly, and the fit against the classical
operators at held-out parameters."""

import numpy as np
import pytest
import torch
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.inputs import fine_cell_midpoints
from dolfinx_lod.neural.element_part import ElementPart, element_weights
from dolfinx_lod.neural.operators import (
    LearnedOperators,
    fit_operators,
    max_patch_vertices,
    operator_samples,
    pack_operators,
)
from dolfinx_lod.neural.provider import problem_metadata
from dolfinx_lod.neural.reduced_operators import ReducedOperators

#: Held-out relative Frobenius error of K_T and M_T (on the entries the coarse system uses)
#: that the default fit ("reduced") stays below on the battery family, (1/4, 1/32, 1), 24
#: training parameters, 1500 epochs; measured 9.5e-3 (K) and 2.9e-3 (M) (the MLP on all
#: entries: 1.1e-2 and 3.4e-3).
HELD_OUT_BOUND = 2e-2


@pytest.fixture(scope="module")
def battery():
    torch.set_num_threads(1)
    g = dl.create_nested_grids(MPI.COMM_SELF, 4, 32)
    family = dl.coefficients.family("battery", 32)
    basis = MultiscaleBasis(g, 1, capacity=1.0)
    yield g, family, basis
    basis.destroy()


def test_element_weights_integrate_hats():
    """sum_c W_c is the Q1 element stiffness of a H_x x H_y rectangle (closed form), and every
    row of every W_c sums to zero (grad of sum_j Lambda_j = 0)."""
    Hx, Hy = 0.5, 0.25
    W = element_weights([Hx, Hy], [3, 5])
    assert W.shape == (15, 4, 4)
    # Q1 stiffness on [0, Hx] x [0, Hy], corners (0,0), (1,0), (0,1), (1,1).
    a, b = Hy / Hx / 6, Hx / Hy / 6
    ref = np.array(
        [
            [2 * a + 2 * b, -2 * a + b, a - 2 * b, -a - b],
            [-2 * a + b, 2 * a + 2 * b, -a - b, a - 2 * b],
            [a - 2 * b, -a - b, 2 * a + 2 * b, -2 * a + b],
            [-a - b, a - 2 * b, -2 * a + b, 2 * a + 2 * b],
        ]
    )
    assert np.allclose(W.sum(axis=0), ref, rtol=1e-13, atol=1e-14)
    assert np.abs(W.sum(axis=2)).max() < 1e-14


def test_element_part_equals_patch_assembly(battery):
    """P_T(a) of ElementPart equals the patch problem's own int_T a grad Lambda_j . grad
    Lambda_i (its local operators for zero correctors) on the entries the coarse system uses,
    for every patch (boundary and interior)."""
    g, family, basis = battery
    size = max_patch_vertices(g.coarse_sizes, 1, g.dim)
    element = ElementPart(g, basis.patches, size)
    p = family.test_parameters(1, seed=3)[0]
    P, mean = element.parts(family, p)
    ref = []
    for patch in basis.patches:
        a = family.a(fine_cell_midpoints(g, patch.fine_cell_keys(g)), p)
        problem = basis.patch_problems.problem(patch.configuration)
        C = problem.solve(a)
        ref.append(problem.local_operators(np.zeros_like(C), np.ones(a.size)))
    R = pack_operators(ref, size, 4) * element.kept
    half = size * 4
    assert (
        np.abs(P[:, :half] * element.kept[:, :half] - R[:, :half]).max() < 1e-10 * np.abs(R).max()
    )
    assert element.kept[:, :half].any(axis=1).all()  # every patch keeps entries
    assert np.all(mean >= 1.0) and np.all(mean <= 398.65)


def test_reduced_fit_held_out(battery, tmp_path):
    """The default fit at 24 training parameters: held-out error of K_T and M_T below
    HELD_OUT_BOUND, far below the spread of the operators over p (a fit that ignored p would
    not pass), the row sums K_T 1 = 0 of the classical operators kept exactly, and the file
    written and read back gives the same operators."""
    g, family, basis = battery
    train, test = family.training_parameters(24), family.test_parameters(4, seed=11)
    ops, _ = fit_operators(basis, family, train, epochs=1500)
    assert isinstance(ops, ReducedOperators)
    size = max_patch_vertices(g.coarse_sizes, 1, g.dim)
    kept, half = ops.element.kept, size * 4
    truth = operator_samples(basis, family, test) * kept[:, None]
    pred = np.stack([ops.evaluate(p) for p in test], axis=1)
    spread = truth - truth.mean(axis=1, keepdims=True)
    for part in (slice(0, half), slice(half, None)):
        error = np.linalg.norm(pred[..., part] - truth[..., part])
        assert error < HELD_OUT_BOUND * np.linalg.norm(truth[..., part])
        assert error < 0.2 * np.linalg.norm(spread[..., part])
    K = pred[..., :half].reshape(len(pred), len(test), size, 4)
    full = kept[:, :half].reshape(len(pred), 1, size, 4).all(axis=3)  # rows with all corners
    assert full.any() and np.abs(K.sum(axis=3) * full).max() < 1e-9 * np.abs(K).max()
    ops.save(MPI.COMM_SELF, tmp_path / "ops.pt", problem_metadata(g, 1, family))
    back = LearnedOperators.load(tmp_path / "ops.pt", g, 1, [p.cell for p in basis.patches], family)
    assert np.array_equal(back.evaluate(test[0]), ops.evaluate(test[0]))
