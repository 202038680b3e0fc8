"""Learned Petrov–Galerkin local operators: fitted to the classical ones, and an LOD step that
uses them reads no coefficient and computes correctors only for the reconstruction."""

import numpy as np
import pytest
import torch
from test_neural import SMOOTH

import dolfinx_lod as dl
from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.coefficients import Family
from dolfinx_lod.lod import relative_errors
from dolfinx_lod.neural.operators import FamilyCorrectors, OperatorProvider, fit_operators
from dolfinx_lod.timestepping import CoefficientSchedule, LODStepper, StepCoefficient


class CountingCorrectors(FamilyCorrectors):
    """Family correctors that count the patches they were asked for."""

    count = 0

    def correctors(self, patches, a_patches=None, p=None, progress=False):
        self.count += len(patches)
        return super().correctors(patches, a_patches, p, progress)


@pytest.fixture(scope="module")
def fitted(comm):
    torch.set_num_threads(1)
    g = dl.create_nested_grids(comm, 4, 32)
    basis = MultiscaleBasis(g, 1, capacity=1.0)
    nets, loss = fit_operators(basis, SMOOTH, SMOOTH.training_parameters(9), epochs=1500)
    yield g, basis, nets, loss
    basis.destroy()


@pytest.mark.mpi
def test_learned_operators_match_the_classical_ones(fitted):
    g, basis, nets, loss = fitted
    assert loss < 1e-3
    p = np.array([0.37])  # held out
    basis.update(SMOOTH.a, p, assemble=False)
    learned = OperatorProvider(basis.patch_problems, nets).local_operators(basis.patches, p)
    for (K, M), (K_ref, M_ref) in zip(learned, basis.operators, strict=True):
        assert np.abs(K - K_ref).max() <= 2e-2 * np.abs(K_ref).max()
        assert np.abs(M - M_ref).max() <= 2e-2 * np.abs(M_ref).max()


@pytest.mark.mpi
def test_step_with_learned_operators_reads_no_coefficient(fitted):
    g, basis, nets, _ = fitted
    calls = []

    def a(x, p):
        calls.append(p)
        return SMOOTH.a(x, p)

    family = Family("smooth-counted", SMOOTH.low, SMOOTH.high, a)
    counting = CountingCorrectors(basis.patch_problems, SMOOTH)
    schedule = CoefficientSchedule.from_family(family.a, lambda t: np.array([0.2 + t]))
    learned = LODStepper(
        g, 1, 0.1, "petrov-galerkin", provider=OperatorProvider(counting, nets), name="ann"
    )
    classical = LODStepper(g, 1, 0.1, "petrov-galerkin")
    state = StepCoefficient(g, schedule)
    for m in (1, 2, 3):
        state.advance(m, 0.1 * m)
        learned.step(state, 0.1 * m)
        assert learned.touched_fine["fine_assemblies"] == (1 if m == 1 else 0)
    assert calls == [] and counting.count == 0  # no coefficient, no corrector so far
    u = learned.solution()
    assert counting.count == len(learned.basis.patches)  # the correctors of the last p only
    for m in (1, 2, 3):
        state.advance(m, 0.1 * m)
        classical.step(state, 0.1 * m)
    ref = classical.solution()
    M = learned.fine.M
    assert relative_errors(u.x.petsc_vec, ref.x.petsc_vec, M, M)["l2"] < 2e-2
    for stepper in (learned, classical):
        stepper.destroy()
