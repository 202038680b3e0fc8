"""MPI helpers: collective validation and a distributed key -> value directory.

Every function here is collective over the communicator it is given.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from mpi4py import MPI


def raise_on_all_ranks(comm: MPI.Comm, message: str | None, error: type = ValueError) -> None:
    """Raise ``error`` on every rank if any rank has a non-empty ``message``.

    Collective. Each rank passes ``None`` when its own checks passed, else the
    message. The first message (by rank) is raised everywhere, so no rank is left
    waiting in a later collective while another one has failed.
    """
    messages = comm.allgather(message)
    first = next((m for m in messages if m), None)
    if first is not None:
        raise error(first)


def validate(comm: MPI.Comm, check: Callable[[], None], error: type = ValueError) -> None:
    """Run ``check`` locally and re-raise its ``error`` (if any) on every rank. Collective."""
    try:
        check()
        message = None
    except error as e:
        message = str(e)
    raise_on_all_ranks(comm, message, error)


def _directory_rank(keys: npt.NDArray[np.int64], nkeys: int, size: int) -> npt.NDArray[np.int64]:
    """Rank that stores ``keys`` in a block distribution of ``range(nkeys)``."""
    return (keys * size) // max(nkeys, 1)


def _exchange(comm: MPI.Comm, dest: npt.NDArray[np.int64], *arrays: np.ndarray) -> list[list]:
    """Send ``arrays[k][dest == q]`` to rank q for all q; returns received arrays per rank."""
    order = np.argsort(dest, kind="stable")
    counts = np.bincount(dest, minlength=comm.size)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    sends = [[a[order][bounds[q] : bounds[q + 1]] for a in arrays] for q in range(comm.size)]
    return comm.alltoall(sends)


def fetch(
    comm: MPI.Comm,
    nkeys: int,
    owned_keys: npt.NDArray[np.int64],
    owned_values: np.ndarray,
    wanted_keys: npt.NDArray[np.int64],
) -> np.ndarray:
    """Look up values of globally keyed data that lives on other ranks.

    Collective. ``owned_keys`` (each key in ``range(nkeys)`` owned by exactly one
    rank) carry ``owned_values`` (first axis matches). Returns the values of
    ``wanted_keys`` in their order. Communication goes through a block-distributed
    directory, so no rank ever holds more than its share plus what it asks for.
    """
    owned_keys = np.asarray(owned_keys, dtype=np.int64)
    wanted_keys = np.asarray(wanted_keys, dtype=np.int64)
    owned_values = np.asarray(owned_values)
    # 1. Owners post their (key, value) pairs to the directory ranks.
    received = _exchange(
        comm, _directory_rank(owned_keys, nkeys, comm.size), owned_keys, owned_values
    )
    lo = (comm.rank * nkeys + comm.size - 1) // comm.size
    hi = ((comm.rank + 1) * nkeys + comm.size - 1) // comm.size
    table = np.zeros((hi - lo, *owned_values.shape[1:]), dtype=owned_values.dtype)
    for keys, values in received:
        table[keys - lo] = values
    # 2. Askers send their keys to the directory ranks, which answer.
    unique, inverse = np.unique(wanted_keys, return_inverse=True)
    dest = _directory_rank(unique, nkeys, comm.size)
    questions = _exchange(comm, dest, unique)
    answers = comm.alltoall([table[q[0] - lo] for q in questions])
    values = np.zeros((unique.size, *owned_values.shape[1:]), dtype=owned_values.dtype)
    order = np.argsort(dest, kind="stable")
    values[order] = np.concatenate(answers) if answers else values
    return values[inverse.reshape(-1)]
