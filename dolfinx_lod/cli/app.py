"""Entry point of ``dolfinx-lod``: the parser of every command, errors and exit codes.

Exit codes: 0 success; 2 bad input (``InputError``, a ``ValueError``, argparse); 3 a solver
that did not converge (``RuntimeError``); 4 output that could not be written; 1 a bug;
130 interrupted (Ctrl-C, SIGINT); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback

from mpi4py import MPI

import dolfinx_lod
from dolfinx_lod.cli import elliptic, operators, parabolic, train
from dolfinx_lod.cli.inputs import check_input_files, check_option_values
from dolfinx_lod.cli.options import as_options
from dolfinx_lod.cli.signals import exit_code, handle_signals
from dolfinx_lod.io import release_writers
from dolfinx_lod.parallel import LodError, Terminated

#: The commands: name -> module with ``add_parser(sub)``, ``run(args, comm)``, ``report``.
COMMANDS = {
    "elliptic": elliptic,
    "parabolic": parabolic,
    "train": train,
    "operators": operators,
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``dolfinx-lod`` and its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="dolfinx-lod", description="Localized orthogonal decomposition with DOLFINx."
    )
    parser.add_argument("--version", action="version", version=dolfinx_lod.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def _all_ranks_failed(comm: MPI.Comm, seconds: float = 5.0) -> bool:
    """Whether every rank reaches this point (all raised) within ``seconds``. Called by the
    failing ranks on a communicator used for nothing else, so that a rank still waiting in a
    collective of the computation is detected instead of waited for."""
    request, end = comm.Ibarrier(), time.monotonic() + seconds
    while not request.Test():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


#: Seconds a rank waits after its last message before ``MPI_Abort`` (output forwarding).
ABORT_GRACE = 0.5


def _interrupted(
    args: argparse.Namespace, comm: MPI.Comm, handshake: MPI.Comm, e: KeyboardInterrupt
) -> int:
    """Ctrl-C or SIGTERM (mpirun forwards both to every rank): exit 130 / 143 on every rank."""
    terminated = isinstance(e, Terminated)
    code = exit_code(signal.SIGTERM if terminated else signal.SIGINT)
    what = "terminated" if terminated else "interrupted"
    if _all_ranks_failed(handshake):
        release_writers(comm, close=True)  # every rank is here: open writers close together
        if comm.rank == 0:
            resume = " (checkpoints so far allow --resume)" if args.command == "train" else ""
            print(
                f"dolfinx-lod {args.command}: {what}; the results in {args.out} are "
                f"unchanged{resume}",
                file=sys.stderr,
            )
        return code
    print(
        f"dolfinx-lod {args.command}: {what} on rank {comm.rank}; another rank waits in a "
        f"collective step: stopping the job; the results in {args.out} are unchanged",
        file=sys.stderr,
        flush=True,
    )
    release_writers(comm, close=False)
    time.sleep(ABORT_GRACE)
    comm.Abort(code)
    return code


def _failed(
    args: argparse.Namespace, comm: MPI.Comm, handshake: MPI.Comm, e: Exception, message: str
) -> int:
    """An exception ``e`` (``message``: its text in options) outside a collective block: the
    exit code on every rank, or abort when the other ranks wait in a collective."""
    code = 3 if isinstance(e, RuntimeError) else 2 if isinstance(e, ValueError) else 1
    if not isinstance(e, ValueError | RuntimeError):
        traceback.print_exc()  # a bug: show where
    if _all_ranks_failed(handshake):
        release_writers(comm, close=True)
        if comm.rank == 0:
            print(f"dolfinx-lod {args.command}: error: {message}", file=sys.stderr)
        return code
    print(f"dolfinx-lod {args.command}: error on rank {comm.rank}: {message}", file=sys.stderr)
    sys.stderr.flush()
    release_writers(comm, close=False)
    time.sleep(ABORT_GRACE)  # mpirun forwards the message before the abort stops its output
    comm.Abort(code)  # the other ranks wait in a collective: stop them rather than hang
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dolfinx-lod`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    comm = MPI.COMM_WORLD
    handshake = comm.Dup()  # for errors raised outside dolfinx_lod.parallel.collective
    command = COMMANDS[args.command]
    with handle_signals():  # until the exit code is known on every rank
        try:
            check_option_values(args, comm)
            check_input_files(args, comm)
            summary = command.run(args, comm)
        except LodError as e:  # raised on every rank together (dolfinx_lod.parallel.collective)
            if comm.rank == 0:
                message = as_options(str(e), parser, args.command)
                print(f"dolfinx-lod {args.command}: error: {message}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt as e:
            return _interrupted(args, comm, handshake, e)
        except Exception as e:  # e.g. a RuntimeError of a coarse solve: on every rank, or not?
            try:  # never raise on one rank only before the handshake of _failed
                message = as_options(str(e), parser, args.command)
            except Exception:
                message = str(e)
            return _failed(args, comm, handshake, e, message)
        finally:
            handshake.Free()
    if comm.rank == 0:
        print(command.report(args, summary, comm))
    return 0
