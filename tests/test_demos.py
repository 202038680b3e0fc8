"""The demos run end to end in a reduced size, serially and under mpirun -n 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_rank_invariance import mpirun

DEMOS = Path(__file__).parent.parent / "demos"
KEYS = (
    "rel_error_final_mean",
    "rel_error_final_max",
    "basis_error_mean",
    "lod_vs_fem_final_mean",
    "baseline_rel_error_final_mean",
    "wall_seconds",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "demo, ranks", [("example1", 1), ("example1", 2), ("example2", 1), ("example2", 2)]
)
def test_demo_tiny(tmp_path, demo, ranks):
    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [
        mpirun(),
        "-n",
        str(ranks),
        sys.executable,
        str(DEMOS / f"{demo}.py"),
        "--tiny",
        "--cache",
        str(cache),
        "--out",
        str(out),
    ]
    for attempt in range(2):  # the second run reuses the cached model
        subprocess.run(cmd, check=True, timeout=600, capture_output=True)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["model_reused"] is bool(attempt)
    for key in KEYS:
        assert key in summary
    assert 0 < summary["rel_error_final_mean"] <= summary["rel_error_final_max"] < 0.5
    assert 0 < summary["lod_vs_fem_final_mean"] < 0.5
    for name in summary["figures"].values():
        assert (out / name).stat().st_size > 5_000


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 2])
def test_battery3d_tiny(tmp_path, ranks):
    out = tmp_path / "out"
    cmd = [mpirun(), "-n", str(ranks), sys.executable, str(DEMOS / "battery3d.py"), "--tiny"]
    subprocess.run([*cmd, "--out", str(out)], check=True, timeout=600, capture_output=True)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n"], summary["ranks"]) == (8, ranks)
    for run in ("lod", "lod_ann"):
        assert 0 < summary[run]["rel_l2_error_final"] < 1.0
        assert summary[run]["basis_update_seconds_mean"] > 0
    assert summary["basis_update_speedup"] > 1
    for name in summary["figures"].values():
        assert (out / name).stat().st_size > 5_000
