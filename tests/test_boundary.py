"""Homogeneous Neumann (insulated) sides next to Dirichlet sides, on rectangular grids: the
fine FEM, the correctors, I_H's constraint set and the coarse system."""

import numpy as np
import pytest

import dolfinx_lod as dl
from dolfinx_lod.interpolation import patch_constraints, quasi_interpolation
from dolfinx_lod.io import gather_vertex_array
from dolfinx_lod.patches import NEUMANN

pytestmark = pytest.mark.mpi

RECTANGLE = ((0.0, 0.0), (2.0, 1.0))


def one_dimensional_fem(a: np.ndarray, length: float) -> np.ndarray:
    """P1 FEM of -(a u')' = 1 on [0, length], u = 0 at both ends, a per cell: nodal values."""
    n = a.size
    h = length / n
    K = np.zeros((n + 1, n + 1))
    for i, ai in enumerate(a):
        K[i : i + 2, i : i + 2] += ai / h * np.array([[1.0, -1.0], [-1.0, 1.0]])
    F = np.full(n + 1, h)
    u = np.zeros(n + 1)
    u[1:-1] = np.linalg.solve(K[1:-1, 1:-1], F[1:-1])
    return u


def test_insulated_top_and_bottom_give_the_one_dimensional_solution(comm):
    """a = a(x), Neumann top and bottom: u_h is the 1D FEM solution on every row (Q1 is the
    tensor product), and the LOD solution u_ms is close to it."""
    g = dl.create_nested_grids(comm, (8, 4), (64, 32), RECTANGLE, neumann=("bottom", "top"))
    a_x = np.random.default_rng(3).uniform(0.05, 1.0, 64)
    A = np.broadcast_to(a_x, g.cell_array_shape)
    sol = dl.solve_elliptic(g, A, layers=2, reference=True)
    u1 = one_dimensional_fem(a_x, 2.0)
    u_h, u_ms = gather_vertex_array(g, sol.u_h), gather_vertex_array(g, sol.u_ms)
    if comm.rank == 0:
        assert u_h.shape == (33, 65)
        assert np.abs(u_h - u1[None, :]).max() <= 1e-9 * np.abs(u1).max()
        error = np.linalg.norm(u_ms - u1[None, :]) / np.linalg.norm(np.broadcast_to(u1, u_ms.shape))
        assert error < 0.02, error
    assert sol.errors["l2"] < sol.errors["coarse_fem_l2"] / 3, sol.errors
    sol.destroy()


def test_three_insulated_sides_converge_in_layers(comm):
    """Neumann on all sides but the bottom: the LOD error against the fine FEM decreases with l
    and is well below the plain coarse FEM's."""
    g = dl.create_nested_grids(comm, (8, 4), (24, 12), RECTANGLE, neumann=("left", "right", "top"))
    A = np.random.default_rng(5).uniform(0.01, 1.0, g.cell_array_shape)
    errors = []
    for layers in (1, 2, 3):
        sol = dl.solve_elliptic(g, A, layers, reference=True)
        errors.append(sol.errors)
        sol.destroy()
    energy = [e["energy"] for e in errors]
    assert energy[0] > energy[1] > energy[2], energy
    assert energy[2] < errors[2]["coarse_fem_energy"] / 2, errors[2]


def test_ideal_method_with_one_dirichlet_side(comm):
    """Patches = whole domain: I_H (u_ms - u_h) = 0 at every coarse dof, the vertices of the
    three Neumann sides included, and not at the Dirichlet side."""
    g = dl.create_nested_grids(comm, (4, 2), (16, 8), RECTANGLE, neumann=("left", "right", "top"))
    A = np.random.default_rng(6).uniform(0.01, 1.0, g.cell_array_shape)
    sol = dl.solve_elliptic(g, A, layers=4, reference=True)
    IH = quasi_interpolation(g, sol.basis.Pi)
    d = IH.createVecLeft()
    IH.mult(sol.u_ms.x.petsc_vec - sol.u_h.x.petsc_vec, d)
    diff = np.concatenate(comm.allgather(d.getArray()))
    keys = np.concatenate(comm.allgather(g.coarse_dof_keys))
    dirichlet = g.coarse_dirichlet_mask()[keys]
    assert dirichlet.sum() == 5  # the bottom row of 4 + 1 coarse vertices
    assert np.abs(diff[~dirichlet]).max() <= 1e-10
    assert np.abs(diff[dirichlet]).max() > 1e-6
    sol.destroy()


def test_correctors_are_free_on_neumann_sides_and_zero_on_dirichlet_sides(comm):
    g = dl.create_nested_grids(comm, (4, 3), (16, 12), RECTANGLE, neumann=("left",))
    A = np.random.default_rng(1).uniform(0.01, 1.0, g.cell_array_shape)
    basis = dl.MultiscaleBasis(g, 1)
    basis.update(A)
    checked = 0
    for patch, C in zip(basis.patches, basis.correctors, strict=True):
        config = patch.configuration
        nv = np.asarray(config.shape) * g.refinement + 1
        grid = C.reshape(nv[1], nv[0], -1)  # [ay, ax, corner]
        assert np.abs(patch_constraints(config, g.refinement, basis.Pi) @ C).max() <= 1e-10
        for side, values in (
            (2, grid[0]),  # bottom
            (3, grid[-1]),  # top
            (1, grid[:, -1]),  # right
        ):
            assert np.abs(values).max() == 0.0, (patch.cell, side)
        left = np.abs(grid[:, 0]).max()
        if config.on_boundary[0]:  # on the insulated side: free
            assert config.on_boundary[0] == NEUMANN and left > 1e-4
            checked += 1
        else:  # inside the domain: the patch boundary
            assert left == 0.0
    assert comm.allreduce(checked) == 3 * 2  # patches of the cells in columns 0 and 1
    basis.destroy()


@pytest.mark.parametrize(
    "neumann, message",
    [
        (("left", "up"), r"neumann sides must be distinct names out of \('left', 'right'"),
        (("left", "left"), "distinct"),
        (("front",), "front"),
        (("left", "right", "bottom", "top"), "at least one side must stay Dirichlet"),
    ],
)
def test_bad_side_names_raise_everywhere(comm, neumann, message):
    with pytest.raises(ValueError, match=message):
        dl.create_nested_grids(comm, 2, 4, neumann=neumann)
