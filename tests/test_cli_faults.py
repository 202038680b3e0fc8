"""Faults of the command line and the demos under ``mpirun -n 2`` end in seconds with one
message and their exit code, never a hang (each run has a time limit; a hang fails the test)."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import run_mpi as run

DEMOS = Path(__file__).parent.parent / "demos"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    A = np.random.default_rng(4).uniform(0.1, 1.0, (16, 16))
    np.save(folder / "A.npy", A)
    np.save(folder / "stack.npy", np.stack([A, A.T]))
    (folder / "file").write_text("not a folder")
    return folder


def commands(inputs: Path, out) -> dict[str, list]:
    cli = ["-m", "dolfinx_lod.cli"]
    sizes = ["--coarse", 4, "--layers", 1]
    return {
        "elliptic": [*cli, "elliptic", "--coefficient", inputs / "A.npy", *sizes, "--out", out],
        "parabolic": [
            *cli,
            "parabolic",
            "--coefficients",
            inputs / "stack.npy",
            *sizes,
            "--T",
            1,
            "--steps",
            2,
            "--out",
            out,
        ],
        "train": [
            *cli,
            "train",
            "--family",
            "cont",
            "--fine",
            16,
            *sizes,
            "--samples",
            2,
            "--epochs",
            5,
            "--out",
            out,
        ],
    }


def assert_one_line(res: subprocess.CompletedProcess, code: int, start: str, message: str):
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(start) and message in errors[0], res.stderr


@pytest.mark.parametrize("command", ["elliptic", "parabolic", "train"])
def test_out_is_a_file(inputs, command):
    res = run(commands(inputs, inputs / "file")[command])
    assert_one_line(res, 4, f"dolfinx-lod {command}: error:", "it exists and is not a folder")
    assert (inputs / "file").read_text() == "not a folder"


def test_out_under_proc(inputs):
    res = run(commands(inputs, "/proc/dolfinx_lod/out")["elliptic"])
    assert_one_line(res, 4, "dolfinx-lod elliptic: error:", "cannot write --out /proc/")


def test_demo_cache_not_writable(tmp_path):
    args = [DEMOS / "example1.py", "--tiny", "--cache", "/proc/dolfinx_lod", "--out", tmp_path]
    res = run(args)
    assert_one_line(res, 4, "example1.py: error:", "cannot write --cache (model folder) /proc/")


FAULT = """
import sys
from mpi4py import MPI
import dolfinx_lod.cli.elliptic as command
from dolfinx_lod.cli import main

def fail(*args, **kwargs):
    if MPI.COMM_WORLD.rank in RANKS:
        raise RuntimeError("injected failure")
    return solve(*args, **kwargs)

solve, command.solve_elliptic = command.solve_elliptic, fail
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("ranks, code", [((0, 1), 3), ((1,), None)])
def test_error_outside_a_collective_block(inputs, tmp_path, ranks, code):
    """A RuntimeError on every rank exits cleanly (code 3, one line); on one rank only, the
    other rank waits in a collective: the job is aborted within seconds instead of hanging."""
    args = commands(inputs, tmp_path / "out")["elliptic"][2:]
    res = run(["-c", FAULT.replace("RANKS", repr(ranks)), *args])
    if code is not None:
        assert_one_line(res, code, "dolfinx-lod elliptic: error:", "injected failure")
    else:
        assert res.returncode != 0 and "error on rank 1: injected failure" in res.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))
