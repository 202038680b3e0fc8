"""Non-homogeneous Dirichlet values and Neumann fluxes (dolfinx_lod.boundary): the LOD error
stays at the level of the homogeneous problem, u_ms = g on the boundary, the same numbers on
any number of ranks, bad data refused by name on every rank."""

import dolfinx.fem
import numpy as np
import pytest
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.coefficients import random_coefficient
from dolfinx_lod.grids import unit_box
from dolfinx_lod.norms import free_stiffness
from dolfinx_lod.parallel import InputError

pytestmark = pytest.mark.mpi


def g_data(x):
    return 1.0 - x[0] / 2 + 0.3 * np.sin(np.pi * x[1])


def energy_error(sol) -> float:
    """The absolute energy error ||u_ms - u_h||_a (unconstrained stiffness)."""
    S = free_stiffness(sol.basis.grids, sol.a)
    e = sol.u_ms.x.petsc_vec - sol.u_h.x.petsc_vec
    y = S.createVecLeft()
    S.mult(e, y)
    value = np.sqrt(y.dot(e))
    for obj in (S, e, y):
        obj.destroy()
    return value


@pytest.mark.parametrize(
    "dim, NH, n, layers, method",
    [(2, 4, 32, 2, "galerkin"), (2, 4, 32, 2, "petrov-galerkin"), (3, 2, 8, 1, "galerkin")],
)
def test_boundary_data_at_the_homogeneous_level(comm, dim, NH, n, layers, method):
    g = dl.create_nested_grids(comm, NH, n, unit_box(dim), neumann=("right", "top"))
    a = random_coefficient(n, 0.1, 1.0, seed=3, dim=dim)
    run = dict(layers=layers, f=1.0, method=method, reference=True)
    with dl.solve_elliptic(g, a, **run) as hom:
        homogeneous = energy_error(hom)
    with dl.solve_elliptic(g, a, dirichlet=g_data, flux={"top": 1.0}, **run) as sol:
        error = energy_error(sol)
        assert sol.errors["energy"] < sol.errors["coarse_fem_energy"] / 3
        on_boundary = g.dirichlet_vertex_mask(g.fine_sizes)[g.fine_dof_keys]
        x = g.V_h.tabulate_dof_coordinates()[: on_boundary.size].T
        trace = sol.u_ms.x.array[: on_boundary.size][on_boundary]
        assert np.abs(trace - g_data(x)[on_boundary]).max(initial=0.0) < 1e-12
    assert error <= 1.5 * homogeneous, (error, homogeneous)


def test_forms_of_g_and_a_constant_solution(comm):
    """u = 2 solves the problem with f = 0, g = 2, q = 0 exactly: the LOD reproduces it for g
    as a number, Constant and Function."""
    g = dl.create_nested_grids(comm, 4, 16, neumann=("top",))
    a = random_coefficient(16, 0.1, 1.0, seed=1)
    two = dolfinx.fem.Function(g.V_h)
    two.x.array[:] = 2.0
    for data in (2.0, dolfinx.fem.Constant(g.fine_mesh, 2.0), two):
        with dl.solve_elliptic(g, a, 1, f=0.0, dirichlet=data, flux={"top": 0.0}) as sol:
            assert np.abs(sol.u_ms.x.array - 2.0).max() < 1e-10


def test_rank_invariance(comm):
    """The same errors on this communicator as on one rank alone (COMM_SELF)."""
    out = []
    for c in (MPI.COMM_SELF, comm):
        g = dl.create_nested_grids(c, 4, 16, neumann=("right",))
        a = random_coefficient(16, 0.1, 1.0, seed=2)
        kw = dict(dirichlet=g_data, flux={"right": lambda x: x[1]}, reference=True)
        with dl.solve_elliptic(g, a, 2, **kw) as sol:
            out.append(sol.errors)
    for key in out[0]:
        assert out[1][key] == pytest.approx(out[0][key], rel=1e-9, abs=1e-13)


def test_bad_boundary_data_refused_by_name(comm):
    g = dl.create_nested_grids(comm, 2, 8, neumann=("top",))
    a = np.ones((8, 8))
    with pytest.raises(InputError, match=r"dirichlet g must be a number or an array .* \(9, 9\)"):
        dl.solve_elliptic(g, a, 1, dirichlet=np.ones((8, 8)))
    with pytest.raises(InputError, match="flux on side 'left', which is a Dirichlet side"):
        dl.solve_elliptic(g, a, 1, flux={"left": 1.0})
    with pytest.raises(InputError, match="flux side 'up' is not one of"):
        dl.solve_elliptic(g, a, 1, flux={"up": 1.0})
    nan_on_last = lambda x: np.full(x.shape[1], np.nan if comm.rank == comm.size - 1 else 1.0)  # noqa: E731
    with pytest.raises(InputError, match="dirichlet g must be finite"):
        dl.solve_elliptic(g, a, 1, dirichlet=nan_on_last)


