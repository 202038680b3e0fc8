"""MPI helpers: the collective error path, collective validation and a distributed
key -> value directory.

Every function here is collective over the communicator it is given.

The error path: work that may fail on some ranks only (reading input, checking values, file
system operations, patch solves, writing results) runs inside :func:`collective`, which
combines the outcome of all ranks and raises the same typed error on every rank, so that no
rank is left waiting in a later collective. The types carry the exit code of the command line:
:class:`InputError` (2, bad input), :class:`NumericalError` (3, a solve or training failed),
:class:`OutputError` (4, the file system refused).
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, Self

import numpy as np
import numpy.typing as npt
from mpi4py import MPI


class LodError(Exception):
    """Base of the errors raised on every rank together; ``exit_code`` is the CLI's."""

    exit_code = 1


class InputError(LodError, ValueError):
    """Bad input (values, shapes, options, files that are not what they should be)."""

    exit_code = 2


class NumericalError(LodError, RuntimeError):
    """A numerical failure: a patch or coarse solve, or training that diverged."""

    exit_code = 3


class OutputError(LodError, OSError):
    """The output folder cannot be prepared or written."""

    exit_code = 4


_ERRORS: dict[str, type[LodError]] = {
    cls.__name__: cls for cls in (InputError, NumericalError, OutputError)
}


def brief(e: BaseException, limit: int = 120) -> str:
    """'Type: first line of the message' of an exception, at most ``limit`` characters."""
    lines = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(e: BaseException, default: type[LodError]) -> tuple[str, str]:
    """(error type name, message) of a rank-local exception for :func:`collective`."""
    if isinstance(e, LodError):
        return _base_name(e), str(e)
    message = str(e) or type(e).__name__
    if isinstance(e, ValueError):  # a bad value, whatever the phase
        return InputError.__name__, message
    if isinstance(e, OSError | RuntimeError):
        return default.__name__, message
    return default.__name__, f"{type(e).__name__}: {message}"  # an unexpected error type


def _base_name(e: LodError) -> str:
    """The name of the collective error class an instance derives from (default: input)."""
    return next((name for name, cls in _ERRORS.items() if isinstance(e, cls)), "InputError")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C (``KeyboardInterrupt``) so that the same clean-up runs."""


_PENDING: list[int] = []  # signals received on this rank, raised on every rank together
#: Signals raised at once on one rank (:func:`raise_interrupt`): raised again at the next time
#: step or epoch should that raise have been lost (the handler ran where a library swallows
#: exceptions, and the loop went on); forgotten when the command ends.
_RAISED: list[int] = []


def _interrupt(signum: int) -> KeyboardInterrupt:
    """The exception of SIGTERM (:class:`Terminated`) or SIGINT (``KeyboardInterrupt``)."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def raise_interrupt(signum: int) -> NoReturn:
    """Raise SIGINT / SIGTERM at once (from a signal handler, one rank), remembered by
    :func:`check_interrupt` in case the exception is swallowed where the handler runs."""
    _RAISED.append(signum)
    raise _interrupt(signum)


def forget_interrupts() -> None:
    """Drop the signals recorded on this rank (the command that received them has ended)."""
    _PENDING.clear()
    _RAISED.clear()


def defer_interrupt(signum: int) -> None:
    """Record SIGINT / SIGTERM (from a signal handler): the next :func:`check_interrupt` or
    collective block raises it on every rank together, so that all ranks unwind from the same
    point (a rank raising alone would leave the others waiting in a collective)."""
    _PENDING.append(signum)


def _raise_pending(signums: list[int]) -> None:
    signum = next((s for s in signums if s), 0)
    if signum:
        forget_interrupts()
        raise _interrupt(signum)


def check_interrupt(comm: MPI.Comm) -> None:
    """Raise a signal received on any rank (:func:`defer_interrupt`) on every rank, and one
    whose immediate raise was lost (:func:`raise_interrupt`). Collective: called once per time
    step and training epoch."""
    signum = _PENDING[0] if _PENDING else (_RAISED[0] if _RAISED else 0)
    _raise_pending(comm.allgather(signum))


def raise_first(comm: MPI.Comm, failure: tuple[str, str] | None) -> None:
    """Raise on every rank the first rank's failure (error type name, message), if any, else
    a signal received on any rank (:func:`defer_interrupt`): a signal raised here means that
    the block succeeded on every rank.

    Collective. The error is raised with the type of the first failing rank (by rank), so all
    ranks raise the same type with the same message.
    """
    gathered = comm.allgather((failure, _PENDING[0] if _PENDING else 0))
    first = next((f for f, _ in gathered if f is not None), None)
    if first is not None:  # a failure first (a signal stays pending): the block did not succeed
        kind, message = first
        raise _ERRORS[kind](message)
    _raise_pending([signum for _, signum in gathered])


