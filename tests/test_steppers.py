"""Time steppers without the fine reference: nothing fine-scale solved, the same LOD as the
comparison run, reconstruction B U, and the coarse operators they assemble."""

import numpy as np
import pytest
from helpers import rough_coefficient
from petsc4py import PETSc

import dolfinx_lod as dl
import dolfinx_lod.lod
import dolfinx_lod.steppers
from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.coefficients import coefficient_function
from dolfinx_lod.lod import CoarseProduct, FineSystem, LocalAssembly, coarse_matrix
from dolfinx_lod.timestepping import (
    CoefficientSchedule,
    LODStepper,
    StepCoefficient,
    run_parabolic,
)


def changing(n: int, steps: int) -> CoefficientSchedule:
    """A rough coefficient that changes everywhere at every step."""
    A = rough_coefficient(n, seed=5)
    return CoefficientSchedule.from_stack([A ** (1 + 0.2 * m) for m in range(steps)])


def norm_of_difference(X: PETSc.Mat, Y: PETSc.Mat) -> float:
    D = X.copy()
    D.axpy(-1.0, Y, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
    value = D.norm()
    D.destroy()
    return value


@pytest.mark.mpi
def test_local_petrov_galerkin_operators_equal_global_products(comm):
    """sum_T K_T = P^T S B and sum_T M_T = P^T Mc B (variable capacity) to 1e-12."""
    g = dl.create_nested_grids(comm, 6, 36)
    a = coefficient_function(g, rough_coefficient(36, seed=2))
    c_array = dl.coefficients.random_coefficient(36, 0.5, 2.0, 3)
    c = coefficient_function(g, c_array, name="capacity")
    basis = MultiscaleBasis(g, 1, capacity=c_array)
    B = basis.update(a)
    fine = FineSystem(g, a, 1.0, c)
    local = LocalAssembly(basis)
    for weights, A in (((1.0, 0.0), fine.S), ((0.0, 1.0), fine.Mc)):
        ref = coarse_matrix(g, A, B, basis.P)
        mine = local.assemble(local.create(), *weights, 1.0)
        assert norm_of_difference(mine, ref) <= 1e-12 * ref.norm()
        for obj in (ref, mine):
            obj.destroy()
    fine.destroy()
    basis.destroy()


@pytest.mark.mpi
def test_reused_product_equals_a_fresh_one(comm):
    g = dl.create_nested_grids(comm, 4, 32)
    basis = MultiscaleBasis(g, 1)
    product = CoarseProduct(g)
    for seed in (1, 2, 3):  # the third assembly of B uses its COO plan: a new structure
        a = coefficient_function(g, rough_coefficient(32, seed=seed))
        B = basis.update(a)
        fine = FineSystem(g, a)
        K = product(fine.S, B, version=basis.pattern_version)
        fresh = coarse_matrix(g, fine.S, B)
        assert norm_of_difference(K, fresh) <= 1e-13 * fresh.norm()
        fresh.destroy()
        fine.destroy()
    product.destroy()
    basis.destroy()


@pytest.mark.mpi
@pytest.mark.parametrize("method", ["galerkin", "petrov-galerkin"])
def test_without_reference_nothing_fine_is_solved(comm, monkeypatch, method):
    """The LOD-only run solves no fine system and equals the LOD of the comparison run."""
    g = dl.create_nested_grids(comm, 4, 32)
    schedule = changing(32, 4)
    with_ref = run_parabolic(g, schedule, 0.4, 4, 1, method=method, reference=True)

    def no_fine_solver(*args, **kwargs):
        raise AssertionError("a fine solver was created")

    monkeypatch.setattr(dolfinx_lod.steppers, "fine_solver", no_fine_solver)
    alone = run_parabolic(g, schedule, 0.4, 4, 1, method=method)
    assert alone.u_h is None and "rel_l2_error" not in alone.records[-1]
    x, y = alone.u_ms.x.petsc_vec, with_ref.u_ms.x.petsc_vec
    assert (x - y).norm() <= 1e-12 * y.norm()
    if method == "petrov-galerkin":  # only the load, once: no fine matrix at all
        assert [r["fine_assemblies"] for r in alone.records] == [1, 0, 0, 0]
    for res in (with_ref, alone):
        res.basis.destroy()


@pytest.mark.mpi
@pytest.mark.parametrize("method", ["galerkin", "petrov-galerkin"])
def test_constant_coefficient_steps_are_coarse_only(comm, method):
    g = dl.create_nested_grids(comm, 4, 32)
    A = rough_coefficient(32, seed=8)
    res = run_parabolic(g, CoefficientSchedule.from_stack([A] * 4), 0.4, 4, 1, method=method)
    assert [r["recomputed_patches"] for r in res.records] == [16, 0, 0, 0]
    assert [r["fine_assemblies"] for r in res.records][1:] == [0, 0, 0]
    res.basis.destroy()


@pytest.mark.mpi
@pytest.mark.parametrize("method", ["galerkin", "petrov-galerkin"])
def test_reconstruction_is_B_U(comm, method):
    g = dl.create_nested_grids(comm, 4, 32)
    schedule = changing(32, 2)
    stepper = LODStepper(g, 1, 0.1, method=method, u0=lambda x: np.sin(np.pi * x[0]))
    state = StepCoefficient(g, schedule)
    for m in (1, 2):
        state.advance(m, 0.1 * m)
        stepper.step(state, 0.1 * m)
    u = stepper.solution()
    B = stepper.basis.matrix()
    ref = B.createVecLeft()
    B.mult(stepper.U, ref)
    assert (u.x.petsc_vec - ref).norm() <= 1e-14 * ref.norm()
    assert stepper.solution() is u  # reconstructed once per step
    ref.destroy()
    stepper.destroy()


@pytest.mark.mpi
def test_elliptic_without_reference(comm):
    g = dl.create_nested_grids(comm, 4, 32)
    A = rough_coefficient(32, seed=9)
    for method in ("galerkin", "petrov-galerkin"):
        alone = dl.solve_elliptic(g, A, 1, method=method)
        ref = dl.solve_elliptic(g, A, 1, method=method, reference=True)
        assert alone.u_h is None and alone.errors == {}
        assert "fine_solve" not in alone.timings and ref.errors["l2"] < 0.2
        x, y = alone.u_ms.x.petsc_vec, ref.u_ms.x.petsc_vec
        assert (x - y).norm() <= 1e-12 * y.norm()
        alone.destroy()
        ref.destroy()
