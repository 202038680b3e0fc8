"""One normaliser for user data (dolfinx_lod.inputs): every input form gives the DG0 values
of the array it stands for, at every entry point (elliptic, steppers, FEM reference)."""

import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import ufl
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.inputs import owned_coefficient_values, vertex_function
from dolfinx_lod.parallel import InputError
from dolfinx_lod.timestepping import CoefficientSchedule, FEMStepper, LODStepper, advance

pytestmark = pytest.mark.mpi
N = 16


def formula(x):
    return 1.0 + 0.5 * np.sin(3 * x[0]) * np.cos(2 * x[1])


def ufl_formula(mesh):
    x = ufl.SpatialCoordinate(mesh)
    return 1.0 + 0.5 * ufl.sin(3 * x[0]) * ufl.cos(2 * x[1])


def cell_array(values_at):
    """The documented layout: A[iy, ix] at the fine-cell midpoints."""
    m = (np.arange(N) + 0.5) / N
    X, Y = np.meshgrid(m, m)
    return values_at(np.stack([X, Y, 0 * X]))


@pytest.fixture(scope="module")
def grids():
    return dl.create_nested_grids(MPI.COMM_WORLD, 4, N)


def forms(g):
    """(name, data, array it stands for)."""
    A = cell_array(formula)
    dg0 = dolfinx.fem.Function(g.Q_h)
    dg0.interpolate(formula)
    q1 = dolfinx.fem.Function(g.V_h)
    q1.interpolate(formula)
    v = (np.arange(N + 1)) / N
    X, Y = np.meshgrid(v, v)
    nodal = formula(np.stack([X, Y]))
    q1_mean = (nodal[:-1, :-1] + nodal[1:, :-1] + nodal[:-1, 1:] + nodal[1:, 1:]) / 4
    copy = dolfinx.mesh.create_unit_square(
        MPI.COMM_WORLD, N, N, dolfinx.mesh.CellType.quadrilateral
    )
    on_copy = dolfinx.fem.Function(dolfinx.fem.functionspace(copy, ("DG", 0)))
    on_copy.interpolate(formula)
    return [
        ("number", 2.5, np.full((N, N), 2.5)),
        ("numpy scalar", np.float32(2.5), np.full((N, N), 2.5)),
        ("Constant", dolfinx.fem.Constant(g.fine_mesh, 2.5), np.full((N, N), 2.5)),
        ("UFL expression", ufl_formula(g.fine_mesh), A),
        ("DG0 Function", dg0, A),
        ("Q1 Function (cell mean)", q1, q1_mean),
        ("Function on a copy of T_h", on_copy, A),
        ("callable x -> values", formula, A),
        ("array", A, A),
    ]


def test_every_form_gives_the_dg0_values(grids):
    for name, data, array in forms(grids):
        got = owned_coefficient_values(grids, data, name=name)
        want = array.reshape(-1)[grids.fine_cell_keys]
        assert np.abs(got - want).max() <= 1e-12, name


def test_vector_valued_data_is_refused_by_name(grids):
    x = ufl.SpatialCoordinate(grids.fine_mesh)
    W = dolfinx.fem.functionspace(grids.fine_mesh, ("DG", 0, (2,)))
    bad = {
        "UFL vector": ufl.as_vector((x[0], x[1])),
        "Constant vector": dolfinx.fem.Constant(grids.fine_mesh, np.ones(2)),
        "vector Function": dolfinx.fem.Function(W),
        "callable vector": lambda x: np.ones((2, x.shape[1])),
    }
    for name, data in bad.items():
        with pytest.raises(InputError, match=f"{name} must be scalar-valued.*problem.*scalar"):
            owned_coefficient_values(grids, data, name=name)


def test_two_argument_callable_needs_a_family_parameter(grids):
    with pytest.raises(InputError, match="take x alone.*lambda x"):
        dl.solve_elliptic(grids, lambda x, p: formula(x), 1)
    A = cell_array(lambda x: formula(x) * 2.0)
    with dl.solve_elliptic(grids, lambda x, p: formula(x) * p, 1, p=2.0) as fam:
        with dl.solve_elliptic(grids, A, 1) as ref:
            assert np.abs(fam.u_ms.x.array - ref.u_ms.x.array).max() <= 1e-12


