"""dolfinx-lod operators on a user's family given as samples (--coefficients K.npy --params
P.npy), on a rectangle with a Neumann side, then parabolic --operators --params; bad input."""

import json

import numpy as np
import pytest
from helpers import cli_main

BOX = ["--coarse", "4,2", "--layers", 1, "--domain", "0,0,2,1", "--neumann", "left"]


def samples(params: np.ndarray) -> np.ndarray:
    """a_p = 1 + p on two fixed discs of the 2 x 1 box (8 x 16 cells), 1 elsewhere."""
    x, y = np.meshgrid((np.arange(16) + 0.5) / 8, (np.arange(8) + 0.5) / 8)
    discs = ((x - 0.6) ** 2 + (y - 0.5) ** 2 < 0.06) | ((x - 1.4) ** 2 + (y - 0.4) ** 2 < 0.04)
    return np.stack([1.0 + p * discs for p in params])


@pytest.mark.mpi
def test_operators_from_given_samples_then_parabolic(tmp_dir, capsys, comm):
    """operators --coefficients --params fits the learned local operators of a sample family
    (held-out error small), parabolic --operators --params advances with them close to the
    classical Petrov-Galerkin LOD; mismatched K/P lengths, missing --params and parameters
    outside the samples' range are refused with one message naming the option (exit 2)."""
    P = np.linspace(1.0, 20.0, 10)
    steps = np.array([3.0, 7.5, 12.0])
    if comm.rank == 0:
        np.save(tmp_dir / "K.npy", samples(P))
        np.save(tmp_dir / "P.npy", P)
        np.save(tmp_dir / "P9.npy", P[:9])
        np.save(tmp_dir / "S.npy", samples(steps))
        np.save(tmp_dir / "Q.npy", steps)
        np.save(tmp_dir / "Qbad.npy", steps * 3)
        np.save(tmp_dir / "K3.npy", np.ones((10, 4, 8, 16)))
    comm.Barrier()
    fit = ["operators", "--coefficients", tmp_dir / "K.npy", *BOX, "--samples", 8]
    fit += ["--test-samples", 2, "--epochs", 1000]
    assert cli_main([*fit, "--params", tmp_dir / "P.npy", "--out", tmp_dir / "o"], capsys)[0] == 0
    summary = json.loads((tmp_dir / "o" / "summary.json").read_text())
    assert summary["family"] == "samples:K" and summary["neumann"] == ["left"]
    assert max(summary["operator_error_test"].values()) < 0.05
    # a = 1 + p on fixed discs is affine in p: the element part's interpolation is exact
    assert summary["element_interpolation"]["used"]
    assert summary["element_interpolation"]["error_test"]["P"] < 1e-12
    run = ["parabolic", "--coefficients", tmp_dir / "S.npy", *BOX, "--T", 0.3, "--steps", 3]
    run += ["--no-plot", "--method", "petrov-galerkin"]
    ops = ["--operators", tmp_dir / "o" / "operators.pt", "--params", tmp_dir / "Q.npy"]
    assert cli_main([*run, *ops, "--out", tmp_dir / "p"], capsys)[0] == 0
    assert cli_main([*run, "--out", tmp_dir / "c"], capsys)[0] == 0
    steps_summary = json.loads((tmp_dir / "p" / "summary.json").read_text())
    assert steps_summary["element_interpolation_fallbacks"] == 0  # the steps' fields: in the span
    if comm.rank == 0:
        u = np.load(tmp_dir / "p" / "solution_final.npy")
        u_classical = np.load(tmp_dir / "c" / "solution_final.npy")
        assert np.abs(u - u_classical).max() <= 0.05 * np.abs(u_classical).max()
    for argv, message in (
        ([*fit, "--params", tmp_dir / "P9.npy"], "--params must have shape (K,) or (K, N_p)"),
        (fit, "--coefficients needs --params"),
        ([*run, *ops[:2], "--params", tmp_dir / "Qbad.npy"], "--params (step 2)"),
        ([*fit[:-4], "--samples", 9, "--params", tmp_dir / "P.npy"], "exceed the 10 fields"),
        (
            [
                "operators",
                "--coefficients",
                tmp_dir / "K3.npy",
                "--params",
                tmp_dir / "P.npy",
                *BOX,
            ],
            "--domain needs 6 numbers for a 3D coefficient",
        ),
    ):
        code, err = cli_main([*argv, "--out", tmp_dir / "x"], capsys)
        assert code == 2 and (comm.rank or message in err), err
