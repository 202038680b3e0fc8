"""The command line in 3D: (n, n, n) coefficient arrays A[iz, iy, ix], (M, n, n, n) stacks,
--dim 3 for the built-in field; serial and under mpirun."""

import json
import re

import numpy as np
import pytest
from helpers import run_cli as run


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    """(8, 8, 8): the lower half in z conducts ten times better (checks the orientation)."""
    path = tmp_path_factory.mktemp("coef3") / "A.npy"
    A = np.random.default_rng(3).uniform(0.05, 1.0, (8, 8, 8))
    A[:4] *= 10
    np.save(path, A)
    return path


def test_elliptic_3d_writes_results_serial_and_parallel(tmp_path, cube):
    args = ["elliptic", "--coefficient", cube, "--coarse", 4, "--layers", 2, "--reference"]
    run([*args, "--out", tmp_path / "s"])
    run([*args, "--no-plot", "--out", tmp_path / "p"], ranks=2)
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    p = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert (s["dim"], s["n"], s["NH"], s["ranks"], p["ranks"]) == (3, 8, 4, 1, 2)
    u, ref = np.load(tmp_path / "s" / "solution.npy"), np.load(tmp_path / "s" / "reference.npy")
    assert u.shape == ref.shape == (9, 9, 9)
    assert np.abs(u[[0, -1]]).max() == 0 and np.abs(u[:, :, [0, -1]]).max() == 0
    assert ref[:4].max() < ref[5:].max()  # small z conducts better: smaller solution there
    assert s["rel_l2_error"] < s["coarse_fem_rel_l2_error"]
    assert np.abs(np.load(tmp_path / "p" / "solution.npy") - u).max() <= 1e-10
    assert (tmp_path / "s" / "elliptic.png").stat().st_size > 10_000


def test_elliptic_dim_3_builtin_field(tmp_path):
    run(["elliptic", "--dim", 3, "--fine", 8, "--coarse", 2, "--layers", 1, "--no-plot",
         "--out", tmp_path])  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dim"] == 3 and np.load(tmp_path / "solution.npy").shape == (9, 9, 9)


@pytest.mark.parametrize("method, ranks", [("galerkin", 2), ("petrov-galerkin", 1)])
def test_parabolic_3d_stack(tmp_path, method, ranks):
    stack = tmp_path / "stack.npy"
    np.save(stack, np.random.default_rng(0).uniform(0.1, 1.0, (2, 8, 8, 8)))
    out = tmp_path / "out"
    run(["parabolic", "--coefficients", stack, "--coarse", 4, "--layers", 1, "--T", 0.1,
         "--steps", 2, "--method", method, "--reference", "--no-plot", "--out", out],
        ranks=ranks)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["dim"], summary["ranks"], summary["method"]) == (3, ranks, method)
    assert np.load(out / "solution_final.npy").shape == (9, 9, 9)
    assert 0 < summary["rel_l2_error_final"] < 0.5
    assert (out / "lod.bp").is_dir()


@pytest.mark.parametrize(
    "shape, args, message",
    [
        ((8, 8, 5), ["--coarse", 2], r"cells in direction x NH \(2\) must divide .* n \(5\)"),
        ((8, 8, 8), ["--coarse", 3], r"NH \(3\) must divide .* n \(8\)"),
        ((8, 8, 8), ["--coarse", 2, "--dim", 2], r"must have shape \(n_y, n_x\); got \(8, 8, 8\)"),
        ((2, 8, 8, 8), ["--coarse", 2], r"or \(n_z, n_y, n_x\); got \(2, 8, 8, 8\)"),
    ],
)
def test_elliptic_3d_bad_input_under_mpirun(tmp_path, shape, args, message):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones(shape))
    res = run(
        ["elliptic", "--coefficient", bad, *args, "--layers", 1, "--out", tmp_path / "o"],
        ranks=2,
        check=False,
    )
    assert res.returncode == 2 and re.search(message, res.stderr), res.stderr
    assert not (tmp_path / "o" / "summary.json").exists()