@contextlib.contextmanager
def collective(comm: MPI.Comm, default: type[LodError] = InputError) -> Iterator[None]:
    """Run a rank-local block and raise its failure (if any) on every rank.

    Collective: every rank must enter the block, and the block itself must contain no
    collective calls (a rank that fails before one would leave the others waiting). An
    exception on any rank ends the block on every rank with the same error: a
    :class:`LodError` keeps its type, any other exception becomes ``default`` with the
    exception's message (a ``ValueError`` becomes :class:`InputError`; ``KeyboardInterrupt``
    and ``SystemExit`` pass through unchanged).

    Example:
        >>> with collective(comm, OutputError):
        ...     if comm.rank == 0:
        ...         write_json(path, summary)
    """
    failure = None
    try:
        yield
    except Exception as e:
        failure = _describe(e, default)
    raise_first(comm, failure)


def validate(comm: MPI.Comm, check: Callable[[], None]) -> None:
    """Run the rank-local ``check`` and raise its failure on every rank. Collective.

    Any exception of ``check`` becomes :class:`InputError` (a ``ValueError``) on every rank,
    unless it already is a :class:`LodError`, whose type is kept.
    """
    with collective(comm, InputError):
        check()


def digest(value: Any, samples: int = 4096) -> str:
    """A cheap fingerprint of ``value``: for an array its shape, dtype and ``samples`` evenly
    spaced entries (a memory-mapped file is not read whole); else its ``repr``."""
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        picked = flat[:: max(1, flat.size // samples)][:samples]
        data = (
            repr((value.shape, value.dtype.str)).encode() + np.ascontiguousarray(picked).tobytes()
        )
    else:
        data = repr(value).encode()
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def check_same(comm: MPI.Comm, values: dict[str, Any]) -> None:
    """Raise :class:`InputError` on every rank unless each named value is the same on every
    rank (compared by :func:`digest`, one allgather). Collective: call it on every rank with
    the same names."""
    mine = {name: digest(value) for name, value in values.items()}
    everyone = comm.allgather(mine)
    for name in values:
        ranks = [r for r, d in enumerate(everyone) if d[name] != everyone[0][name]]
        if ranks:
            raise InputError(
                f"the ranks were given different {name} (rank {ranks[0]} another than rank "
                "0): pass the same on every rank"
            )


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


#: Largest fraction of the keys whose values may change for :func:`refresh` to send the changes
#: alone (one allgather of the changed pairs); above it, a full :func:`fetch`.
REFRESH_FRACTION = 0.05


def refresh(
    comm: MPI.Comm,
    nkeys: int,
    owned_keys: npt.NDArray[np.int64],
    owned_values: np.ndarray,
    owned_before: np.ndarray,
    wanted_keys: npt.NDArray[np.int64],
    wanted_before: np.ndarray,
) -> np.ndarray:
    """:func:`fetch` of ``wanted_keys`` (sorted, unique) after the owned values changed from
    ``owned_before`` to ``owned_values``, given the values ``wanted_before`` fetched then: only
    the changed (key, value) pairs travel (one allgather), unless more than
    :data:`REFRESH_FRACTION` of the keys changed (then a full fetch). Collective; returns a new
    array."""
    changed = np.flatnonzero(owned_values != owned_before)
    if comm.allreduce(changed.size) > REFRESH_FRACTION * nkeys:
        return fetch(comm, nkeys, owned_keys, owned_values, wanted_keys)
    out = wanted_before.copy()
    pairs = comm.allgather((np.asarray(owned_keys)[changed], owned_values[changed]))
    for keys, values in pairs:
        at = np.minimum(np.searchsorted(wanted_keys, keys), max(wanted_keys.size - 1, 0))
        hit = wanted_keys[at] == keys if wanted_keys.size else np.zeros(keys.size, dtype=bool)
        out[at[hit]] = values[hit]
    return out


class PETScResource:
    """Base of the classes that own PETSc objects: ``destroy()`` frees them (collective where
    the objects live on a communicator), and ``with obj: ...`` calls it at the end of the
    block, also after an error, so that all ranks free their objects together."""

    def destroy(self) -> None:
        """Free the owned PETSc objects."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
