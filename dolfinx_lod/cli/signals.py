"""SIGINT and SIGTERM in a command: raised as ``KeyboardInterrupt`` /
:class:`~dolfinx_lod.parallel.Terminated` so that the run unwinds (staging folders removed,
exit 130 / 143): at once on one rank (and again at the next time step or training epoch,
should the place where the handler ran have swallowed the exception); on several on every rank
together at the next time step, training epoch or collective block, so that all ranks unwind
from the same point.
Further signals are ignored during the clean-up, and a watchdog stops the job when a rank
cannot unwind.

A Python signal handler runs only when the main thread returns to the interpreter: a rank that
waits inside MPI for a rank that has left never runs it. The C-level handler still writes the
signal number to the wake-up pipe at once; the watchdog thread reads it there and, if the
command has not ended :data:`CLEANUP_SECONDS` later, stops the job (``MPI_Abort`` with the
signal's exit code), so a hung job still ends on SIGTERM (e.g. from ``timeout``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from mpi4py import MPI

from dolfinx_lod.parallel import defer_interrupt, forget_interrupts, raise_interrupt

#: Seconds a rank gets to unwind after a signal before the watchdog stops the job.
CLEANUP_SECONDS = 60.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """The exit code of a run ended by ``signum``: 128 + the signal number."""
    return 128 + signum


def _on_signal(signum: int, frame: object) -> None:
    """The first SIGINT / SIGTERM: ignore further ones while the run unwinds (a second Ctrl-C
    would interrupt the clean-up, e.g. a PETSc object's ``__del__``); raise it at once on one
    rank, on several at the next point all ranks pass together
    (:func:`dolfinx_lod.parallel.defer_interrupt`)."""
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if MPI.COMM_WORLD.size > 1:
        defer_interrupt(signum)
        return
    raise_interrupt(signum)


def _watch(pipe: int, done: threading.Event) -> None:
    """The watchdog thread: wait for a signal number on the wake-up ``pipe``; stop the job if
    the command has not ended (``done``) :data:`CLEANUP_SECONDS` later."""
    while data := os.read(pipe, 1):
        if data[0] in _SIGNALS and not done.wait(CLEANUP_SECONDS):
            comm = MPI.COMM_WORLD
            print(
                f"dolfinx-lod: rank {comm.rank} did not stop within {CLEANUP_SECONDS:g} s of "
                "the signal (it waits inside MPI): stopping the job",
                file=sys.stderr,
                flush=True,
            )
            comm.Abort(exit_code(data[0]))


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """SIGINT and SIGTERM handled by :func:`_on_signal` inside the block, with the watchdog
    (main thread only). The earlier handlers are restored after it, unless a signal came:
    further ones are then ignored until the process has exited."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read, write = os.pipe()
    os.set_blocking(write, False)
    earlier = {s: signal.getsignal(s) for s in _SIGNALS}
    wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    done = threading.Event()
    watchdog = threading.Thread(target=_watch, args=(read, done), daemon=True)
    watchdog.start()
    for s in _SIGNALS:
        signal.signal(s, _on_signal)
    try:
        yield
    finally:
        done.set()
        forget_interrupts()
        if signal.getsignal(signal.SIGINT) is _on_signal:
            for s, handler in earlier.items():
                signal.signal(s, handler)
        signal.set_wakeup_fd(wakeup)
        os.close(write)  # the watchdog reads the end of the pipe and returns
        watchdog.join()
        os.close(read)
