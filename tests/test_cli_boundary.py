"""--dirichlet, --flux and --source of the command line: the same numbers as the library."""

import json

import numpy as np
import pytest
from helpers import run_cli as run
from mpi4py import MPI

import dolfinx_lod as dl


def test_elliptic_boundary_options_match_the_library(tmp_path):
    A = np.random.default_rng(3).uniform(0.1, 1.0, (16, 16))
    F = np.random.default_rng(4).uniform(0.0, 2.0, (16, 16))
    G = np.linspace(0.0, 1.0, 17)[None, :] * np.ones((17, 1))  # g = x at the vertices
    paths = {name: tmp_path / f"{name}.npy" for name in ("A", "F", "G")}
    for name, array in zip(paths, (A, F, G), strict=True):
        np.save(paths[name], array)
    out = tmp_path / "out"
    args = ["elliptic", "--coefficient", paths["A"], "--coarse", 4, "--layers", 2]
    args += ["--neumann", "top", "--dirichlet", paths["G"], "--flux", "top=0.5"]
    run([*args, "--source", paths["F"], "--reference", "--no-plot", "--out", out])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["flux"] == {"top": 0.5} and summary["source"] == str(paths["F"])
    grids = dl.create_nested_grids(MPI.COMM_SELF, 4, 16, neumann=("top",))
    with dl.solve_elliptic(grids, A, 2, f=F, dirichlet=G, flux={"top": 0.5}) as sol:
        u = dl.io.gather_vertex_array(grids, sol.u_ms)
    assert np.abs(np.load(out / "solution.npy") - u).max() <= 1e-12
    assert summary["rel_energy_error"] < summary["coarse_fem_rel_energy_error"] / 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--flux", "left=1"], "flux on side 'left', which is a Dirichlet side"),
        (["--flux", "top"], "--flux must be SIDE=VALUE"),
        (["--dirichlet", "nan"], "dirichlet g must be finite"),
    ],
)
def test_bad_boundary_options(tmp_path, extra, message):
    out = run(
        ["elliptic", "--fine", 16, "--coarse", 4, "--layers", 1, "--out", tmp_path, *extra],
        check=False,
    )
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_parabolic_source_stack_and_dirichlet(tmp_path):
    rng = np.random.default_rng(5)
    stack = rng.uniform(0.1, 1.0, (3, 16, 16))
    sources = rng.uniform(0.0, 1.0, (3, 16, 16))
    np.save(tmp_path / "a.npy", stack)
    np.save(tmp_path / "f.npy", sources)
    out = tmp_path / "out"
    args = ["parabolic", "--coefficients", tmp_path / "a.npy", "--coarse", 4, "--layers", 1]
    args += ["--T", 0.3, "--steps", 3, "--source", tmp_path / "f.npy", "--dirichlet", 1.0]
    run([*args, "--reference", "--no-plot", "--out", out])
    summary = json.loads((out / "summary.json").read_text())
    u, ref = np.load(out / "solution_final.npy"), np.load(out / "reference_final.npy")
    assert summary["dirichlet"] == 1.0
    assert np.abs(u[0]).min() == pytest.approx(1.0) and np.abs(ref[:, 0] - 1.0).max() < 1e-10
    assert np.sqrt(((u - ref) ** 2).mean() / (ref**2).mean()) < 0.05
