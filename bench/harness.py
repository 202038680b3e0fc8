"""What every benchmark result shares: provenance and one timing helper."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("dolfinx_lod", "fenics-dolfinx", "petsc4py", "mpi4py", "numpy", "torch")


def grid_parser(doc: str, coarse: int, fine: int, layers: int) -> argparse.ArgumentParser:
    """A benchmark's parser with the grid options --coarse (1/H), --fine (1/h) and --layers
    (l) and their defaults; the script adds its own options."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--coarse", type=int, default=coarse)
    parser.add_argument("--fine", type=int, default=fine)
    parser.add_argument("--layers", type=int, default=layers)
    return parser


def commit() -> dict:
    """The repository's commit and whether the code differed from it (``dirty``: a change
    outside bench/results/ and docs/, whose result files and tables a run itself rewrites)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", ".", ":!bench/results", ":!docs")
    return {"sha": git("rev-parse", "HEAD") or None, "dirty": bool(changed)}


def versions() -> dict:
    """Installed versions of the libraries that decide the numbers."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict:
    """Where the numbers were measured."""
    return {
        "node": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def provenance(command: list[str], ranks: int) -> dict:
    """The record a result JSON carries: command, commit, versions, threads, machine, date."""
    return {
        "command": " ".join(command),
        "ranks": ranks,
        "commit": commit(),
        "versions": versions(),
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "machine": machine(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def timed(
    fn: Callable[[], object], repeats: int = 3, warmup: int = 1, comm=None
) -> dict[str, float]:
    """Wall seconds of ``fn()``: ``warmup`` untimed calls, then min and median over ``repeats``
    timed ones; with ``comm`` the maximum over the ranks of each (the slowest rank sets the
    pace). Collective with ``comm``."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    result = {"min": min(seconds), "median": statistics.median(seconds), "repeats": repeats}
    if comm is not None:
        from mpi4py import MPI

        result["min"] = comm.allreduce(result["min"], op=MPI.MAX)
        result["median"] = comm.allreduce(result["median"], op=MPI.MAX)
    return result
