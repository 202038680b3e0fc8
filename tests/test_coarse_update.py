"""Incremental Galerkin coarse matrix and the fair FEM yardstick (preconditioner reuse)."""

import numpy as np
import pytest
from helpers import rough_coefficient
from petsc4py import PETSc

import dolfinx_lod as dl
from dolfinx_lod.lod import FineSystem, coarse_matrix
from dolfinx_lod.schedule import CoefficientSchedule, StepCoefficient
from dolfinx_lod.solvers import fine_solver, solve_checked
from dolfinx_lod.steppers import FEMStepper, GalerkinStepper

pytestmark = pytest.mark.mpi


def local_changes(n: int, steps: int) -> np.ndarray:
    """A rough coefficient with one small block changed per step (a different one each step),
    and the same coefficient again in the last step."""
    A = rough_coefficient(n, seed=6)
    stack = [A]
    for m in range(1, steps - 1):
        B = stack[-1].copy()
        B[4 * m : 4 * m + 4, 2 * m : 2 * m + 6] *= 3.0
        stack.append(B)
    stack.append(stack[-1].copy())
    return np.array(stack)


def test_incremental_galerkin_equals_the_full_product(comm):
    """After selective updates K = B^T (Mc/tau + S) B equals a fresh product to 1e-12; when
    nothing was recomputed and a is unchanged, no product runs and K is unchanged."""
    g = dl.create_nested_grids(comm, 8, 64)
    stack = local_changes(64, 4)
    tau = 0.1
    stepper = GalerkinStepper(g, 2, tau, update="selective", tol=0.0)
    state = StepCoefficient(g, CoefficientSchedule.from_stack(stack))
    a = dl.coefficients.coefficient_function(g, stack[0])
    op = stepper.operator
    for m in (1, 2, 3, 4):
        state.advance(m, m * tau)
        before = (op.products, op.updates)
        K_before = op.K.copy() if op.K is not None else None
        stepper.step(state, m * tau)
        a.x.array[:] = state.function().x.array
        fine = FineSystem(g, a)
        A = fine.S.copy()
        A.axpy(1.0 / tau, fine.Mc, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
        ref = coarse_matrix(g, A, stepper.basis.matrix())
        D = op.K.copy()
        D.axpy(-1.0, ref, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
        assert D.norm() <= 1e-12 * ref.norm(), m
        recomputed = stepper.basis.num_recomputed
        if m == 1:
            assert (op.products, op.updates) == (1, 0)
        elif m in (2, 3):
            assert 0 < recomputed <= 64 // 4  # the incremental update's limit
            assert (op.products, op.updates) == (before[0], before[1] + 1)
        else:  # a unchanged: nothing recomputed, no product, K the same matrix values
            assert recomputed == 0 and (op.products, op.updates) == before
            K_before.axpy(-1.0, op.K)
            assert K_before.norm() == 0.0
        for obj in [A, ref, D, fine] + ([K_before] if K_before is not None else []):
            obj.destroy()
    stepper.destroy()


def test_fem_stepper_reuses_its_preconditioner(comm):
    """One preconditioner set-up per change of a; the solution equals a tight direct-style
    solve (rtol 1e-12, fresh solver each step) to the stepper's tolerance."""
    g = dl.create_nested_grids(comm, 4, 32)
    A = rough_coefficient(32, seed=7)
    stack = np.array([A, A, A, 2 * A, 2 * A])
    tau = 0.05
    fem = FEMStepper(g, tau, u0=lambda x: np.sin(np.pi * x[0]) * np.sin(np.pi * x[1]))
    state = StepCoefficient(g, CoefficientSchedule.from_stack(stack))
    u = fem.u.x.petsc_vec.copy()
    for m in range(1, 6):
        state.advance(m, m * tau)
        fem.step(state, m * tau)
        assert fem.setups == (1 if m < 4 else 2)
        fine = FineSystem(g, state.function())
        K = fine.S.copy()
        K.axpy(1.0 / tau, fine.Mc, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
        b = K.createVecLeft()
        fine.Mc.mult(u, b)
        b.scale(1.0 / tau)
        b.axpy(1.0, fine.F)
        ksp = fine_solver(K, rtol=1e-12)
        solve_checked(ksp, b, u)
        assert (fem.u.x.petsc_vec - u).norm() <= 1e-6 * u.norm(), m
        for obj in (K, b, ksp, fine):
            obj.destroy()
    fem.destroy()
