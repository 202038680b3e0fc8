"""Spreading rank-local work items (patch solves) evenly over the ranks.

A selective basis update recomputes the patches where a changed; a local change lies in the
patches of one rank, which would do every solve while the others wait. :func:`spread` moves
items from ranks with more than their share to ranks with less (the same plan on every rank,
from the counts alone), runs ``work`` everywhere and returns each item's result to its owner.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from mpi4py import MPI


def plan_moves(counts: Sequence[int]) -> list[tuple[int, int, int]]:
    """Moves (source, destination, number of items) that bring every rank to its share of
    sum(counts) (floor or ceil; the ceil to the ranks that hold most). Each source gives
    its last items. Deterministic: every rank computes the same plan from the same counts."""
    counts = np.asarray(counts, dtype=np.int64)
    total, size = int(counts.sum()), counts.size
    order = np.argsort(-counts, kind="stable")  # the fullest ranks keep the extra items
    share = np.full(size, total // size)
    share[order[: total % size]] += 1
    excess = counts - share
    moves = []
    donors = [int(r) for r in np.flatnonzero(excess > 0)]
    takers = [int(r) for r in np.flatnonzero(excess < 0)]
    while donors and takers:
        src, dst = donors[0], takers[0]
        n = int(min(excess[src], -excess[dst]))
        moves.append((src, dst, n))
        excess[src] -= n
        excess[dst] += n
        if excess[src] == 0:
            donors.pop(0)
        if excess[dst] == 0:
            takers.pop(0)
    return moves


def _run(work: Callable[[list], list], items: list) -> list | Exception:
    """work(items), or the exception it raised (sent back to the owner of the items)."""
    if not items:
        return []
    try:
        return work(items)
    except Exception as e:  # sent pickled to the owner: keep the type only if it pickles
        try:
            pickle.dumps(e)
            return e
        except Exception:
            return RuntimeError(f"{type(e).__name__}: {e}")


def spread(comm: MPI.Comm, items: Sequence[Any], work: Callable[[list], list]) -> list:
    """``work(items)`` (a list of results, one per item, rank-local) with the items spread
    evenly over the ranks (:func:`plan_moves`). Collective: every rank calls it, also with no
    items.

    Items and results travel pickled: ``work`` on another rank must compute from the item
    alone. An exception of ``work`` (here or on the rank that ran the items) is raised on the
    owner of the items after all communication (so no rank is left waiting).

    Returns:
        The results of this rank's items, in their order.
    """
    items = list(items)
    moves = plan_moves(comm.allgather(len(items)))
    outgoing: list[list] = [[] for _ in range(comm.size)]
    keep = len(items)
    for src, dst, n in moves:
        if src == comm.rank:
            outgoing[dst] = items[keep - n : keep]
            keep -= n
    incoming = comm.alltoall(outgoing) if moves else [[] for _ in range(comm.size)]
    own = _run(work, items[:keep])
    answers = comm.alltoall([_run(work, batch) for batch in incoming]) if moves else []
    results = [] if isinstance(own, Exception) else list(own)
    failures = [own] if isinstance(own, Exception) else []
    given = [dst for src, dst, _ in moves if src == comm.rank]
    for dst in reversed(given):  # the first move took the last items
        if isinstance(answers[dst], Exception):
            failures.append(answers[dst])
        else:
            results.extend(answers[dst])
    if failures:
        raise failures[0]
    return results
