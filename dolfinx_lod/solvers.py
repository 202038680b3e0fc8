"""PETSc solvers of the fine system (CG + GAMG) and of the coarse systems (MUMPS LU), each with
its options prefix; options in the database override the defaults."""

from __future__ import annotations

from petsc4py import PETSc


def fine_solver(
    A: PETSc.Mat, rtol: float = 1e-12, petsc_options_prefix: str = "lod_fine_"
) -> PETSc.KSP:
    """CG + GAMG for an SPD fine matrix; options from the database with
    ``petsc_options_prefix`` override these defaults. The caller owns the KSP. Collective."""
    ksp = PETSc.KSP().create(A.getComm())
    ksp.setOptionsPrefix(petsc_options_prefix)
    ksp.setOperators(A)
    ksp.setType("cg")
    ksp.getPC().setType("gamg")
    ksp.setTolerances(rtol=rtol, atol=0.0, max_it=10000)
    ksp.setFromOptions()
    return ksp


def coarse_solver(K: PETSc.Mat, petsc_options_prefix: str = "lod_coarse_") -> PETSc.KSP:
    """Direct solver (MUMPS LU) for the small coarse matrix; options from the database with
    ``petsc_options_prefix`` override these defaults. The caller owns the KSP. Collective."""
    ksp = PETSc.KSP().create(K.getComm())
    ksp.setOptionsPrefix(petsc_options_prefix)
    ksp.setOperators(K)
    ksp.setType("preonly")
    ksp.getPC().setType("lu")
    ksp.getPC().setFactorSolverType("mumps")
    ksp.setFromOptions()
    return ksp


def solve_checked(ksp: PETSc.KSP, b: PETSc.Vec, x: PETSc.Vec) -> None:
    """ksp.solve(b, x), raising RuntimeError (on all ranks) if it did not converge."""
    ksp.solve(b, x)
    if ksp.getConvergedReason() <= 0:
        raise RuntimeError(
            f"{ksp.getOptionsPrefix()} solver did not converge (reason {ksp.getConvergedReason()})"
        )


def solve_coarse(K: PETSc.Mat, b: PETSc.Vec) -> PETSc.Vec:
    """Solve the coarse system K U = b with :func:`coarse_solver`. Collective."""
    ksp = coarse_solver(K)
    U = K.createVecRight()
    solve_checked(ksp, b, U)
    ksp.destroy()
    return U
