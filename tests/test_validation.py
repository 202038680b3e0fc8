"""Bad input raises a clear ValueError on every rank, before any solve."""

import numpy as np
import pytest

import dolfinx_lod as dl

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def grids(comm):
    return dl.create_nested_grids(comm, 4, 16)


@pytest.mark.parametrize("layers", [0, -1, 1.5, True])
def test_layers(grids, layers):
    with pytest.raises(ValueError, match=r"layers l must be an integer >= 1"):
        dl.solve_elliptic(grids, np.ones((16, 16)), layers)


@pytest.mark.parametrize(
    "value, message",
    [(0.0, "must be > 0"), (-1.0, "must be > 0"), (np.nan, "finite"), (np.inf, "finite")],
)
def test_bad_coefficient_values(grids, value, message):
    A = np.ones((16, 16))
    A[3, 5] = value
    with pytest.raises(ValueError, match=message):
        dl.solve_elliptic(grids, A, 1)


@pytest.mark.parametrize("shape", [(16,), (16, 8), (4, 4, 4), (8, 8)])
def test_bad_coefficient_shape(grids, shape):
    with pytest.raises(ValueError, match=r"coefficient array must"):
        dl.solve_elliptic(grids, np.ones(shape), 1)


def test_bad_value_on_one_rank_raises_on_all(grids, comm):
    """Only the last rank sees a negative value; every rank must raise (no hang)."""

    def a(x):
        return np.full(x.shape[1], -1.0 if comm.rank == comm.size - 1 else 1.0)

    with pytest.raises(ValueError, match="must be > 0"):
        dl.solve_elliptic(grids, a, 1)


def test_bad_method_and_source(grids):
    with pytest.raises(ValueError, match="method must be one of"):
        dl.solve_elliptic(grids, np.ones((16, 16)), 1, method="ritz")
    with pytest.raises(ValueError, match="source f must be a finite number"):
        dl.solve_elliptic(grids, np.ones((16, 16)), 1, f=np.nan)


def test_callable_with_wrong_output(grids):
    with pytest.raises(ValueError, match="one value per cell midpoint"):
        dl.solve_elliptic(grids, lambda x: np.ones(3), 1)