@pytest.mark.parametrize(
    "dim, NH, n, layers, method",
    [(2, 4, 32, 2, "galerkin"), (2, 4, 32, 2, "petrov-galerkin"), (3, 2, 8, 1, "galerkin")],
)
def test_time_loop_with_boundary_data(comm, dim, NH, n, layers, method):
    """Backward Euler with g and a flux (a changing in time): the LOD's energy error at T
    stays at the homogeneous problem's level; LOD and FEM take the value g on the boundary."""
    from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic

    g = dl.create_nested_grids(comm, NH, n, unit_box(dim), neumann=("right", "top"))
    A = random_coefficient(n, 0.1, 1.0, seed=3, dim=dim)
    schedule = CoefficientSchedule.from_data(lambda t, x: (1 + t) * A.reshape(-1)[g.fine_cell_keys])
    run = dict(layers=layers, method=method, reference=True)
    hom = run_parabolic(g, schedule, 0.3, 3, **run)
    res = run_parabolic(g, schedule, 0.3, 3, dirichlet=g_data, flux={"top": 1.0}, **run)
    assert res.final_errors["energy"] <= 1.5 * hom.final_errors["energy"]
    on_boundary = g.dirichlet_vertex_mask(g.fine_sizes)[g.fine_dof_keys]
    x = g.V_h.tabulate_dof_coordinates()[: on_boundary.size].T
    for u in (res.u_ms, res.u_h):
        trace = u.x.array[: on_boundary.size][on_boundary]
        assert np.abs(trace - g_data(x)[on_boundary]).max(initial=0.0) < 1e-10
    hom.basis.destroy()  # the bases the results keep, freed here (collective)
    res.basis.destroy()


def test_fem_stepper_equals_a_plain_dolfinx_loop(comm):
    """FEMStepper with g and a flux against backward Euler written with DOLFINx's
    LinearProblem (u(0) = g on the Dirichlet sides): the same fine solution."""
    import dolfinx.fem.petsc
    import ufl

    from dolfinx_lod.boundary import side_tags
    from dolfinx_lod.timestepping import CoefficientSchedule, FEMStepper, advance

    g = dl.create_nested_grids(comm, 2, 16, neumann=("top",))
    A = random_coefficient(16, 0.1, 1.0, seed=4)
    fem = FEMStepper(g, 0.1, source=1.0, rtol=1e-12, dirichlet=g_data, flux={"top": 0.5})
    a_h = dl.coefficient_function(g, A)
    V = g.V_h
    u_h, u_old, g_h = (dolfinx.fem.Function(V) for _ in range(3))
    g_h.interpolate(g_data)
    dofs = g.dirichlet_dofs(V)
    u_h.x.array[dofs] = g_h.x.array[dofs]
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    ds = ufl.Measure("ds", domain=g.fine_mesh, subdomain_data=side_tags(g))
    problem = dolfinx.fem.petsc.LinearProblem(
        u * v * ufl.dx + 0.1 * a_h * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx,
        (u_old + 0.1) * v * ufl.dx + 0.1 * 0.5 * v * ds(4),
        bcs=[dolfinx.fem.dirichletbc(g_h, dofs)],
        u=u_h,
        petsc_options_prefix="plain_",
        petsc_options={"ksp_type": "preonly", "pc_type": "lu"},
    )

    def plain_step(m, t, state):
        u_old.x.array[:] = u_h.x.array
        problem.solve()

    advance(g, CoefficientSchedule.from_data(A), 0.3, 3, [fem], plain_step)
    assert np.abs(fem.solution().x.array - u_h.x.array).max() < 1e-9
    fem.destroy()


def test_a_provider_basis_takes_the_same_boundary_data(comm):
    """A non-classical provider (here: fixed correctors equal to the classical ones) gives the
    boundary-vertex functions from its own correctors: the same solution as the classical."""
    from dolfinx_lod.neural.provider import FixedCorrectors

    g = dl.create_nested_grids(comm, 4, 16, neumann=("top",))
    a = random_coefficient(16, 0.1, 1.0, seed=5)
    kw = dict(f=1.0, dirichlet=g_data, flux={"top": 1.0})
    with dl.solve_elliptic(g, a, 1, **kw) as classical:
        cells = [patch.cell for patch in classical.basis.patches]
        fixed = FixedCorrectors(dict(zip(cells, classical.basis.correctors, strict=True)))
        with dl.solve_elliptic(g, a, 1, provider=fixed, **kw) as learned:
            assert np.abs(learned.u_ms.x.array - classical.u_ms.x.array).max() < 1e-12
