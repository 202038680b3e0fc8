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


def negative_eigenvalues(A: PETSc.Mat) -> int:
    """Number of negative eigenvalues of the symmetric part (A + A^T) / 2 of a small (coarse)
    matrix: by Sylvester's law of inertia the negative pivots of its LDL^T factorization (MUMPS
    Cholesky, INFOG(12), the root node factored by MUMPS itself so that every pivot counts).
    Zero if and only if the symmetric part is positive semi-definite up to null pivots, i.e. A
    is coercive when also nonsingular. Collective (the same count on every rank)."""
    S = A.transpose(PETSc.Mat())  # a new matrix (without an argument: in place)
    S.axpy(1.0, A, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
    S.scale(0.5)
    S.setOption(PETSc.Mat.Option.SYMMETRIC, True)
    pc = PETSc.PC().create(A.getComm())
    pc.setOperators(S)
    pc.setType("cholesky")
    pc.setFactorSolverType("mumps")
    pc.setFactorSetUpSolverType()
    F = pc.getFactorMatrix()
    F.setMumpsIcntl(13, 1)  # no ScaLAPACK root: its negative pivots would not be counted
    pc.setUp()
    count = int(F.getMumpsInfog(12))
    pc.destroy()
    S.destroy()
    return count
