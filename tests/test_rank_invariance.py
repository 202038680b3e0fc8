"""`mpirun -n 1`, `-n 2` and `-n 3` give the same coarse matrices and solutions to 1e-10,
elliptic and parabolic (LOD only, coefficient changing every step)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import mpirun

HERE = Path(__file__).parent


def run_job(ranks: int, out: Path, method: str, grid: tuple[str, ...]) -> dict:
    NH, n, *boundary = grid
    cmd = [
        mpirun(),
        "-n",
        str(ranks),
        sys.executable,
        "-m",
        "mpi4py",
        str(HERE / "rank_invariance_job.py"),
        NH,
        n,
        "2",
        method,
        str(out),
        *boundary,
    ]
    subprocess.run(cmd, check=True, timeout=300, cwd=HERE)
    return dict(np.load(out))


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, grid",
    [
        ("galerkin", ("6", "48")),
        ("petrov-galerkin", ("6", "48")),
        # 6 x 3 coarse, 24 x 12 fine cells of [0, 2] x [0, 1], insulated left and top sides
        ("galerkin", ("6,3", "24,12", "left,top", "2,1")),
        ("petrov-galerkin", ("6,3", "24,12", "left,top", "2,1")),
    ],
)
def test_same_results_on_1_2_3_ranks(tmp_path, method, grid):
    results = [run_job(n, tmp_path / f"r{n}.npz", method, grid) for n in (1, 2, 3)]
    ref = results[0]
    assert np.abs(ref["K"]).max() > 1.0 and np.abs(ref["U"]).max() > 1e-3
    for res in results[1:]:
        assert np.abs(res["K"] - ref["K"]).max() <= 1e-10
        assert np.abs(res["U"] - ref["U"]).max() <= 1e-10
        assert np.abs(res["u_ms"] - ref["u_ms"]).max() <= 1e-10
        assert np.abs(res["u_par"] - ref["u_par"]).max() <= 1e-10 * np.abs(ref["u_par"]).max()
        assert np.allclose(res["errors"], ref["errors"], rtol=1e-8)
