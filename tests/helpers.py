"""Shared helpers of the tests: running the command line (in-process, or under mpirun with a
time limit), dense copies of PETSc matrices, and test coefficients."""

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import dolfinx_lod as dl
from dolfinx_lod.coefficients import Family

#: Seconds a subprocess of :func:`run_mpi` may take; a clean failure takes a few.
LIMIT = 300

#: A smooth family a(x, p) in [0.1, 1.9], p in [0, 1].
SMOOTH = Family(
    "smooth",
    (0.0,),
    (1.0,),
    lambda x, p: 1 + 0.9 * np.sin(9 * x[0] + 3 * p[0]) * np.cos(7 * x[1] - 2 * p[0]),
)


def mpirun() -> str:
    """The mpirun of the environment's MPI (beside the Python executable), else on PATH."""
    local = os.path.join(os.path.dirname(sys.executable), "mpirun")
    return local if os.path.exists(local) else shutil.which("mpirun")


def run_mpi(args: list, ranks: int | None = 2, limit: float = LIMIT) -> subprocess.CompletedProcess:
    """``python args`` under ``mpirun -n ranks`` (``ranks`` None: without mpirun); the whole
    process group is killed after ``limit`` seconds and the test fails (a hang never stalls
    the suite)."""
    mpi = [mpirun(), "-n", str(ranks)] if ranks else []
    cmd = [*mpi, sys.executable, *map(str, args)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"hang: {' '.join(cmd)} still ran after {limit} s")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_cli(
    args: list, ranks: int | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """``dolfinx-lod args`` in a subprocess, under ``mpirun -n ranks`` if ``ranks``
    (:func:`run_mpi`); ``check``: raise ``CalledProcessError`` on a non-zero exit code."""
    res = run_mpi(["-m", "dolfinx_lod.cli", *args], ranks)
    if check:
        res.check_returncode()
    return res


def cli_main(argv: list, capsys) -> tuple[int, str]:
    """The command line in-process: (exit code, stderr of this rank)."""
    from dolfinx_lod.cli import main

    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def dense(A) -> np.ndarray:
    """Whole PETSc matrix as a numpy array on every rank (small test matrices only)."""
    comm = A.getComm().tompi4py()
    rows = A.getOwnershipRange()
    local = A.getValues(range(*rows), range(A.getSize()[1])) if rows[1] > rows[0] else None
    parts = comm.allgather(local)
    return np.vstack([p for p in parts if p is not None])


def rough_coefficient(n: int, seed: int = 1, dim: int = 2) -> np.ndarray:
    """Values in [0.01, 1], independent on every fine cell of the n^d grid."""
    return dl.coefficients.random_coefficient(n, 0.01, 1.0, seed, dim)
