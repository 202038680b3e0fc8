"""Patch solves spread over the ranks, and the coefficient refreshed from its changes."""

import numpy as np
import pytest
from helpers import dense
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.balance import plan_moves, spread
from dolfinx_lod.parallel import REFRESH_FRACTION, fetch, refresh

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("counts", [[16, 0], [0, 0, 7], [3, 9, 1, 0], [5, 5], [0, 0], [1, 0, 0]])
def test_plan_moves_reaches_the_shares(counts):
    after = np.array(counts)
    for src, dst, n in plan_moves(counts):
        assert n > 0 and after[src] - n >= 0
        after[src] -= n
        after[dst] += n
    total = sum(counts)
    assert after.sum() == total
    assert after.max() - after.min() <= 1
    assert after.max() == -(-total // len(counts))


def test_spread_returns_each_items_result_to_its_owner(comm):
    """All items on rank 0: every rank works on its share, rank 0 gets the results in order."""
    items = list(range(7)) if comm.rank == 0 else []
    out = spread(comm, items, lambda batch: [(x * x, comm.rank) for x in batch])
    assert [value for value, _ in out] == [x * x for x in items]
    workers = comm.allreduce({rank for _, rank in out}, op=MPI.BOR)
    assert len(workers) == min(comm.size, 7) if comm.size > 1 else workers == {0}


def test_spread_raises_a_moved_items_failure_on_its_owner(comm):
    def work(batch):
        if 6 in batch:
            raise ValueError("item 6 failed")
        return batch

    items = list(range(7)) if comm.rank == 0 else []
    if comm.rank == 0:
        with pytest.raises(ValueError, match="item 6 failed"):
            spread(comm, items, work)
    else:
        assert spread(comm, items, work) == []


@pytest.mark.parametrize("changed", [3, "many"])
def test_refresh_equals_a_full_fetch(comm, changed):
    g = dl.create_nested_grids(comm, 4, 16)
    rng = np.random.default_rng(comm.rank)
    before = rng.uniform(1, 2, g.fine_cell_keys.size)
    wanted = np.unique(np.random.default_rng(9).integers(0, g.num_fine_cells, 100))
    old = fetch(comm, g.num_fine_cells, g.fine_cell_keys, before, wanted)
    after = before.copy()
    count = 3 if changed == 3 else int(2 * REFRESH_FRACTION * after.size) + 1
    after[rng.choice(after.size, count, replace=False)] += 1.0
    new = refresh(comm, g.num_fine_cells, g.fine_cell_keys, after, before, wanted, old)
    assert np.array_equal(new, fetch(comm, g.num_fine_cells, g.fine_cell_keys, after, wanted))


def test_selective_update_spreads_the_solves_and_equals_a_fresh_basis(comm):
    """a changes on the cells of one corner (the patches of one rank): with tol = 0 the update
    recomputes exactly the patches where a changed, every rank solves its share of them, and
    B and the local operators equal those of a fresh basis for the new a."""
    g = dl.create_nested_grids(comm, 6, 24)
    A = dl.coefficients.random_coefficient(24, 1.0, 2.0, seed=3)
    basis = dl.MultiscaleBasis(g, 1, capacity=1.0)
    basis.update(A)
    solved = []
    solve_items = basis.provider.solve_items

    def counted(items, *args):
        solved.append(len(items))
        return solve_items(items, *args)

    basis.provider.solve_items = counted
    A2 = A.copy()
    A2[:4, :4] = 20.0  # inside coarse cell 0: the patches around it recompute
    basis.update(A2, strategy=dl.basis.SelectiveUpdate(0.0))
    counts = comm.allgather(sum(solved))
    assert sum(counts) == basis.num_recomputed == 4
    assert max(counts) - min(counts) <= 1
    with dl.MultiscaleBasis(g, 1, capacity=1.0) as fresh:
        expected = dense(fresh.update(A2))
        for ops, ops_fresh in zip(basis.operators, fresh.operators, strict=True):
            for X, Y in zip(ops, ops_fresh, strict=True):
                assert np.abs(X - Y).max() <= 1e-12 * np.abs(Y).max()
    assert np.abs(dense(basis.matrix()) - expected).max() <= 1e-12 * np.abs(expected).max()
    basis.destroy()


class _Unpicklable(Exception):
    """An exception holding a lock: it cannot travel to the owner pickled."""

    def __init__(self):
        import threading

        super().__init__("unpicklable failure")
        self.lock = threading.Lock()


def test_spread_sends_an_unpicklable_failure_as_its_text(comm):
    """A failure that does not pickle reaches the owner as a RuntimeError naming it, instead
    of leaving the ranks in alltoall."""

    def work(batch):
        if 6 in batch:
            raise _Unpicklable()
        return batch

    items = list(range(7)) if comm.rank == 0 else []
    if comm.rank == 0:
        with pytest.raises(Exception, match="unpicklable failure"):
            spread(comm, items, work)
    else:
        assert spread(comm, items, work) == []