def test_ufl_on_another_mesh_and_nan_are_refused(grids):
    other = dolfinx.mesh.create_unit_square(MPI.COMM_WORLD, 3, 3)
    with pytest.raises(InputError, match="another mesh"):
        owned_coefficient_values(grids, ufl_formula(other), name="a")
    with pytest.raises(InputError, match="source f must be finite"):
        dl.solve_elliptic(grids, 1.0, 1, f=lambda x: np.where(x[0] > 0.9, np.nan, 1.0))


@pytest.mark.parametrize("method", ["galerkin", "petrov-galerkin"])
def test_elliptic_entry_point(grids, method):
    A = cell_array(formula)
    F = cell_array(lambda x: np.sin(4 * x[0]) + x[1])
    x = ufl.SpatialCoordinate(grids.fine_mesh)
    with dl.solve_elliptic(grids, A, 1, f=F, method=method) as ref:
        a, f = ufl_formula(grids.fine_mesh), ufl.sin(4 * x[0]) + x[1]
        with dl.solve_elliptic(grids, a, 1, f=f, method=method, reference=True) as sol:
            assert np.abs(sol.u_ms.x.array - ref.u_ms.x.array).max() <= 1e-12
            assert sol.errors["energy"] < sol.errors["coarse_fem_energy"]
    with dl.solve_elliptic(grids, 2.0, 1, f=lambda x: x[0]) as number:
        with dl.solve_elliptic(grids, np.full((N, N), 2.0), 1, f=cell_array(lambda x: x[0])) as r:
            assert np.abs(number.u_ms.x.array - r.u_ms.x.array).max() <= 1e-12


def run_steppers(g, schedule, capacity, source, time=None):
    lod = LODStepper(g, 1, 0.1, capacity=capacity, source=source, time=time)
    fem = FEMStepper(g, 0.1, capacity=capacity, source=source, time=time)
    advance(g, schedule, 0.3, 3, [lod, fem])
    out = lod.solution().x.array.copy(), fem.solution().x.array.copy()
    lod.destroy()
    fem.destroy()
    return out


def test_stepper_entry_points(grids):
    """Capacity, source (t, x) and coefficient as callables / UFL with a time Constant give the
    same LOD and FEM solutions as the arrays they stand for."""
    A = cell_array(formula)
    C = cell_array(lambda x: 1.0 + x[0])
    stack = np.stack([A * (1 + 0.1 * m) for m in range(1, 4)])

    def source_array(t, x):  # the array of f(t) in the documented layout, on the owned cells
        return cell_array(lambda y: t * y[1] + 1.0).reshape(-1)[grids.fine_cell_keys]

    ref = run_steppers(grids, CoefficientSchedule.from_stack(stack), C, source_array)
    t = dolfinx.fem.Constant(grids.fine_mesh, 0.0)
    x = ufl.SpatialCoordinate(grids.fine_mesh)
    a = ufl_formula(grids.fine_mesh) * (1 + t)
    got = run_steppers(
        grids,
        CoefficientSchedule.from_data(a, time=t),
        lambda x: 1.0 + x[0],
        lambda s, x: s * x[1] + 1.0,
    )
    ufl_source = run_steppers(grids, CoefficientSchedule.from_data(a, time=t), C, t * x[1] + 1, t)
    for lod_fem in (got, ufl_source):
        for u, r in zip(lod_fem, ref, strict=True):
            assert np.abs(u - r).max() <= 1e-12 * np.abs(r).max()


def test_boundary_data_forms(grids):
    v = np.arange(N + 1) / N
    X, Y = np.meshgrid(v, v)
    G = formula(np.stack([X, Y]))
    nowned = grids.V_h.dofmap.index_map.size_local
    want = G.reshape(-1)[grids.fine_dof_keys]
    q1 = dolfinx.fem.Function(grids.V_h)
    q1.interpolate(formula)
    for data in (G, formula, ufl_formula(grids.fine_mesh), q1):
        got = vertex_function(grids, data, "g").x.array[:nowned]
        assert np.abs(got - want).max() <= 1e-12
    with pytest.raises(InputError, match=r"g must be a number or an array of fine-vertex"):
        vertex_function(grids, np.ones((N, N)), "g")
